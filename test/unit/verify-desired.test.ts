// verifyDesired: the device's whole trust decision, table-tested refusal by refusal.
import { describe, expect, it } from 'vitest';
import { b64, generateKeyPair, keyIdOf } from '../../shared/crypto.ts';
import { envelopeDigest, signDocument, type SigningKey } from '../../shared/envelope.ts';
import { DesiredState, KeySet, Manifest, type DesiredMessage, type Envelope, type KeyRole } from '../../shared/messages.ts';
import { UpdateRefused, type ReasonCode } from '../../shared/reason-codes.ts';
import { SignatureCache, verifyDesired, type DeviceIdentity, type TrustState } from '../../shared/verify-desired.ts';

const DAY = 86400_000;
/** A fixed "now" for the device clock; documents are dated relative to it. */
const NOW = Date.parse('2030-06-01T12:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();

function makeKey(): SigningKey {
  const kp = generateKeyPair();
  return { keyId: keyIdOf(kp.publicKey), seed: kp.seed, publicKey: kp.publicKey };
}

const root = makeKey();
const otherRoot = makeKey();
const targets = makeKey();    // role: targets
const director = makeKey();   // role: director
const both = makeKey();       // roles: targets + director
const revoked = makeKey();    // listed in revoked
const stranger = makeKey();   // in no key set

const entry = (k: SigningKey, roles: KeyRole[]) => ({ keyId: k.keyId, publicKey: b64.encode(k.publicKey), roles });

function keysetDoc(over: Partial<KeySet> = {}): KeySet {
  return KeySet.parse({
    type: 'keyset', version: 5, issuedAt: iso(NOW - DAY), expires: iso(NOW + 30 * DAY),
    keys: [entry(targets, ['targets']), entry(director, ['director']), entry(both, ['targets', 'director'])],
    revoked: [revoked.keyId],
    ...over,
  });
}

const f32 = (values: number[]) => b64.encode(new Uint8Array(Float32Array.from(values).buffer));

function manifestDoc(over: Partial<Manifest> = {}): Manifest {
  return Manifest.parse({
    type: 'manifest', modelId: 'digits', version: 7,
    artifact: { sha256: 'ab'.repeat(32), length: 1234, format: 'onnx' },
    quantization: { scheme: 'none', perChannel: false, sessionConfig: {}, quantizedOps: 0, skippedOps: 0 },
    io: {
      inputs: [{ name: 'x', type: 'float32', shape: ['N', 2] }],
      outputs: [{ name: 'y', type: 'float32', shape: ['N', 2] }],
    },
    runtime: { onnxruntimeWeb: '>=1.30.0 <2.0.0', minAgentVersion: '0.1.0' },
    hardwareTargets: ['rpi4', 'jetson-nano'],
    healthCheck: {
      vectors: [{ inputs: { x: { dtype: 'float32', dims: [1, 2], data: f32([1, 2]) } }, outputs: { y: { dtype: 'float32', dims: [1, 2], data: f32([0.25, 0.75]) } } }],
      atol: 1e-4, rtol: 1e-3, latencyBudgetMs: 250,
    },
    lineage: { owner: 'tests' },
    issuedAt: iso(NOW - DAY), expires: iso(NOW + 300 * DAY),
    ...over,
  });
}

function desiredDoc(manifestEnv: Envelope, over: Partial<DesiredState> = {}): DesiredState {
  return DesiredState.parse({
    type: 'desired', deviceId: 'dev-001', seq: 11, issuedAt: iso(NOW - 60_000), expires: iso(NOW + DAY),
    modelId: 'digits', version: 7, manifestSha256: envelopeDigest(manifestEnv),
    ...over,
  });
}

interface BuildOpts {
  keyset?: Partial<KeySet>; keysetSigner?: SigningKey;
  manifest?: Partial<Manifest>; manifestSigner?: SigningKey;
  desired?: Partial<DesiredState>; directorSigner?: SigningKey;
}

function build(o: BuildOpts = {}): DesiredMessage {
  const keyset = signDocument(keysetDoc(o.keyset), o.keysetSigner ?? root);
  const manifest = signDocument(manifestDoc(o.manifest), o.manifestSigner ?? targets);
  const directorEnv = signDocument(desiredDoc(manifest, o.desired), o.directorSigner ?? director);
  return { keyset, manifest, director: directorEnv };
}

function trust(over: Partial<TrustState> = {}): TrustState {
  return { rootPublicKey: root.publicKey, keysetVersion: 5, lastSeq: 10, versionFloors: { digits: 7 }, timeFloor: NOW - 10 * DAY, ...over };
}

const device: DeviceIdentity = { deviceId: 'dev-001', hardware: 'rpi4', agentVersion: '0.1.0' };

function refusalOf(fn: () => unknown): UpdateRefused {
  try {
    fn();
  } catch (err) {
    if (err instanceof UpdateRefused) return err;
    throw err;
  }
  throw new Error('expected verifyDesired to refuse, it accepted');
}

/** Flip one character inside the signed text, keeping it valid JSON and schema-valid. */
function tamper(env: Envelope, from: string, to: string): Envelope {
  expect(env.signed).toContain(from);
  return { ...env, signed: env.signed.replace(from, to) };
}

describe('verifyDesired: happy path', () => {
  it('accepts a well-formed, correctly signed message and returns the parsed documents', () => {
    const msg = build();
    const v = verifyDesired(msg, trust(), device, NOW);
    expect(v.keyset.version).toBe(5);
    expect(v.desired.seq).toBe(11);
    expect(v.manifest.modelId).toBe('digits');
    expect(v.manifest.version).toBe(7);
    expect(v.manifestSha256).toBe(envelopeDigest(msg.manifest));
    expect(v.desired.manifestSha256).toBe(v.manifestSha256);
  });

  it('accepts a newer key set, an empty hardwareTargets (any hardware), and a key holding both roles', () => {
    const msg = build({ keyset: { version: 9 }, manifest: { hardwareTargets: [] }, manifestSigner: both, directorSigner: both });
    expect(verifyDesired(msg, trust(), { ...device, hardware: 'anything' }, NOW).keyset.version).toBe(9);
  });

  it('works with documents signed by tweetnacl as well', () => {
    const keyset = signDocument(keysetDoc(), root, 'tweetnacl');
    const manifest = signDocument(manifestDoc(), targets, 'tweetnacl');
    const dir = signDocument(desiredDoc(manifest), director, 'tweetnacl');
    expect(verifyDesired({ keyset, manifest, director: dir }, trust(), device, NOW).desired.deviceId).toBe('dev-001');
  });
});

describe('verifyDesired: refusals with their reason codes', () => {
  const cases: { name: string; reason: ReasonCode; msg: () => DesiredMessage; trust?: Partial<TrustState>; device?: Partial<DeviceIdentity>; now?: number; match?: RegExp }[] = [
    { name: 'key set signed by another root', reason: 'UNKNOWN_KEY', msg: () => build({ keysetSigner: otherRoot }), match: /root/ },
    {
      name: 'key set signed by another root but labelled with the pinned root key id', reason: 'BAD_SIGNATURE',
      msg: () => { const m = build({ keysetSigner: otherRoot }); return { ...m, keyset: { ...m.keyset, keyId: root.keyId } }; },
    },
    { name: 'tampered key set (version 5 -> 6)', reason: 'BAD_SIGNATURE', msg: () => { const m = build(); return { ...m, keyset: tamper(m.keyset, '"version":5', '"version":6') }; } },
    {
      name: 'tampered key set (revocation list emptied)', reason: 'BAD_SIGNATURE',
      msg: () => { const m = build(); return { ...m, keyset: tamper(m.keyset, `"revoked":["${revoked.keyId}"]`, '"revoked":[]') }; },
    },
    { name: 'key set version below trust.keysetVersion', reason: 'KEYSET_ROLLBACK', msg: () => build({ keyset: { version: 4 } }) },
    { name: 'expired key set', reason: 'EXPIRED', msg: () => build({ keyset: { expires: iso(NOW - 1) } }), match: /key set/ },
    { name: 'key set expiring exactly now', reason: 'EXPIRED', msg: () => build({ keyset: { expires: iso(NOW) } }) },
    { name: 'expired manifest', reason: 'EXPIRED', msg: () => build({ manifest: { expires: iso(NOW - 1000) } }), match: /manifest/ },
    { name: 'expired desired state', reason: 'EXPIRED', msg: () => build({ desired: { expires: iso(NOW - 1000) } }), match: /desired state/ },
    { name: 'manifest signed by a key not in the key set', reason: 'UNKNOWN_KEY', msg: () => build({ manifestSigner: stranger }), match: /manifest/ },
    { name: 'desired state signed by a key not in the key set', reason: 'UNKNOWN_KEY', msg: () => build({ directorSigner: stranger }) },
    { name: 'manifest signed by a revoked key', reason: 'REVOKED_KEY', msg: () => build({ manifestSigner: revoked }) },
    { name: 'desired state signed by a revoked key', reason: 'REVOKED_KEY', msg: () => build({ directorSigner: revoked }) },
    {
      name: 'revoked key that is still listed among the keys', reason: 'REVOKED_KEY',
      msg: () => build({ keyset: { keys: [entry(targets, ['targets']), entry(director, ['director']), entry(revoked, ['targets'])] }, manifestSigner: revoked }),
    },
    { name: 'manifest signed by a director-only key', reason: 'KEY_ROLE', msg: () => build({ manifestSigner: director }) },
    { name: 'desired state signed by a targets-only key', reason: 'KEY_ROLE', msg: () => build({ directorSigner: targets }) },
    {
      name: 'manifest signature made by another key under a listed key id', reason: 'BAD_SIGNATURE',
      msg: () => { const m = build({ manifestSigner: stranger }); const manifest = { ...m.manifest, keyId: targets.keyId }; return { ...m, manifest, director: signDocument(desiredDoc(manifest), director) }; },
    },
    {
      name: 'tampered manifest, with a desired state re-pointed at the tampered text', reason: 'BAD_SIGNATURE',
      msg: () => { const m = build(); const manifest = tamper(m.manifest, '"length":1234', '"length":1235'); return { ...m, manifest, director: signDocument(desiredDoc(manifest), director) }; },
    },
    { name: 'tampered desired state', reason: 'BAD_SIGNATURE', msg: () => { const m = build(); return { ...m, director: tamper(m.director, '"seq":11', '"seq":12') }; } },
    { name: 'desired state for another device', reason: 'WRONG_DEVICE', msg: () => build({ desired: { deviceId: 'dev-002' } }) },
    { name: 'seq equal to lastSeq', reason: 'REPLAYED', msg: () => build({ desired: { seq: 10 } }) },
    { name: 'seq below lastSeq', reason: 'REPLAYED', msg: () => build({ desired: { seq: 3 } }) },
    {
      name: 'desired state pointing at a different manifest digest', reason: 'MANIFEST_MISMATCH',
      msg: () => { const m = build(); const other = signDocument(manifestDoc({ version: 8 }), targets); return { ...m, director: signDocument(desiredDoc(other), director) }; },
    },
    {
      name: 'a valid manifest delivered with a desired state for another manifest', reason: 'MANIFEST_MISMATCH',
      msg: () => { const m = build(); return { ...m, manifest: signDocument(manifestDoc({ version: 8 }), targets) }; },
    },
    { name: 'desired state naming another version than the manifest', reason: 'MANIFEST_MISMATCH', msg: () => build({ desired: { version: 8 } }) },
    { name: 'desired state naming another model than the manifest', reason: 'MANIFEST_MISMATCH', msg: () => build({ desired: { modelId: 'other' } }) },
    { name: 'manifest version below the floor', reason: 'ROLLBACK', msg: () => build({ manifest: { version: 6 }, desired: { version: 6 } }) },
    { name: 'hardware not in hardwareTargets', reason: 'WRONG_HARDWARE', msg: () => build(), device: { hardware: 'esp32' } },
    { name: 'minAgentVersion above the agent version', reason: 'RUNTIME_INCOMPATIBLE', msg: () => build({ manifest: { runtime: { onnxruntimeWeb: '>=1.30.0 <2.0.0', minAgentVersion: '0.2.0' } } }) },
    { name: 'minAgentVersion above on the patch level', reason: 'RUNTIME_INCOMPATIBLE', msg: () => build({ manifest: { runtime: { onnxruntimeWeb: '*', minAgentVersion: '0.1.1' } } }) },
    {
      name: 'a clock set back before timeFloor does not revive an expired manifest', reason: 'EXPIRED',
      // the manifest expired 1 s before the time floor; the device clock claims a day before that
      msg: () => build({ manifest: { issuedAt: iso(NOW - 400 * DAY), expires: iso(NOW - 1000) } }),
      trust: { timeFloor: NOW }, now: NOW - 2 * DAY,
    },
    {
      name: 'a clock set back before timeFloor does not revive an expired desired state', reason: 'EXPIRED',
      msg: () => build({ desired: { expires: iso(NOW - 1000) } }), trust: { timeFloor: NOW }, now: 0,
    },
    {
      name: 'a clock set back before timeFloor does not revive an expired key set', reason: 'EXPIRED',
      msg: () => build({ keyset: { expires: iso(NOW - 1000) } }), trust: { timeFloor: NOW }, now: NOW - 365 * DAY,
    },
  ];

  it.each(cases)('$name -> $reason', (c) => {
    const err = refusalOf(() => verifyDesired(c.msg(), trust(c.trust), { ...device, ...c.device }, c.now ?? NOW));
    expect(err.reason).toBe(c.reason);
    expect(err.message.length).toBeGreaterThan(0);
    if (c.match) expect(err.message).toMatch(c.match);
  });

  it('the time-floor cases are accepted at the document times when the floor is not involved (controls)', () => {
    // same message as the manifest case above is accepted by a device whose clock and floor are earlier
    const msg = build({ manifest: { issuedAt: iso(NOW - 400 * DAY), expires: iso(NOW - 1000) }, desired: { expires: iso(NOW + DAY) } });
    expect(() => verifyDesired(msg, trust({ timeFloor: NOW - 10 * DAY }), device, NOW - 2 * DAY)).not.toThrow();
    expect(refusalOf(() => verifyDesired(msg, trust({ timeFloor: NOW }), device, NOW - 2 * DAY)).reason).toBe('EXPIRED');
  });

  it('every other hardware target and a newer agent are accepted (controls for the last cases)', () => {
    expect(() => verifyDesired(build(), trust(), { ...device, hardware: 'jetson-nano', agentVersion: '0.10.0' }, NOW)).not.toThrow();
    expect(() => verifyDesired(build({ manifest: { version: 9 }, desired: { version: 9 } }), trust(), device, NOW)).not.toThrow();
  });

  it('a refusal leaves the trust state object untouched', () => {
    const t = trust();
    const before = JSON.stringify({ ...t, rootPublicKey: b64.encode(t.rootPublicKey) });
    refusalOf(() => verifyDesired(build({ desired: { seq: 1 } }), t, device, NOW));
    refusalOf(() => verifyDesired(build({ keyset: { version: 1 } }), t, device, NOW));
    expect(JSON.stringify({ ...t, rootPublicKey: b64.encode(t.rootPublicKey) })).toBe(before);
  });
});

describe('SignatureCache shared across calls', () => {
  it('never accepts a tampered envelope after the genuine one was cached', () => {
    const cache = new SignatureCache();
    const msg = build();
    expect(() => verifyDesired(msg, trust(), device, NOW, cache)).not.toThrow();
    expect(() => verifyDesired(msg, trust(), device, NOW, cache)).not.toThrow(); // served from the cache

    // tampered key set, same keyId and sig as the cached one
    const ks = { ...msg, keyset: tamper(msg.keyset, `"revoked":["${revoked.keyId}"]`, '"revoked":[]') };
    expect(refusalOf(() => verifyDesired(ks, trust(), device, NOW, cache)).reason).toBe('BAD_SIGNATURE');

    // tampered manifest re-pointed by a fresh, genuine desired state
    const manifest = tamper(msg.manifest, '"length":1234', '"length":99999');
    const mf = { ...msg, manifest, director: signDocument(desiredDoc(manifest, { seq: 12 }), director) };
    expect(refusalOf(() => verifyDesired(mf, trust(), device, NOW, cache)).reason).toBe('BAD_SIGNATURE');

    // tampered desired state (seq raised)
    const ds = { ...msg, director: tamper(msg.director, '"seq":11', '"seq":13') };
    expect(refusalOf(() => verifyDesired(ds, trust(), device, NOW, cache)).reason).toBe('BAD_SIGNATURE');

    // and the genuine message still passes afterwards
    expect(() => verifyDesired(msg, trust(), device, NOW, cache)).not.toThrow();
  });

  it('a signature cached under one root does not vouch for the same envelope under another root', () => {
    const cache = new SignatureCache();
    const msg = build();
    verifyDesired(msg, trust(), device, NOW, cache);
    // a device pinning another root must not accept root's key set, cached or not
    const err = refusalOf(() => verifyDesired(msg, trust({ rootPublicKey: otherRoot.publicKey }), device, NOW, cache));
    expect(err.reason).toBe('UNKNOWN_KEY');
    // a key set signed by otherRoot but labelled as root is not let through by the cache either
    const forged = build({ keysetSigner: otherRoot });
    const relabelled = { ...forged, keyset: { ...forged.keyset, keyId: root.keyId } };
    expect(refusalOf(() => verifyDesired(relabelled, trust(), device, NOW, cache)).reason).toBe('BAD_SIGNATURE');
  });

  it('cached signatures do not bypass revocation or role checks', () => {
    const cache = new SignatureCache();
    const msg = build({ manifestSigner: both });
    verifyDesired(msg, trust(), device, NOW, cache);
    // a newer key set revokes `both`; the same manifest envelope (cached signature) must be refused
    const keyset = signDocument(keysetDoc({ version: 6, keys: [entry(targets, ['targets']), entry(director, ['director'])], revoked: [revoked.keyId, both.keyId] }), root);
    const director2 = signDocument(desiredDoc(msg.manifest, { seq: 12 }), director);
    expect(refusalOf(() => verifyDesired({ keyset, manifest: msg.manifest, director: director2 }, trust(), device, NOW, cache)).reason).toBe('REVOKED_KEY');
    // a key set demoting `both` to director-only
    const keyset2 = signDocument(keysetDoc({ version: 6, keys: [entry(targets, ['targets']), entry(director, ['director']), entry(both, ['director'])] }), root);
    expect(refusalOf(() => verifyDesired({ keyset: keyset2, manifest: msg.manifest, director: director2 }, trust(), device, NOW, cache)).reason).toBe('KEY_ROLE');
  });

  it('a small cache that overflows keeps refusing tampered envelopes', () => {
    const cache = new SignatureCache(2);
    for (let seq = 11; seq < 16; seq++) {
      const msg = build({ desired: { seq } });
      expect(() => verifyDesired(msg, trust(), device, NOW, cache)).not.toThrow();
      const bad = { ...msg, director: tamper(msg.director, `"seq":${seq}`, `"seq":${seq + 100}`) };
      expect(refusalOf(() => verifyDesired(bad, trust(), device, NOW, cache)).reason).toBe('BAD_SIGNATURE');
    }
  });
  // issue 13: a verified key set or manifest is parsed once per cache; the checks after the parse run every time
  it('a parsed manifest from the cache is one frozen document that nobody can change, and the device, time, floor and schema checks still run on it', () => {
    const cache = new SignatureCache();
    const msg = build();
    const first = verifyDesired(msg, trust(), device, NOW, cache);
    const second = verifyDesired(msg, trust(), device, NOW, cache);
    expect(second.manifest).toEqual(verifyDesired(msg, trust(), device, NOW).manifest); // same result as without a cache
    // issue 13: shared, not copied per caller (a structured copy per device was ~3% of a simulated update)
    expect(second.manifest).toBe(first.manifest);
    expect(second.keyset).toBe(first.keyset);
    expect(Object.isFrozen(first.manifest.healthCheck.vectors[0].inputs.x)).toBe(true);
    // a caller writing into it throws (ES modules are strict) and changes nobody else's
    expect(() => first.manifest.hardwareTargets.push('esp32')).toThrow(TypeError);
    expect(() => { first.keyset.revoked.length = 0; }).toThrow(TypeError);
    expect(() => { (first.manifest as { version: number }).version = 99; }).toThrow(TypeError);
    const third = verifyDesired(msg, trust(), device, NOW, cache);
    expect(third.manifest.hardwareTargets).toEqual(['rpi4', 'jetson-nano']);
    expect(third.manifest.version).toBe(7);
    expect(third.keyset.revoked).toEqual([revoked.keyId]);
    // without a cache each call parses its own (writable) document, as before
    expect(Object.isFrozen(verifyDesired(msg, trust(), device, NOW).manifest)).toBe(false);
    // the same cached manifest, judged for another device, another time and another floor
    expect(refusalOf(() => verifyDesired(msg, trust(), { ...device, hardware: 'esp32' }, NOW, cache)).reason).toBe('WRONG_HARDWARE');
    expect(refusalOf(() => verifyDesired(msg, trust(), device, NOW + 301 * DAY, cache)).reason).toBe('EXPIRED');
    expect(refusalOf(() => verifyDesired(msg, trust({ versionFloors: { digits: 8 } }), device, NOW, cache)).reason).toBe('ROLLBACK');
    expect(refusalOf(() => verifyDesired(msg, trust({ keysetVersion: 6 }), device, NOW, cache)).reason).toBe('KEYSET_ROLLBACK');
  });

  it('a correctly signed manifest that fails its schema is refused every time (nothing is cached)', () => {
    const cache = new SignatureCache();
    const bad = signDocument({ ...manifestDoc(), artifact: { sha256: 'not-a-sha', length: 1234, format: 'onnx' } }, targets);
    const msg = { keyset: signDocument(keysetDoc(), root), manifest: bad, director: signDocument(desiredDoc(bad), director) };
    expect(refusalOf(() => verifyDesired(msg, trust(), device, NOW, cache)).reason).toBe('MALFORMED');
    expect(refusalOf(() => verifyDesired(msg, trust(), device, NOW, cache)).reason).toBe('MALFORMED');
  });
});
