// Private keys on disk: JSON with the 32-byte seed, written 0600 in a 0700 folder, never sent anywhere.
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { b64, keyIdOf, keyPairFromSeed } from '../../shared/crypto.ts';
import type { SigningKey } from '../../shared/envelope.ts';
import { Base64 } from '../../shared/ids.ts';

const KeyFile = z.object({ kind: z.enum(['root', 'signing']), seed: Base64, createdAt: z.string() }).strict();

export function ensureKeyDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
}

export function writeKeyFile(path: string, kind: 'root' | 'signing', seed: Uint8Array): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, JSON.stringify({ kind, seed: b64.encode(seed), createdAt: new Date().toISOString() }) + '\n', { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

export function readKeyFile(path: string): SigningKey & { kind: 'root' | 'signing' } {
  const parsed = KeyFile.parse(JSON.parse(readFileSync(path, 'utf8')));
  const kp = keyPairFromSeed(b64.decode(parsed.seed));
  return { kind: parsed.kind, seed: kp.seed, publicKey: kp.publicKey, keyId: keyIdOf(kp.publicKey) };
}

export function keyFilePath(dir: string, kind: 'root' | 'signing', keyId?: string): string {
  return join(dir, kind === 'root' ? 'root.key' : `signing-${keyId}.key`);
}

export function hasRootKey(dir: string): boolean {
  return existsSync(keyFilePath(dir, 'root'));
}
