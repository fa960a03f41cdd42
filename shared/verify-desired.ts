// The device's whole trust decision for one desired-state message, as a pure function.
// Order matters: nothing is parsed before its signature checks, and every failure names a reason code.
import { b64, keyIdOf, sha256Hex } from './crypto.ts';
import { envelopeDigest, envelopeSignatureValid, parseSigned } from './envelope.ts';
import { DesiredState, KeySet, Manifest, type DesiredMessage, type Envelope, type KeyRole } from './messages.ts';
import { UpdateRefused } from './reason-codes.ts';

export interface TrustState {
  rootPublicKey: Uint8Array;
  /** highest key-set version accepted so far */
  keysetVersion: number;
  /** highest desired-state sequence number accepted so far */
  lastSeq: number;
  /** per model id, the lowest version the device will still install */
  versionFloors: Record<string, number>;
  /** the device never believes the time is earlier than this (epoch ms) */
  timeFloor: number;
}

export interface DeviceIdentity { deviceId: string; hardware: string; agentVersion: string }

export interface VerifiedDesired {
  keyset: KeySet;
  desired: DesiredState;
  manifest: Manifest;
  manifestSha256: string;
  /** a multi-model assignment: the other models of the set, in the desired state's order (else empty) */
  extras: { manifest: Manifest; manifestSha256: string; envelope: Envelope }[];
}

/**
 * Signatures already checked, keyed by root, exact signed text and signature. Sharing one cache between
 * many simulated devices makes a fleet-wide manifest cost one verification, not one per device; it can
 * only skip work, never accept bytes that were not verified under the same root. The schema check of a
 * verified key set or manifest is kept the same way (issue 13: parsing the same manifest text once per
 * device was ~10% of a simulated device's update): the same verified bytes, parsed once; each caller
 * reads the same frozen document, and every check that depends on the device or the time still runs on it.
 */
export class SignatureCache {
  private readonly seen = new Map<string, true>();
  private readonly docs = new Map<string, unknown>();
  constructor(private readonly limit = 4096) {}
  /** `digest`: the envelope's SHA-256 (envelopeDigest) when the caller already has it (a manifest's is needed anyway) */
  key(rootKeyId: string, env: Envelope, digest = sha256Hex(env.signed)): string {
    return `${rootKeyId}:${env.keyId}:${env.sig}:${digest}`;
  }
  has(k: string): boolean { return this.seen.has(k); }
  add(k: string): void {
    if (this.seen.size >= this.limit) this.seen.clear();
    this.seen.set(k, true);
  }
  /**
   * `parse()` of the envelope verified under key `k` (what: which schema), run once per key. The parsed
   * document is deep-frozen and shared, not copied for each caller (issue 13: a structured copy of a
   * manifest with its golden vectors was ~3% of a simulated device's update): no caller can change what
   * another one reads (a write throws), and nothing in the agent writes into a verified document.
   */
  parsed<T>(what: string, k: string, parse: () => T): T {
    const id = `${what}|${k}`;
    let doc = this.docs.get(id) as T | undefined;
    if (doc === undefined) {
      doc = deepFreeze(parse()); // throws on a schema failure: nothing is kept
      if (this.docs.size >= this.limit) this.docs.clear();
      this.docs.set(id, doc);
    }
    return doc;
  }
}

/** Freezes a parsed JSON document (plain objects and arrays) and everything in it. */
export function deepFreeze<T>(doc: T): T {
  if (doc !== null && typeof doc === 'object' && !Object.isFrozen(doc)) {
    Object.freeze(doc);
    for (const v of Object.values(doc as object)) deepFreeze(v);
  }
  return doc;
}

/** The envelope is signed by a non-revoked key of the set holding the role (shared/freshness.ts uses it too). */
export function checkSignedBy(env: Envelope, keyset: KeySet, role: KeyRole, what: string, rootKeyId: string, cache?: SignatureCache, digest?: string): string | undefined {
  if (keyset.revoked.includes(env.keyId)) throw new UpdateRefused('REVOKED_KEY', `${what} is signed by revoked key ${env.keyId}`);
  const key = keyset.keys.find((k) => k.keyId === env.keyId);
  if (!key) throw new UpdateRefused('UNKNOWN_KEY', `${what} is signed by key ${env.keyId}, which is not in key set v${keyset.version}`);
  if (!key.roles.includes(role)) throw new UpdateRefused('KEY_ROLE', `key ${env.keyId} may not sign a ${what} (roles: ${key.roles.join(', ')})`);
  const cacheKey = cache?.key(rootKeyId, env, digest);
  if (cacheKey && cache!.has(cacheKey)) return cacheKey;
  const publicKey = b64.decode(key.publicKey);
  if (keyIdOf(publicKey) !== env.keyId) throw new UpdateRefused('UNKNOWN_KEY', `key set entry ${env.keyId} does not match its public key`);
  if (!envelopeSignatureValid(env, publicKey)) throw new UpdateRefused('BAD_SIGNATURE', `${what} signature does not verify with key ${env.keyId}`);
  if (cacheKey) cache!.add(cacheKey);
  return cacheKey;
}

