// verifyShadow (shared/verify-shadow.ts): the shadow candidate a verified desired state names passes the
// same checks as the active manifest, table-tested refusal by refusal; a desired state without a shadow
// verifies exactly as before.
import { describe, expect, it } from 'vitest';
import { b64, generateKeyPair, keyIdOf } from '../../shared/crypto.ts';
import { envelopeDigest, signDocument, type SigningKey } from '../../shared/envelope.ts';
import { DesiredState, KeySet, Manifest, type DesiredMessage, type Envelope } from '../../shared/messages.ts';
import { UpdateRefused, type ReasonCode } from '../../shared/reason-codes.ts';
import { verifyDesired, type DeviceIdentity, type TrustState } from '../../shared/verify-desired.ts';
import { verifyShadow } from '../../shared/verify-shadow.ts';

const DAY = 86400_000;
const NOW = Date.parse('2030-06-01T12:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();
const makeKey = (): SigningKey => { const kp = generateKeyPair(); return { keyId: keyIdOf(kp.publicKey), seed: kp.seed, publicKey: kp.publicKey }; };
const [root, targets, director, stranger] = [makeKey(), makeKey(), makeKey(), makeKey()];
const f32 = (values: number[]) => b64.encode(new Uint8Array(Float32Array.from(values).buffer));

const keyset = () => signDocument(KeySet.parse({
  type: 'keyset', version: 5, issuedAt: iso(NOW - DAY), expires: iso(NOW + 30 * DAY),
  keys: [{ keyId: targets.keyId, publicKey: b64.encode(targets.publicKey), roles: ['targets'] }, { keyId: director.keyId, publicKey: b64.encode(director.publicKey), roles: ['director'] }],
  revoked: [],
}), root);

const manifestDoc = (over: Partial<Manifest> = {}): Manifest => Manifest.parse({
  type: 'manifest', modelId: 'digits', version: 7,
  artifact: { sha256: 'ab'.repeat(32), length: 1234, format: 'onnx' },
  quantization: { scheme: 'none', perChannel: false, sessionConfig: {}, quantizedOps: 0, skippedOps: 0 },
  io: { inputs: [{ name: 'x', type: 'float32', shape: ['N', 2] }], outputs: [{ name: 'y', type: 'float32', shape: ['N', 2] }] },
  runtime: { onnxruntimeWeb: '>=1.30.0 <2.0.0', minAgentVersion: '0.1.0' },
  hardwareTargets: ['rpi4'],
  healthCheck: {
    vectors: [{ inputs: { x: { dtype: 'float32', dims: [1, 2], data: f32([1, 2]) } }, outputs: { y: { dtype: 'float32', dims: [1, 2], data: f32([0.25, 0.75]) } } }],
    atol: 1e-4, rtol: 1e-3, latencyBudgetMs: 250,
  },
  lineage: {}, issuedAt: iso(NOW - DAY), expires: iso(NOW + 300 * DAY),
  ...over,
});

interface Opts { shadow?: Partial<Manifest>; shadowSigner?: SigningKey; named?: Partial<NonNullable<DesiredState['shadow']>>; deliver?: (env: Envelope) => Envelope | undefined; noShadow?: boolean }

function build(o: Opts = {}): DesiredMessage {
  const manifest = signDocument(manifestDoc(), targets);
  const shadowEnv = signDocument(manifestDoc({ version: 8, artifact: { sha256: 'cd'.repeat(32), length: 999, format: 'onnx' }, ...o.shadow }), o.shadowSigner ?? targets);
  const desired = DesiredState.parse({
    type: 'desired', deviceId: 'dev-001', seq: 11, issuedAt: iso(NOW - 60_000), expires: iso(NOW + DAY), modelId: 'digits', version: 7, manifestSha256: envelopeDigest(manifest),
    ...(o.noShadow ? {} : { shadow: { modelId: 'digits', version: o.shadow?.version ?? 8, manifestSha256: envelopeDigest(shadowEnv), sampleRate: 0.1, ...o.named } }),
  });
  const delivered = o.deliver ? o.deliver(shadowEnv) : shadowEnv;
  return { keyset: keyset(), manifest, director: signDocument(desired, director), ...(o.noShadow || !delivered ? {} : { shadowManifest: delivered }) };
}

const trust = (): TrustState => ({ rootPublicKey: root.publicKey, keysetVersion: 5, lastSeq: 10, versionFloors: { digits: 7 }, timeFloor: NOW - 10 * DAY });
const device: DeviceIdentity = { deviceId: 'dev-001', hardware: 'rpi4', agentVersion: '0.1.0' };
const run = (msg: DesiredMessage) => verifyShadow(msg, verifyDesired(msg, trust(), device, NOW), trust(), device, NOW);

describe('verifyShadow', () => {
  it('returns the candidate, its digest, exact signed text and sample rate', () => {
    const msg = build();
    const s = run(msg)!;
    expect(s.manifest.version).toBe(8);
    expect(s.manifestSha256).toBe(envelopeDigest(msg.shadowManifest!));
    expect(s.manifestText).toBe(msg.shadowManifest!.signed);
    expect(s.sampleRate).toBe(0.1);
  });

  it('a desired state without a shadow: null, and its signed text has no shadow key at all', () => {
    const msg = build({ noShadow: true });
    expect(run(msg)).toBeNull();
    expect(msg.director.signed).not.toContain('shadow');
    expect(Object.keys(msg)).toEqual(['keyset', 'manifest', 'director']);
  });

  const cases: { name: string; reason: ReasonCode; o: Opts }[] = [
    { name: 'named but not delivered', reason: 'MANIFEST_MISMATCH', o: { deliver: () => undefined } },
    { name: 'another manifest delivered than the one named', reason: 'MANIFEST_MISMATCH', o: { deliver: () => signDocument(manifestDoc({ version: 9 }), targets) } },
    { name: 'signed by a key outside the key set', reason: 'UNKNOWN_KEY', o: { shadowSigner: stranger } },
    { name: 'signed by the director key (no targets role)', reason: 'KEY_ROLE', o: { shadowSigner: director } },
    { name: 'signature does not verify', reason: 'BAD_SIGNATURE', o: { deliver: (e) => ({ ...e, sig: signDocument({ other: 1 }, targets).sig }) } },
    { name: 'the desired state names another version', reason: 'MANIFEST_MISMATCH', o: { named: { version: 9 } } },
    { name: 'expired', reason: 'EXPIRED', o: { shadow: { expires: iso(NOW - 1000) } } },
    { name: 'below the version floor', reason: 'ROLLBACK', o: { shadow: { version: 6 } } },
    { name: 'for other hardware', reason: 'WRONG_HARDWARE', o: { shadow: { hardwareTargets: ['jetson-nano'] } } },
    { name: 'needs a newer agent', reason: 'RUNTIME_INCOMPATIBLE', o: { shadow: { runtime: { onnxruntimeWeb: '>=1.30.0 <2.0.0', minAgentVersion: '9.0.0' } } } },
  ];
  for (const c of cases) {
    it(`refuses a shadow ${c.name}: ${c.reason}`, () => {
      const msg = build(c.o);
      let err: unknown = null;
      try { run(msg); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(UpdateRefused);
      expect((err as UpdateRefused).reason).toBe(c.reason);
    });
  }

  it('refuses the active model itself as its own shadow: MALFORMED', () => {
    const manifest = signDocument(manifestDoc(), targets);
    const desired = DesiredState.parse({
      type: 'desired', deviceId: 'dev-001', seq: 11, issuedAt: iso(NOW - 60_000), expires: iso(NOW + DAY), modelId: 'digits', version: 7, manifestSha256: envelopeDigest(manifest),
      shadow: { modelId: 'digits', version: 7, manifestSha256: envelopeDigest(manifest), sampleRate: 1 },
    });
    const msg = { keyset: keyset(), manifest, director: signDocument(desired, director), shadowManifest: manifest };
    expect(() => run(msg)).toThrow(/the shadow candidate is the active model itself/);
  });
});
