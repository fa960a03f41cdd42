// Ed25519 interop (tweetnacl vs node:crypto), malleability, canonical JSON and signed envelopes.
import { createPrivateKey, createPublicKey, randomBytes, sign as nodeSign, verify as nodeVerify } from 'node:crypto';
import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../shared/canonical-json.ts';
import { b64, generateKeyPair, isCanonicalS, keyIdOf, keyPairFromSeed, signBytes, verifyBytes, type Ed25519Impl } from '../../shared/crypto.ts';
import { envelopeDigest, envelopeSignatureValid, parseSigned, signDocument, type SigningKey } from '../../shared/envelope.ts';
import { DesiredState } from '../../shared/messages.ts';
import { UpdateRefused } from '../../shared/reason-codes.ts';

const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

function nodePub(raw: Uint8Array) {
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}
function nodePriv(seed: Uint8Array) {
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
}

// L = 2^252 + 27742317777372353535851937790883648493 (RFC 8032), computed here independently of shared/crypto.ts.
const L = (1n << 252n) + 27742317777372353535851937790883648493n;

function leToBig(bytes: Uint8Array): bigint {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]);
  return n;
}
function bigToLe(n: bigint, len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) { out[i] = Number(n & 0xffn); n >>= 8n; }
  if (n !== 0n) throw new Error('does not fit');
  return out;
}
/** The S + L malleation of a valid signature (still < 2^256 since S < L < 2^253). */
function malleate(sig: Uint8Array): Uint8Array {
  const s = leToBig(sig.slice(32));
  const out = new Uint8Array(64);
  out.set(sig.slice(0, 32), 0);
  out.set(bigToLe(s + L, 32), 32);
  return out;
}

const IMPLS: Ed25519Impl[] = ['node', 'tweetnacl'];

// RFC 8032 section 7.1, TEST 2 (one-byte message).
const RFC_SEED = Buffer.from('4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb', 'hex');
const RFC_PUB = Buffer.from('3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c', 'hex');
const RFC_MSG = Buffer.from('72', 'hex');
// Signature from RFC 8032 section 7.1 TEST 2.
const RFC_SIG = Buffer.from(
  '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da' +
  '085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00', 'hex');

describe('Ed25519: tweetnacl and node:crypto agree (RFC 8032)', () => {
  it('derives the RFC 8032 test-2 public key and signature from its seed', () => {
    const kp = keyPairFromSeed(RFC_SEED);
    expect(Buffer.from(kp.publicKey).toString('hex')).toBe(RFC_PUB.toString('hex'));
    for (const impl of IMPLS) {
      expect(Buffer.from(signBytes(RFC_MSG, RFC_SEED, impl)).toString('hex')).toBe(RFC_SIG.toString('hex'));
      expect(verifyBytes(RFC_MSG, RFC_SIG, RFC_PUB, impl)).toBe(true);
    }
    expect(nodeVerify(null, RFC_MSG, nodePub(RFC_PUB), RFC_SIG)).toBe(true);
  });

  it('a tweetnacl signature verifies with node:crypto directly', () => {
    for (let i = 0; i < 5; i++) {
      const kp = generateKeyPair();
      const msg = randomBytes(1 + i * 37);
      const sig = signBytes(msg, kp.seed, 'tweetnacl');
      expect(sig.length).toBe(64);
      expect(nodeVerify(null, msg, nodePub(kp.publicKey), sig)).toBe(true);
      // and not for another message
      const other = Buffer.concat([msg, Buffer.from([0])]);
      expect(nodeVerify(null, other, nodePub(kp.publicKey), sig)).toBe(false);
    }
  });

  it('a node:crypto signature verifies with tweetnacl directly and through verifyBytes', () => {
    for (let i = 0; i < 5; i++) {
      const kp = generateKeyPair();
      const msg = randomBytes(3 + i * 51);
      const sig = new Uint8Array(nodeSign(null, msg, nodePriv(kp.seed)));
      expect(nacl.sign.detached.verify(msg, sig, kp.publicKey)).toBe(true);
      for (const impl of IMPLS) expect(verifyBytes(msg, sig, kp.publicKey, impl)).toBe(true);
      const flipped = Uint8Array.from(sig);
      flipped[5] ^= 1;
      expect(nacl.sign.detached.verify(msg, flipped, kp.publicKey)).toBe(false);
      for (const impl of IMPLS) expect(verifyBytes(msg, flipped, kp.publicKey, impl)).toBe(false);
    }
  });

  it('both implementations produce byte-identical signatures for the same seed and message', () => {
    for (let i = 0; i < 5; i++) {
      const seed = new Uint8Array(randomBytes(32));
      const msg = randomBytes(i * 100);
      const a = signBytes(msg, seed, 'tweetnacl');
      const b = signBytes(msg, seed, 'node');
      const c = new Uint8Array(nodeSign(null, msg, nodePriv(seed)));
      expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
      expect(Buffer.from(b).equals(Buffer.from(c))).toBe(true);
    }
  });

  it('keyPairFromSeed matches node:crypto key derivation, and keyIdOf is the 32-hex SHA-256 prefix', () => {
    const seed = new Uint8Array(randomBytes(32));
    const kp = keyPairFromSeed(seed);
    const spki = createPublicKey(nodePriv(seed)).export({ format: 'der', type: 'spki' });
    expect(Buffer.from(spki.subarray(SPKI_PREFIX.length)).equals(Buffer.from(kp.publicKey))).toBe(true);
    expect(keyIdOf(kp.publicKey)).toMatch(/^[0-9a-f]{32}$/);
    expect(() => keyPairFromSeed(new Uint8Array(31))).toThrow();
  });

  it('verifyBytes refuses wrong lengths and a wrong public key', () => {
    const kp = generateKeyPair();
    const other = generateKeyPair();
    const msg = Buffer.from('hello');
    const sig = signBytes(msg, kp.seed);
    for (const impl of IMPLS) {
      expect(verifyBytes(msg, sig, other.publicKey, impl)).toBe(false);
      expect(verifyBytes(msg, sig.slice(0, 63), kp.publicKey, impl)).toBe(false);
      expect(verifyBytes(msg, sig, kp.publicKey.slice(0, 31), impl)).toBe(false);
    }
  });
});

