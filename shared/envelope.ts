// Signed documents: sign canonical bytes once, verify exactly those bytes, parse only after.
import type { z } from 'zod';
import { canonicalJson } from './canonical-json.ts';
import { b64, keyIdOf, sha256Hex, signBytes, verifyBytes, type Ed25519Impl } from './crypto.ts';
import type { Envelope } from './messages.ts';
import { UpdateRefused } from './reason-codes.ts';

export interface SigningKey { keyId: string; seed: Uint8Array; publicKey: Uint8Array }

export function signDocument(doc: unknown, key: SigningKey, impl: Ed25519Impl = 'node'): Envelope {
  const signed = canonicalJson(doc);
  const sig = signBytes(Buffer.from(signed, 'utf8'), key.seed, impl);
  return { signed, keyId: key.keyId ?? keyIdOf(key.publicKey), sig: b64.encode(sig) };
}

/** SHA-256 of an envelope's signed text: how desired states name the manifest they point at. */
export function envelopeDigest(env: Envelope): string {
  return sha256Hex(Buffer.from(env.signed, 'utf8'));
}

export function envelopeSignatureValid(env: Envelope, publicKey: Uint8Array, impl: Ed25519Impl = 'node'): boolean {
  return verifyBytes(Buffer.from(env.signed, 'utf8'), b64.decode(env.sig), publicKey, impl);
}

/** Parse the signed text of an envelope whose signature was already checked. */
export function parseSigned<T extends z.ZodType>(env: Envelope, schema: T, what: string): z.infer<T> {
  let raw: unknown;
  try {
    raw = JSON.parse(env.signed);
  } catch {
    throw new UpdateRefused('MALFORMED', `${what}: signed text is not JSON`);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new UpdateRefused('MALFORMED', `${what}: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  return parsed.data;
}
