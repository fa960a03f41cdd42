// The server's keys: a root key that signs the key set, and signing keys listed in that set.
// Devices pin only the root; rotating or revoking a signing key publishes a new key-set version.
//
// Two modes. Embedded (the default): root.key lives in the key folder and the server signs each new
// key set itself. Offline root: the config names the root public key and root.key is absent; the
// server still makes and holds its signing keys, but a key change only produces a *pending* key set
// (public data) that the operator signs on their own machine and imports (importKeySet).
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { b64, generateKeyPair, keyIdOf } from '../../shared/crypto.ts';
import { envelopeSignatureValid, signDocument, type SigningKey } from '../../shared/envelope.ts';
import { KeySet, type Envelope } from '../../shared/messages.ts';
import type { Db } from '../db/database.ts';
import { AppError } from '../errors.ts';
import { ensureKeyDir, hasRootKey, keyFilePath, readKeyFile, writeKeyFile } from './key-files.ts';

export type KeyMode = 'embedded' | 'offline-root';

export interface KeyStoreOptions {
  /** base64 root public key; set it to run with an offline root (see the file comment) */
  rootPublicKey?: string;
}

/** What a key change did: applied at once (embedded root) or waiting for the offline root's signature. */
export type KeyChange =
  | { applied: true; keysetVersion: number; revoked: string[] }
  | { applied: false; pending: KeySet };

const PENDING_FILE = 'pending-keyset.json';
const SIGNING_FILE = /^signing-[0-9a-f]{32}\.key$/;

export class KeyStore {
  private root: SigningKey | null = null;
  private rootPublic!: Uint8Array;
  private signing = new Map<string, SigningKey>();
  private current: { keyset: KeySet; envelope: Envelope } | null = null;
  private pending: KeySet | null = null;

  constructor(
    private readonly dir: string, private readonly db: Db, private readonly keysetTtlDays: number,
    private readonly opts: KeyStoreOptions = {},
  ) {}

  /** Load keys from disk; on first start make what is missing (root only in embedded mode). */
  init(): void {
    ensureKeyDir(this.dir);
    const configured = this.opts.rootPublicKey ? b64.decode(this.opts.rootPublicKey) : null;
    if (!hasRootKey(this.dir) && !configured) {
      writeKeyFile(keyFilePath(this.dir, 'root'), 'root', generateKeyPair().seed);
    }
    if (hasRootKey(this.dir)) {
      this.root = readKeyFile(keyFilePath(this.dir, 'root'));
      if (configured && b64.encode(configured) !== b64.encode(this.root.publicKey)) {
        throw new Error(`root.key in ${this.dir} does not match the configured rootPublicKey: remove one of them`);
      }
      this.rootPublic = this.root.publicKey;
    } else {
      this.rootPublic = configured!;
    }
    for (const name of readdirSync(this.dir)) {
      if (!SIGNING_FILE.test(name)) continue;
      const key = readKeyFile(join(this.dir, name));
      this.signing.set(key.keyId, key);
    }
    const row = this.db.prepare('SELECT envelope_json FROM keysets ORDER BY version DESC LIMIT 1').get() as { envelope_json: string } | undefined;
    if (row) {
      const envelope = JSON.parse(row.envelope_json) as Envelope;
      // A stored key set from another root (a data folder paired with the wrong key) must stop the start.
      if (envelope.keyId !== this.rootKeyId || !envelopeSignatureValid(envelope, this.rootPublic)) {
        throw new Error(`the stored key set v${JSON.parse(envelope.signed).version} is not signed by this server's root key ${this.rootKeyId}`);
      }
      this.current = { envelope, keyset: KeySet.parse(JSON.parse(envelope.signed)) };
    }
    if (this.mode === 'embedded') {
      if (!this.current) {
        const key = this.createSigningKey();
        this.publishKeySet(this.proposal([entryOf(key)], []));
      } else if (Date.parse(this.current.keyset.expires) - Date.now() < 30 * 86400_000) {
        this.publishKeySet(this.proposal(this.current.keyset.keys, this.current.keyset.revoked));
      }
      return;
    }
    const pendingPath = join(this.dir, PENDING_FILE);
    if (existsSync(pendingPath)) {
      const p = KeySet.parse(JSON.parse(readFileSync(pendingPath, 'utf8')));
      this.pending = p.version > (this.current?.keyset.version ?? 0) ? p : null;
    }
    if (!this.current && !this.pending) {
      // First start with an offline root: propose key set v1 holding one fresh signing key.
      const key = this.signing.values().next().value ?? this.createSigningKey();
      this.setPending(this.proposal([entryOf(key)], []));
    }
  }

