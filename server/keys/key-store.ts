// The server's keys: a root key that signs the key set, and signing keys listed in that set.
// Devices pin only the root; rotating or revoking a signing key publishes a new key-set version.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { b64, generateKeyPair, keyIdOf } from '../../shared/crypto.ts';
import { signDocument, type SigningKey } from '../../shared/envelope.ts';
import { KeySet, type Envelope } from '../../shared/messages.ts';
import type { Db } from '../db/database.ts';
import { AppError } from '../errors.ts';
import { ensureKeyDir, hasRootKey, keyFilePath, readKeyFile, writeKeyFile } from './key-files.ts';

export class KeyStore {
  private root!: SigningKey;
  private signing = new Map<string, SigningKey>();
  private current!: { keyset: KeySet; envelope: Envelope };

  constructor(private readonly dir: string, private readonly db: Db, private readonly keysetTtlDays: number) {}

  /** Load keys from disk, creating a root key, a signing key and key set v1 on first start. */
  init(): void {
    ensureKeyDir(this.dir);
    if (!hasRootKey(this.dir)) {
      const kp = generateKeyPair();
      writeKeyFile(keyFilePath(this.dir, 'root'), 'root', kp.seed);
    }
    this.root = readKeyFile(keyFilePath(this.dir, 'root'));
    for (const name of readdirSync(this.dir)) {
      if (!/^signing-[0-9a-f]{32}\.key$/.test(name)) continue;
      const key = readKeyFile(join(this.dir, name));
      this.signing.set(key.keyId, key);
    }
    const row = this.db.prepare('SELECT envelope_json FROM keysets ORDER BY version DESC LIMIT 1').get() as { envelope_json: string } | undefined;
    if (row) {
      const envelope = JSON.parse(row.envelope_json) as Envelope;
      this.current = { envelope, keyset: KeySet.parse(JSON.parse(envelope.signed)) };
      if (Date.parse(this.current.keyset.expires) - Date.now() < 30 * 86400_000) this.publishKeySet(this.current.keyset.keys, this.current.keyset.revoked);
    } else {
      const key = this.createSigningKey();
      this.publishKeySet([{ keyId: key.keyId, publicKey: b64.encode(key.publicKey), roles: ['targets', 'director'] }], []);
    }
  }

  get rootPublicKey(): Uint8Array { return this.root.publicKey; }
  get rootKeyId(): string { return this.root.keyId; }
  get keyset(): KeySet { return this.current.keyset; }
  get keysetEnvelope(): Envelope { return this.current.envelope; }

  /** The newest key in the key set that holds a role and whose private half this server has. */
  signerFor(role: 'targets' | 'director'): SigningKey {
    const entries = [...this.current.keyset.keys].reverse();
    for (const entry of entries) {
      const key = this.signing.get(entry.keyId);
      if (key && entry.roles.includes(role)) return key;
    }
    throw new AppError('FLEET_ERR_NO_SIGNING_KEY', `no ${role} signing key is available on this server`, 500);
  }

  /** Add a new signing key; the old ones stay valid until revoked, so both verify during rotation. */
  rotate(): { keyId: string; keysetVersion: number } {
    const key = this.createSigningKey();
    const keys = [...this.current.keyset.keys, { keyId: key.keyId, publicKey: b64.encode(key.publicKey), roles: ['targets', 'director'] as ('targets' | 'director')[] }];
    this.publishKeySet(keys, this.current.keyset.revoked);
    return { keyId: key.keyId, keysetVersion: this.current.keyset.version };
  }

  revoke(keyId: string): { keysetVersion: number } {
    if (!this.current.keyset.keys.some((k) => k.keyId === keyId)) throw new AppError('FLEET_ERR_KEY_NOT_FOUND', `no signing key ${keyId} in the key set`, 404);
    const keys = this.current.keyset.keys.filter((k) => k.keyId !== keyId);
    if (keys.length === 0) throw new AppError('FLEET_ERR_LAST_KEY', 'cannot revoke the last signing key: rotate first', 409);
    this.publishKeySet(keys, [...this.current.keyset.revoked, keyId]);
    return { keysetVersion: this.current.keyset.version };
  }

  private createSigningKey(): SigningKey {
    const kp = generateKeyPair();
    const keyId = keyIdOf(kp.publicKey);
    writeKeyFile(keyFilePath(this.dir, 'signing', keyId), 'signing', kp.seed);
    const key = { keyId, seed: kp.seed, publicKey: kp.publicKey };
    this.signing.set(keyId, key);
    return key;
  }

  private publishKeySet(keys: KeySet['keys'], revoked: string[]): void {
    const now = new Date();
    const keyset: KeySet = {
      type: 'keyset',
      version: (this.current?.keyset.version ?? 0) + 1,
      issuedAt: now.toISOString(),
      expires: new Date(now.getTime() + this.keysetTtlDays * 86400_000).toISOString(),
      keys,
      revoked,
    };
    const envelope = signDocument(keyset, this.root);
    this.db.prepare('INSERT INTO keysets (version, envelope_json, created_at) VALUES (?, ?, ?)').run(keyset.version, JSON.stringify(envelope), now.toISOString());
    this.current = { keyset, envelope };
  }
}