describe('Ed25519 malleability (S + L)', () => {
  it('raw tweetnacl accepts S + L, node:crypto does not, and verifyBytes refuses it in both impls', () => {
    const kp = generateKeyPair();
    const msg = Buffer.from('{"type":"manifest","version":7}');
    const sig = signBytes(msg, kp.seed, 'tweetnacl');
    const bad = malleate(sig);
    expect(Buffer.from(bad).equals(Buffer.from(sig))).toBe(false);
    expect(leToBig(bad.slice(32))).toBe(leToBig(sig.slice(32)) + L);

    // the pitfall this guards against (PITFALLS.md, tweetnacl 1.0.3)
    expect(nacl.sign.detached.verify(msg, bad, kp.publicKey)).toBe(true);
    // node:crypto (RFC 8032 strict) rejects it
    expect(nodeVerify(null, msg, nodePub(kp.publicKey), bad)).toBe(false);

    expect(isCanonicalS(sig)).toBe(true);
    expect(isCanonicalS(bad)).toBe(false);
    for (const impl of IMPLS) {
      expect(verifyBytes(msg, sig, kp.publicKey, impl)).toBe(true);
      expect(verifyBytes(msg, bad, kp.publicKey, impl)).toBe(false);
    }
  });

  it('isCanonicalS: S = L - 1 is canonical, S = L and S = 2^256 - 1 are not, wrong length is not', () => {
    const r = new Uint8Array(32);
    const sig = (s: bigint) => { const out = new Uint8Array(64); out.set(r, 0); out.set(bigToLe(s, 32), 32); return out; };
    expect(isCanonicalS(sig(0n))).toBe(true);
    expect(isCanonicalS(sig(L - 1n))).toBe(true);
    expect(isCanonicalS(sig(L))).toBe(false);
    expect(isCanonicalS(sig(L + 1n))).toBe(false);
    expect(isCanonicalS(sig((1n << 256n) - 1n))).toBe(false);
    expect(isCanonicalS(new Uint8Array(63))).toBe(false);
  });

  it('a malleated envelope signature fails envelopeSignatureValid in both impls', () => {
    const kp = generateKeyPair();
    const key: SigningKey = { keyId: keyIdOf(kp.publicKey), seed: kp.seed, publicKey: kp.publicKey };
    const env = signDocument({ a: 1 }, key);
    const malleated = { ...env, sig: b64.encode(malleate(b64.decode(env.sig))) };
    expect(malleated.sig).toHaveLength(88);
    for (const impl of IMPLS) {
      expect(envelopeSignatureValid(env, kp.publicKey, impl)).toBe(true);
      expect(envelopeSignatureValid(malleated, kp.publicKey, impl)).toBe(false);
    }
  });
});

describe('canonicalJson', () => {
  it('is independent of key insertion order, at every depth', () => {
    const a = { b: 1, a: { z: [1, { y: 2, x: 3 }], c: 'x' }, m: null };
    const b = { m: null, a: { c: 'x', z: [1, { x: 3, y: 2 }] }, b: 1 };
    expect(canonicalJson(a)).toBe(canonicalJson(b));
    expect(canonicalJson(a)).toBe('{"a":{"c":"x","z":[1,{"x":3,"y":2}]},"b":1,"m":null}');
  });

  it('keeps array order (arrays are not sorted) and handles nested arrays and objects', () => {
    expect(canonicalJson([3, 1, 2])).toBe('[3,1,2]');
    expect(canonicalJson([[2, 1], [{ b: [true, false], a: [] }], {}])).toBe('[[2,1],[{"a":[],"b":[true,false]}],{}]');
    expect(canonicalJson([3, 1, 2])).not.toBe(canonicalJson([1, 2, 3]));
  });

  it('has no whitespace, drops undefined members, and round-trips through JSON.parse', () => {
    const v = { s: 'a "q" \\ \n é', n: -1.5e-7, t: true, u: undefined, arr: [undefined, 1] };
    const text = canonicalJson(v);
    expect(text).toBe('{"arr":[null,1],"n":-1.5e-7,"s":"a \\"q\\" \\\\ \\n é","t":true}');
    expect(text).not.toContain('"u"');
    expect(JSON.parse(text)).toEqual({ s: v.s, n: v.n, t: true, arr: [null, 1] });
  });

  it('rejects NaN and Infinity anywhere, and non-JSON types', () => {
    expect(() => canonicalJson(NaN)).toThrow(TypeError);
    expect(() => canonicalJson(Infinity)).toThrow(TypeError);
    expect(() => canonicalJson({ a: { b: [1, -Infinity] } })).toThrow(/NaN or Infinity/);
    expect(() => canonicalJson({ a: [NaN] })).toThrow(TypeError);
    expect(() => canonicalJson({ a: 1n })).toThrow(TypeError);
    expect(() => canonicalJson({ f: () => 1 })).toThrow(TypeError);
  });
});