  get mode(): KeyMode { return this.root ? 'embedded' : 'offline-root'; }
  get rootPublicKey(): Uint8Array { return this.rootPublic; }
  get rootKeyId(): string { return keyIdOf(this.rootPublic); }
  get hasKeyset(): boolean { return this.current !== null; }
  get keyset(): KeySet { return this.require().keyset; }
  get keysetEnvelope(): Envelope { return this.require().envelope; }
  /** The key set waiting for the offline root's signature, if any (public data only). */
  get pendingKeyset(): KeySet | null { return this.pending; }

  /** The newest key in the key set that holds a role and whose private half this server has. */
  signerFor(role: 'targets' | 'director'): SigningKey {
    const entries = [...this.require().keyset.keys].reverse();
    for (const entry of entries) {
      // A revocation still waiting for the root's signature already stops this server using the key.
      if (this.pending?.revoked.includes(entry.keyId)) continue;
      const key = this.signing.get(entry.keyId);
      if (key && entry.roles.includes(role)) return key;
    }
    throw new AppError('FLEET_ERR_NO_SIGNING_KEY', `no ${role} signing key is available on this server`, 500);
  }

  /** Add a new signing key; the old ones stay valid until revoked, so both verify during rotation. */
  rotate(): KeyChange & { keyId: string } {
    const key = this.createSigningKey();
    const base = this.base();
    return { keyId: key.keyId, ...this.change(this.proposal([...base.keys, entryOf(key)], base.revoked)) };
  }

  revoke(keyId: string): KeyChange {
    const base = this.base();
    if (base.revoked.includes(keyId)) throw new AppError('FLEET_ERR_KEY_REVOKED', `signing key ${keyId} is already revoked`, 409);
    if (!base.keys.some((k) => k.keyId === keyId)) throw new AppError('FLEET_ERR_KEY_NOT_FOUND', `no signing key ${keyId} in the key set`, 404);
    const keys = base.keys.filter((k) => k.keyId !== keyId);
    for (const role of ['targets', 'director'] as const) {
      if (!keys.some((k) => k.roles.includes(role) && this.signing.has(k.keyId))) {
        throw new AppError('FLEET_ERR_LAST_KEY', `revoking ${keyId} would leave this server no ${role} signing key: rotate first`, 409);
      }
    }
    return this.change(this.proposal(keys, [...base.revoked, keyId]));
  }

  /**
   * Take a key set signed elsewhere by the root (the offline-root path; also accepted in embedded
   * mode). Everything is checked before anything is stored; a revocation can never be undone.
   */
  importKeySet(envelope: Envelope): { keysetVersion: number; revoked: string[] } {
    if (envelope.keyId !== this.rootKeyId) throw new AppError('FLEET_ERR_KEYSET_SIGNER', `the key set is signed by ${envelope.keyId}, not by this fleet's root ${this.rootKeyId}`, 422);
    if (!envelopeSignatureValid(envelope, this.rootPublic)) throw new AppError('FLEET_ERR_KEYSET_SIGNATURE', 'the key set signature does not verify with the root public key', 422);
    let parsed;
    try {
      parsed = KeySet.safeParse(JSON.parse(envelope.signed));
    } catch {
      throw new AppError('FLEET_ERR_KEYSET_INVALID', 'the signed text of the key set is not JSON', 422);
    }
    if (!parsed.success) {
      const i = parsed.error.issues[0];
      throw new AppError('FLEET_ERR_KEYSET_INVALID', `keyset.${i.path.join('.')}: ${i.message}`, 422);
    }
    const keyset = parsed.data;
    const prev = this.current?.keyset;
    if (prev && keyset.version <= prev.version) throw new AppError('FLEET_ERR_KEYSET_VERSION', `key set v${keyset.version} is not newer than the current v${prev.version}`, 409);
    if (Date.parse(keyset.expires) <= Date.now()) throw new AppError('FLEET_ERR_KEYSET_EXPIRED', `key set v${keyset.version} expired at ${keyset.expires}`, 422);
    for (const k of keyset.keys) {
      const pub = b64.decode(k.publicKey);
      if (pub.length !== 32 || keyIdOf(pub) !== k.keyId) throw new AppError('FLEET_ERR_KEYSET_INVALID', `key set entry ${k.keyId} does not match its public key`, 422);
      if (keyset.revoked.includes(k.keyId)) throw new AppError('FLEET_ERR_KEYSET_INVALID', `key ${k.keyId} is both listed and revoked`, 422);
    }
    const unrevoked = (prev?.revoked ?? []).filter((id) => !keyset.revoked.includes(id));
    if (unrevoked.length > 0) throw new AppError('FLEET_ERR_KEYSET_UNREVOKE', `key set v${keyset.version} drops revoked key(s) ${unrevoked.join(', ')}: a revocation is permanent`, 422);
    for (const role of ['targets', 'director'] as const) {
      if (!keyset.keys.some((k) => k.roles.includes(role) && this.signing.has(k.keyId))) {
        throw new AppError('FLEET_ERR_KEYSET_UNUSABLE', `key set v${keyset.version} lists no ${role} key whose private half this server holds`, 409);
      }
    }
    const newlyRevoked = keyset.revoked.filter((id) => !(prev?.revoked ?? []).includes(id));
    this.store(keyset, envelope);
    if (this.pending && this.pending.version <= keyset.version) this.setPending(null);
    this.forget(newlyRevoked);
    return { keysetVersion: keyset.version, revoked: newlyRevoked };
  }

