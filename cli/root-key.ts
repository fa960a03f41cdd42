// The operator's root key, on the operator's machine: made once (0600 file in a 0700 folder), used
// offline to sign key sets, never sent anywhere. Same file format as the server's key folder.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { b64, generateKeyPair } from '../shared/crypto.ts';
import type { SigningKey } from '../shared/envelope.ts';
import { ensureKeyDir, keyFilePath, readKeyFile, writeKeyFile } from '../server/keys/key-files.ts';
import { CliError } from './api-client.ts';

export function initRootKey(dir: string): { keyId: string; publicKey: string; keyFile: string; publicFile: string } {
  const keyFile = keyFilePath(dir, 'root');
  if (existsSync(keyFile)) throw new CliError(`${keyFile} already exists: a root key is never overwritten (every device pins it)`, 'FLEETCTL_ERR_EXISTS');
  ensureKeyDir(dir);
  writeKeyFile(keyFile, 'root', generateKeyPair().seed);
  const key = readKeyFile(keyFile);
  const publicFile = join(dir, 'root.pub');
  writeFileSync(publicFile, b64.encode(key.publicKey) + '\n', { mode: 0o644 });
  return { keyId: key.keyId, publicKey: b64.encode(key.publicKey), keyFile, publicFile };
}

export function loadRootKey(path: string): SigningKey {
  if (!existsSync(path)) throw new CliError(`no root key file ${path}`, 'FLEETCTL_ERR_USAGE');
  let key;
  try {
    key = readKeyFile(path);
  } catch (err) {
    throw new CliError(`${path} is not a key file: ${(err as Error).message.split('\n')[0]}`, 'FLEETCTL_ERR_USAGE');
  }
  if (key.kind !== 'root') throw new CliError(`${path} holds a ${key.kind} key, not the root key`, 'FLEETCTL_ERR_USAGE');
  return key;
}

/** --root: a base64 public key, or a file holding one (root.pub), or a JSON {publicKey}. */
export function parseRootPublicKey(arg: string): Uint8Array {
  let text = arg.trim();
  if (existsSync(text)) {
    text = readFileSync(text, 'utf8').trim();
    if (text.startsWith('{')) {
      try { text = String((JSON.parse(text) as { publicKey?: unknown }).publicKey ?? ''); } catch { text = ''; }
    }
  }
  if (!/^[A-Za-z0-9+/]{43}=$/.test(text)) throw new CliError('--root: expected a 32-byte Ed25519 public key in base64, or a file holding one', 'FLEETCTL_ERR_USAGE');
  return b64.decode(text);
}