describe('signed envelopes', () => {
  const kp = generateKeyPair();
  const key: SigningKey = { keyId: keyIdOf(kp.publicKey), seed: kp.seed, publicKey: kp.publicKey };

  it('sign then verify, in both impls; signed text is the canonical JSON', () => {
    const doc = { z: 1, a: [1, 2], type: 'x' };
    for (const impl of IMPLS) {
      const env = signDocument(doc, key, impl);
      expect(env.signed).toBe(canonicalJson(doc));
      expect(env.keyId).toBe(key.keyId);
      for (const v of IMPLS) expect(envelopeSignatureValid(env, kp.publicKey, v)).toBe(true);
      expect(envelopeDigest(env)).toMatch(/^[0-9a-f]{64}$/);
    }
  });

  it('changing any one character of the signed text breaks the signature', () => {
    const env = signDocument({ deviceId: 'dev-1', seq: 41, note: 'hello world' }, key);
    expect(envelopeSignatureValid(env, kp.publicKey)).toBe(true);
    for (let i = 0; i < env.signed.length; i++) {
      const ch = env.signed[i];
      const repl = ch === 'x' ? 'y' : 'x';
      const tampered = { ...env, signed: env.signed.slice(0, i) + repl + env.signed.slice(i + 1) };
      expect(envelopeSignatureValid(tampered, kp.publicKey, 'node'), `position ${i}`).toBe(false);
    }
    const seq42 = { ...env, signed: env.signed.replace('"seq":41', '"seq":42') };
    expect(seq42.signed).not.toBe(env.signed);
    for (const impl of IMPLS) expect(envelopeSignatureValid(seq42, kp.publicKey, impl)).toBe(false);
    // the digest names the exact text
    expect(envelopeDigest(seq42)).not.toBe(envelopeDigest(env));
  });

  it('a semantically equal but re-serialised text does not verify (exact bytes are signed)', () => {
    const env = signDocument({ a: 1, b: 2 }, key);
    const pretty = { ...env, signed: JSON.stringify(JSON.parse(env.signed), null, 1) };
    expect(JSON.parse(pretty.signed)).toEqual(JSON.parse(env.signed));
    expect(envelopeSignatureValid(pretty, kp.publicKey)).toBe(false);
  });

  function refusal(fn: () => unknown): UpdateRefused {
    try {
      fn();
    } catch (err) {
      expect(err).toBeInstanceOf(UpdateRefused);
      return err as UpdateRefused;
    }
    throw new Error('expected an UpdateRefused, nothing was thrown');
  }

  it('parseSigned refuses non-JSON text with MALFORMED', () => {
    const env = { ...signDocument({ a: 1 }, key), signed: '{"type":"desired",' };
    const err = refusal(() => parseSigned(env, DesiredState, 'desired state'));
    expect(err.reason).toBe('MALFORMED');
    expect(err.message).toMatch(/desired state/);
    expect(err.message).toMatch(/not JSON/);
  });

  it('parseSigned refuses schema-invalid text with MALFORMED naming the field', () => {
    const now = new Date().toISOString();
    const good = { type: 'desired', deviceId: 'dev-1', seq: 1, issuedAt: now, expires: now, modelId: 'm', version: 1, manifestSha256: 'a'.repeat(64) };
    expect(parseSigned(signDocument(good, key), DesiredState, 'desired state')).toEqual(good);

    const badSeq = refusal(() => parseSigned(signDocument({ ...good, seq: 0 }, key), DesiredState, 'desired state'));
    expect(badSeq.reason).toBe('MALFORMED');
    expect(badSeq.message).toMatch(/seq/);

    const extra = refusal(() => parseSigned(signDocument({ ...good, extra: true }, key), DesiredState, 'desired state'));
    expect(extra.reason).toBe('MALFORMED');

    const badId = refusal(() => parseSigned(signDocument({ ...good, deviceId: '../x' }, key), DesiredState, 'desired state'));
    expect(badId.reason).toBe('MALFORMED');
    expect(badId.message).toMatch(/deviceId/);

    const arr = refusal(() => parseSigned(signDocument([1, 2], key), DesiredState, 'desired state'));
    expect(arr.reason).toBe('MALFORMED');
  });
});
