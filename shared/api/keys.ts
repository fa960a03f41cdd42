// Signing keys: public halves only. Rotation, revocation, import of a key set signed by an offline root.
import { z } from 'zod';
import { KeyId } from '../ids.ts';
import { Envelope } from '../messages.ts';
import { defineRoute, errors, type RouteContract } from './contract.ts';

export const KeyParams = z.object({ keyId: KeyId }).strict();
const EnvelopeView = z.object({ signed: z.string(), keyId: z.string(), sig: z.string() });
/** a key change and what followed it (desired states re-issued, bundles re-signed) */
const KeyChange = z.looseObject({ applied: z.boolean() });

export const KeysView = z.object({
  mode: z.enum(['embedded', 'offline-root']),
  root: z.object({ keyId: z.string(), publicKey: z.string() }),
  keyset: z.looseObject({ version: z.number().int() }).nullable(),
  keysetEnvelope: EnvelopeView.nullable(),
  pending: z.unknown().meta({ description: 'a key set waiting for the offline root’s signature, or null' }),
});
export type KeysView = z.infer<typeof KeysView>;

const tags = ['keys'];
export const keysContract = {
  getKeys: defineRoute({ method: 'GET', path: '/v1/keys', summary: 'the root key devices pin, the current signed key set and any pending one', tags, responses: { 200: KeysView, ...errors(401, 403) } }),
  rotate: defineRoute({
    method: 'POST', path: '/v1/keys/rotate', summary: 'make a new targets signing key (202 when the offline root must sign the key set first)', tags, access: 'admin',
    responses: { 201: KeyChange, 202: KeyChange.extend({ message: z.string() }), ...errors(401, 403, 409) },
  }),
  revokeKey: defineRoute({
    method: 'POST', path: '/v1/keys/:keyId/revoke', summary: 'stop trusting a signing key (202 when the offline root must sign the key set first)', tags, access: 'admin',
    params: KeyParams, responses: { 200: KeyChange, 202: KeyChange.extend({ message: z.string() }), ...errors(400, 401, 403, 404, 409) },
  }),
  importKeyset: defineRoute({
    method: 'POST', path: '/v1/keys/keyset', summary: 'import a key set signed by the offline root', tags, access: 'admin',
    body: Envelope, responses: { 200: KeyChange, ...errors(400, 401, 403, 409) },
  }),
} satisfies Record<string, RouteContract>;

export const keysRoutes: RouteContract[] = Object.values(keysContract);
