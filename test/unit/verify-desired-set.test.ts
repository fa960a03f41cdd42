// verifyDesired for a multi-model assignment (issue 19): every manifest of the set passes the checks a
// single one does, or the whole assignment is refused with the reason of the first that fails.
import { describe, expect, it } from 'vitest';
import { b64, generateKeyPair, keyIdOf } from '../../shared/crypto.ts';
import { envelopeDigest, signDocument, type SigningKey } from '../../shared/envelope.ts';
import { DesiredState, KeySet, Manifest, type DesiredMessage, type Envelope } from '../../shared/messages.ts';
import { UpdateRefused, type ReasonCode } from '../../shared/reason-codes.ts';
import { verifyDesired, type TrustState } from '../../shared/verify-desired.ts';

const DAY = 86400_000;
const NOW = Date.parse('2030-06-01T12:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();
const key = (): SigningKey => { const kp = generateKeyPair(); return { keyId: keyIdOf(kp.publicKey), seed: kp.seed, publicKey: kp.publicKey }; };
const root = key(), targets = key(), director = key(), stranger = key();
const f32 = (values: number[]) => b64.encode(new Uint8Array(Float32Array.from(values).buffer));

const keyset = signDocument(KeySet.parse({
  type: 'keyset', version: 5, issuedAt: iso(NOW - DAY), expires: iso(NOW + 30 * DAY),
  keys: [{ keyId: targets.keyId, publicKey: b64.encode(targets.publicKey), roles: ['targets'] }, { keyId: director.keyId, publicKey: b64.encode(director.publicKey), roles: ['director'] }],
  revoked: [],
}), root);

function manifest(modelId: string, version: number, over: Partial<Manifest> = {}, signer = targets): Envelope {
  return signDocument(Manifest.parse({
    type: 'manifest', modelId, version, artifact: { sha256: 'ab'.repeat(32), length: 1234, format: 'onnx' },
    quantization: { scheme: 'none', perChannel: false, sessionConfig: {}, quantizedOps: 0, skippedOps: 0 },
    io: { inputs: [{ name: 'x', type: 'float32', shape: [1, 2] }], outputs: [{ name: 'y', type: 'float32', shape: [1, 2] }] },
    runtime: { onnxruntimeWeb: '>=1.30.0 <2.0.0', minAgentVersion: '0.1.0' }, hardwareTargets: [],
    healthCheck: { vectors: [{ inputs: { x: { dtype: 'float32', dims: [1, 2], data: f32([1, 2]) } }, outputs: { y: { dtype: 'float32', dims: [1, 2], data: f32([0, 1]) } } }], atol: 1e-4, rtol: 1e-3, latencyBudgetMs: 250 },
    lineage: {}, issuedAt: iso(NOW - DAY), expires: iso(NOW + 300 * DAY), ...over,
  }), signer);
}

/** mel v3 (primary) + emb v5 + kws v9, the way the director builds it; `edit` changes what is signed or sent */
function build(edit: { extras?: Envelope[]; models?: DesiredState['models']; sent?: Envelope[] } = {}): DesiredMessage {
  const primary = manifest('mel', 3);
  const extras = edit.extras ?? [manifest('emb', 5), manifest('kws', 9)];
  const models = edit.models ?? [{ modelId: 'emb', version: 5, manifestSha256: envelopeDigest(extras[0]) }, { modelId: 'kws', version: 9, manifestSha256: envelopeDigest(extras[1]) }];
  const desired = DesiredState.parse({
    type: 'desired', deviceId: 'dev-001', seq: 11, issuedAt: iso(NOW - 60_000), expires: iso(NOW + DAY),
    modelId: 'mel', version: 3, manifestSha256: envelopeDigest(primary), models, release: { name: 'wakeword', version: 2 },
  });
  return { keyset, manifest: primary, director: signDocument(desired, director), manifests: edit.sent ?? extras };
}

const trust = (over: Partial<TrustState> = {}): TrustState => ({ rootPublicKey: root.publicKey, keysetVersion: 5, lastSeq: 10, versionFloors: { kws: 9 }, timeFloor: 0, ...over });
const device = { deviceId: 'dev-001', hardware: 'rpi4', agentVersion: '0.1.0' };

function refusal(msg: DesiredMessage, t = trust()): UpdateRefused {
  try { verifyDesired(msg, t, device, NOW); } catch (err) { if (err instanceof UpdateRefused) return err; throw err; }
  throw new Error('accepted');
}

describe('verifyDesired: a set of models in one assignment', () => {
  it('accepts the set and returns every manifest in order', () => {
    const msg = build();
    const v = verifyDesired(msg, trust(), device, NOW);
    expect(v.manifest.modelId).toBe('mel');
    expect(v.extras.map((e) => `${e.manifest.modelId} v${e.manifest.version}`)).toEqual(['emb v5', 'kws v9']);
    expect(v.extras.map((e) => e.manifestSha256)).toEqual(msg.manifests!.map(envelopeDigest));
    expect(v.desired.release).toEqual({ name: 'wakeword', version: 2 });
  });

  const emb = manifest('emb', 5), kws = manifest('kws', 9);
  const cases: { name: string; reason: ReasonCode; msg: () => DesiredMessage; trust?: Partial<TrustState>; match: RegExp }[] = [
    { name: 'fewer manifests sent than the desired state names', reason: 'MANIFEST_MISMATCH', msg: () => build({ sent: [emb] }), match: /names 2 more models, the message carries 1/ },
    { name: 'more manifests sent than the desired state names', reason: 'MANIFEST_MISMATCH', msg: () => ({ ...build(), manifests: [emb, kws, emb] }), match: /names 2 more models, the message carries 3/ },
    { name: 'a second model swapped for another signed manifest', reason: 'MANIFEST_MISMATCH', msg: () => build({ sent: [manifest('emb', 6), kws] }), match: /for emb/ },
    { name: 'the manifests sent in the wrong order', reason: 'MANIFEST_MISMATCH', msg: () => build({ sent: [kws, emb] }), match: /for emb/ },
    { name: 'a model named twice', reason: 'MALFORMED', msg: () => build({ models: [{ modelId: 'mel', version: 3, manifestSha256: envelopeDigest(emb) }] , sent: [emb] }), match: /names model mel twice/ },
    { name: 'an extra manifest signed by a key outside the key set', reason: 'UNKNOWN_KEY', msg: () => build({ extras: [emb, manifest('kws', 9, {}, stranger)] }), match: /not in key set/ },
    { name: 'an extra manifest below its model floor', reason: 'ROLLBACK', msg: () => build({ extras: [emb, manifest('kws', 8)], models: [{ modelId: 'emb', version: 5, manifestSha256: envelopeDigest(emb) }, { modelId: 'kws', version: 8, manifestSha256: envelopeDigest(manifest('kws', 8)) }] }), match: /kws v8 is below this device's floor v9/ },
    { name: 'an extra manifest that expired', reason: 'EXPIRED', msg: () => { const old = manifest('kws', 9, { expires: iso(NOW - 1) }); return build({ extras: [emb, old] }); }, match: /manifest kws v9 expired/ },
    { name: 'an extra manifest for other hardware', reason: 'WRONG_HARDWARE', msg: () => build({ extras: [emb, manifest('kws', 9, { hardwareTargets: ['jetson'] })] }), match: /targets jetson/ },
    { name: 'an extra manifest naming another version than the desired state', reason: 'MANIFEST_MISMATCH', msg: () => { const m = manifest('kws', 10); return build({ extras: [emb, m], models: [{ modelId: 'emb', version: 5, manifestSha256: envelopeDigest(emb) }, { modelId: 'kws', version: 9, manifestSha256: envelopeDigest(m) }] }); }, match: /manifest is kws v10, desired state names kws v9/ },
  ];
  for (const c of cases) {
    it(`${c.name} -> ${c.reason}`, () => {
      const r = refusal(c.msg(), trust(c.trust));
      expect(r.reason).toBe(c.reason);
      expect(r.message).toMatch(c.match);
    });
  }
});
