// Hashing and Ed25519 (RFC 8032). tweetnacl is the portable reference implementation and makes keys;
// node:crypto computes the very same signatures about 350x faster, so it is the path every hot loop
// takes (a fleet of 10,000 devices must never cost one tweetnacl operation per device in one process).
// A test checks that each verifies the other's signatures.
import { createHash, createPrivateKey, createPublicKey, sign as nodeSign, verify as nodeVerify, type KeyObject } from 'node:crypto';
import nacl from 'tweetnacl';

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export interface KeyPair {
  /** 32-byte Ed25519 public key */
  publicKey: Uint8Array;
  /** 32-byte seed (the RFC 8032 private key) */
  seed: Uint8Array;
}

export function generateKeyPair(): KeyPair {
  const kp = nacl.sign.keyPair();
  return { publicKey: kp.publicKey, seed: kp.secretKey.slice(0, 32) };
}

export function keyPairFromSeed(seed: Uint8Array): KeyPair {
  if (seed.length !== 32) throw new Error('an Ed25519 seed is 32 bytes');
  const kp = nacl.sign.keyPair.fromSeed(seed);
  return { publicKey: kp.publicKey, seed: Uint8Array.from(seed) };
}

/** A key id is the first 16 bytes of SHA-256 over the raw public key, in hex. */
export function keyIdOf(publicKey: Uint8Array): string {
  return sha256Hex(publicKey).slice(0, 32);
}

// DER prefixes that wrap a raw Ed25519 key for node:crypto (RFC 8410).
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

const publicKeyCache = new Map<string, KeyObject>();

function nodePublicKey(publicKey: Uint8Array): KeyObject {
  const id = Buffer.from(publicKey).toString('hex');
  let key = publicKeyCache.get(id);
  if (!key) {
    key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' });
    if (publicKeyCache.size > 1024) publicKeyCache.clear();
    publicKeyCache.set(id, key);
  }
  return key;
}

// Key objects made once per seed array (a signer keeps its seed for its life): importing the key costs
// about as much as the signature itself, and the director signs one desired state per device.
const privateKeyCache = new WeakMap<Uint8Array, KeyObject>();
function nodePrivateKey(seed: Uint8Array): KeyObject {
  let key = privateKeyCache.get(seed);
  if (!key) {
    key = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
    privateKeyCache.set(seed, key);
  }
  return key;
}

// The group order L = 2^252 + 27742317777372353535851937790883648493, little-endian.
const L = Uint8Array.from([
  0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
]);

/** True when the S half of a signature is canonical (S < L). tweetnacl alone accepts S + L. */
export function isCanonicalS(signature: Uint8Array): boolean {
  if (signature.length !== 64) return false;
  for (let i = 31; i >= 0; i--) {
    const s = signature[32 + i], l = L[i];
    if (s < l) return true;
    if (s > l) return false;
  }
  return false; // S == L
}

export type Ed25519Impl = 'node' | 'tweetnacl';

export function signBytes(message: Uint8Array, seed: Uint8Array, impl: Ed25519Impl = 'node'): Uint8Array {
  if (impl === 'tweetnacl') {
    return nacl.sign.detached(message, nacl.sign.keyPair.fromSeed(seed).secretKey);
  }
  return new Uint8Array(nodeSign(null, message, nodePrivateKey(seed)));
}

export function verifyBytes(message: Uint8Array, signature: Uint8Array, publicKey: Uint8Array, impl: Ed25519Impl = 'node'): boolean {
  if (signature.length !== 64 || publicKey.length !== 32 || !isCanonicalS(signature)) return false;
  if (impl === 'tweetnacl') return nacl.sign.detached.verify(message, signature, publicKey);
  try {
    return nodeVerify(null, message, nodePublicKey(publicKey), signature);
  } catch {
    return false;
  }
}

export const b64 = {
  encode: (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64'),
  decode: (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'base64')),
};