export function verifyKeySet(env: Envelope, trust: TrustState, now: number, cache?: SignatureCache): KeySet {
  const rootKeyId = keyIdOf(trust.rootPublicKey);
  if (env.keyId !== rootKeyId) throw new UpdateRefused('UNKNOWN_KEY', `key set is signed by ${env.keyId}, not by the pinned root ${rootKeyId}`);
  const cacheKey = cache?.key(rootKeyId, env);
  if (!(cacheKey && cache!.has(cacheKey))) {
    if (!envelopeSignatureValid(env, trust.rootPublicKey)) throw new UpdateRefused('BAD_SIGNATURE', 'key set signature does not verify with the pinned root key');
    if (cacheKey) cache!.add(cacheKey);
  }
  const keyset = cacheKey ? cache!.parsed('keyset', cacheKey, () => parseSigned(env, KeySet, 'key set')) : parseSigned(env, KeySet, 'key set');
  if (keyset.version < trust.keysetVersion) throw new UpdateRefused('KEYSET_ROLLBACK', `key set v${keyset.version} is older than trusted v${trust.keysetVersion}`);
  if (Date.parse(keyset.expires) <= now) throw new UpdateRefused('EXPIRED', `key set v${keyset.version} expired at ${keyset.expires}`);
  return keyset;
}

export function verifyDesired(msg: DesiredMessage, trust: TrustState, device: DeviceIdentity, clockNow: number, cache?: SignatureCache): VerifiedDesired {
  const now = Math.max(clockNow, trust.timeFloor);
  const rootKeyId = keyIdOf(trust.rootPublicKey);
  const keyset = verifyKeySet(msg.keyset, trust, now, cache);

  checkSignedBy(msg.director, keyset, 'director', 'desired state', rootKeyId, cache);
  const desired = parseSigned(msg.director, DesiredState, 'desired state');
  if (desired.deviceId !== device.deviceId) throw new UpdateRefused('WRONG_DEVICE', `desired state is for device ${desired.deviceId}, this is ${device.deviceId}`);
  if (desired.seq <= trust.lastSeq) throw new UpdateRefused('REPLAYED', `desired state seq ${desired.seq} is not above the last accepted ${trust.lastSeq}`);
  if (Date.parse(desired.expires) <= now) throw new UpdateRefused('EXPIRED', `desired state seq ${desired.seq} expired at ${desired.expires}`);
  const manifestSha256 = envelopeDigest(msg.manifest);
  if (desired.manifestSha256 !== manifestSha256) throw new UpdateRefused('MANIFEST_MISMATCH', `desired state points at manifest ${desired.manifestSha256.slice(0, 12)}, delivered ${manifestSha256.slice(0, 12)}`);

  // the manifest's digest, computed once: it names the manifest and keys its signature in the cache
  const manifest = checkManifest(msg.manifest, manifestSha256, desired, keyset, trust, device, now, rootKeyId, cache);

  // A multi-model assignment: every other model of the set passes the same checks, or none is installed.
  const wanted = desired.models ?? [];
  const delivered = msg.manifests ?? [];
  if (wanted.length !== delivered.length) throw new UpdateRefused('MANIFEST_MISMATCH', `desired state names ${wanted.length} more models, the message carries ${delivered.length} more manifests`);
  const ids = new Set([desired.modelId]);
  const extras: VerifiedDesired['extras'] = [];
  for (const [i, want] of wanted.entries()) {
    if (ids.has(want.modelId)) throw new UpdateRefused('MALFORMED', `desired state names model ${want.modelId} twice`);
    ids.add(want.modelId);
    const env = delivered[i];
    const digest = envelopeDigest(env);
    if (want.manifestSha256 !== digest) throw new UpdateRefused('MANIFEST_MISMATCH', `desired state points at manifest ${want.manifestSha256.slice(0, 12)} for ${want.modelId}, delivered ${digest.slice(0, 12)}`);
    extras.push({ manifest: checkManifest(env, digest, want, keyset, trust, device, now, rootKeyId, cache), manifestSha256: digest, envelope: env });
  }
  return { keyset, desired, manifest, manifestSha256, extras };
}

/** One model's manifest: signed by a targets key, the model and version the director named, fresh, not below the floor, for this device. */
function checkManifest(env: Envelope, digest: string, want: { modelId: string; version: number }, keyset: KeySet, trust: TrustState, device: DeviceIdentity, now: number, rootKeyId: string, cache?: SignatureCache): Manifest {
  const cacheKey = checkSignedBy(env, keyset, 'targets', 'manifest', rootKeyId, cache, digest);
  const manifest = cacheKey ? cache!.parsed('manifest', cacheKey, () => parseSigned(env, Manifest, 'manifest')) : parseSigned(env, Manifest, 'manifest');
  if (manifest.modelId !== want.modelId || manifest.version !== want.version) {
    throw new UpdateRefused('MANIFEST_MISMATCH', `manifest is ${manifest.modelId} v${manifest.version}, desired state names ${want.modelId} v${want.version}`);
  }
  if (Date.parse(manifest.expires) <= now) throw new UpdateRefused('EXPIRED', `manifest ${manifest.modelId} v${manifest.version} expired at ${manifest.expires}`);
  const floor = trust.versionFloors[manifest.modelId] ?? 0;
  if (manifest.version < floor) throw new UpdateRefused('ROLLBACK', `${manifest.modelId} v${manifest.version} is below this device's floor v${floor}`);
  if (manifest.hardwareTargets.length > 0 && !manifest.hardwareTargets.includes(device.hardware)) {
    throw new UpdateRefused('WRONG_HARDWARE', `manifest targets ${manifest.hardwareTargets.join(', ')}, this device is ${device.hardware}`);
  }
  if (compareSemver(manifest.runtime.minAgentVersion, device.agentVersion) > 0) {
    throw new UpdateRefused('RUNTIME_INCOMPATIBLE', `manifest needs agent >= ${manifest.runtime.minAgentVersion}, this is ${device.agentVersion}`);
  }
  return manifest;
}

export function compareSemver(a: string, b: string): number {
  const pa = a.split('.').map(Number), pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}