  private require(): { keyset: KeySet; envelope: Envelope } {
    if (!this.current) {
      throw new AppError('FLEET_ERR_NO_KEYSET', 'this server has no key set yet: it runs with an offline root, so sign the pending key set (fleetctl keys sign-keyset) and import it (fleetctl keys import)', 409);
    }
    return this.current;
  }

  /** What the next key set starts from: a pending proposal if one waits, else the current set. */
  private base(): { keys: KeySet['keys']; revoked: string[] } {
    const b = this.pending ?? this.current?.keyset;
    return { keys: b?.keys ?? [], revoked: b?.revoked ?? [] };
  }

  private change(next: KeySet): KeyChange {
    const newlyRevoked = next.revoked.filter((id) => !(this.current?.keyset.revoked ?? []).includes(id));
    if (this.mode === 'offline-root') {
      this.setPending(next);
      return { applied: false, pending: next };
    }
    this.publishKeySet(next);
    this.forget(newlyRevoked);
    return { applied: true, keysetVersion: next.version, revoked: newlyRevoked };
  }

  private proposal(keys: KeySet['keys'], revoked: string[]): KeySet {
    const now = new Date();
    return {
      type: 'keyset',
      version: (this.current?.keyset.version ?? 0) + 1,
      issuedAt: now.toISOString(),
      expires: new Date(now.getTime() + this.keysetTtlDays * 86400_000).toISOString(),
      keys,
      revoked,
    };
  }

  private createSigningKey(): SigningKey {
    const kp = generateKeyPair();
    const keyId = keyIdOf(kp.publicKey);
    writeKeyFile(keyFilePath(this.dir, 'signing', keyId), 'signing', kp.seed);
    const key = { keyId, seed: kp.seed, publicKey: kp.publicKey };
    this.signing.set(keyId, key);
    return key;
  }

  /** A revoked key is never used again: drop its private half from memory and from disk. */
  private forget(keyIds: string[]): void {
    for (const id of keyIds) {
      this.signing.delete(id);
      rmSync(keyFilePath(this.dir, 'signing', id), { force: true });
    }
  }

  private setPending(p: KeySet | null): void {
    this.pending = p;
    const path = join(this.dir, PENDING_FILE);
    if (p) writeFileSync(path, JSON.stringify(p, null, 2) + '\n', { mode: 0o600 });
    else rmSync(path, { force: true });
  }

  private publishKeySet(keyset: KeySet): void {
    this.store(keyset, signDocument(keyset, this.root!));
  }

  private store(keyset: KeySet, envelope: Envelope): void {
    this.db.prepare('INSERT INTO keysets (version, envelope_json, created_at) VALUES (?, ?, ?)').run(keyset.version, JSON.stringify(envelope), new Date().toISOString());
    this.current = { keyset, envelope };
  }
}

function entryOf(key: SigningKey): KeySet['keys'][number] {
  return { keyId: key.keyId, publicKey: b64.encode(key.publicKey), roles: ['targets', 'director'] };
}
