// Who may get in: API tokens, enrollment tokens, device enrollment and device credentials.
import { z } from 'zod';
import { DeviceId } from '../ids.ts';
import { defineRoute, errors, type RouteContract } from './contract.ts';

export const Role = z.enum(['viewer', 'operator', 'admin']);
export type Role = z.infer<typeof Role>;

const Name = z.string().regex(/^[A-Za-z0-9][\w.@-]{0,63}$/, 'names are 1-64 characters of A-Z a-z 0-9 _ . @ - and start with a letter or digit');
export const TokenParams = z.object({ tokenId: z.string().regex(/^[0-9a-f]{16}$/, 'token ids are 16 hex characters') }).strict();
export const DeviceParams = z.object({ deviceId: DeviceId }).strict();
const Time = z.string().meta({ description: 'ISO 8601 time' });

export const TokenRequest = z.object({ name: Name, role: Role, ttlDays: z.number().int().min(1).max(3650).optional() }).strict();
export const EnrollmentTokenRequest = z.object({
  uses: z.number().int().min(1).max(100_000).default(1),
  ttlSeconds: z.number().int().min(60).max(30 * 86_400).default(3600),
  /** only device ids starting with this may enroll with the token */
  idPrefix: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/).optional().meta({ description: 'only device ids starting with this may enroll with the token' }),
}).strict();
const PublicKey = z.string().regex(/^[A-Za-z0-9+/]{43}=$/, 'a public key is a raw 32-byte Ed25519 key in base64 (44 characters)');
/**
 * Key pairs: `devices: [{deviceId, publicKey}]`, each device registers only its public key. Legacy:
 * `deviceIds: [...]`, each device gets a bearer secret (for brokers that cannot check signatures).
 */
export const EnrollRequest = z.object({
  enrollmentToken: z.string().min(1).max(256),
  devices: z.array(z.object({ deviceId: DeviceId, publicKey: PublicKey }).strict()).min(1).max(10_000).optional(),
  deviceIds: z.array(DeviceId).min(1).max(10_000).optional(),
}).strict().refine((b) => (b.devices === undefined) !== (b.deviceIds === undefined), {
  message: 'give devices: [{deviceId, publicKey}] (key pairs) or deviceIds: [...] (legacy bearer secrets), one of them',
  path: ['devices'],
});
/** The operator-approved path: a public key to register, or nothing (a legacy bearer secret is issued). */
export const CredentialRequest = z.object({ publicKey: PublicKey }).strict();

export const TokenView = z.object({
  tokenId: z.string(), name: z.string(), role: Role, createdBy: z.string(), createdAt: Time,
  expiresAt: Time.nullable(), revokedAt: Time.nullable(), lastUsedAt: Time.nullable(),
}).meta({ id: 'ApiToken' });
export type TokenView = z.infer<typeof TokenView>;
export const CreatedToken = TokenView.extend({ token: z.string().meta({ description: 'the secret: shown once, never stored in clear' }) });
export const EnrollmentToken = z.object({
  tokenId: z.string(), token: z.string().meta({ description: 'the secret: shown once' }), uses: z.number().int(), expiresAt: Time, idPrefix: z.string().nullable(),
}).meta({ id: 'EnrollmentToken' });
export type EnrollmentToken = z.infer<typeof EnrollmentToken>;
export const Enrolled = z.object({ devices: z.array(z.object({ deviceId: z.string(), publicKey: z.string().optional(), secret: z.string().optional() })) });
export const Whoami = z.union([
  z.object({ kind: z.literal('token'), name: z.string(), role: Role, tokenId: z.string() }),
  z.object({ kind: z.literal('device'), deviceId: z.string() }),
]);
export const DeviceRevoked = z.object({ deviceId: z.string(), revoked: z.boolean(), disconnected: z.boolean() });
export type DeviceRevoked = z.infer<typeof DeviceRevoked>;

const tags = ['access'];
export const accessContract = {
  whoami: defineRoute({ method: 'GET', path: '/v1/whoami', summary: 'who the bearer token belongs to', tags, responses: { 200: Whoami, ...errors(401) } }),
  createToken: defineRoute({
    method: 'POST', path: '/v1/tokens', summary: 'make an API token (the secret is shown once)', tags, access: 'admin',
    body: TokenRequest, responses: { 201: CreatedToken, ...errors(400, 401, 403) },
  }),
  listTokens: defineRoute({ method: 'GET', path: '/v1/tokens', summary: 'list API tokens (never their secrets)', tags, access: 'admin', responses: { 200: z.object({ tokens: z.array(TokenView) }), ...errors(401, 403) } }),
  revokeToken: defineRoute({
    method: 'POST', path: '/v1/tokens/:tokenId/revoke', summary: 'revoke an API token', tags, access: 'admin',
    params: TokenParams, responses: { 200: TokenView, ...errors(400, 401, 403, 404) },
  }),
  createEnrollmentToken: defineRoute({
    method: 'POST', path: '/v1/enrollment-tokens', summary: 'make an enrollment token devices use once (or `uses` times) to register', tags, access: 'admin',
    body: EnrollmentTokenRequest, bodyOptional: true, responses: { 201: EnrollmentToken, ...errors(400, 401, 403) },
  }),
  revokeEnrollmentToken: defineRoute({
    method: 'POST', path: '/v1/enrollment-tokens/:tokenId/revoke', summary: 'revoke an enrollment token', tags, access: 'admin',
    params: TokenParams, responses: { 200: z.object({ tokenId: z.string(), revoked: z.literal(true) }), ...errors(400, 401, 403, 404) },
  }),
  enroll: defineRoute({
    method: 'POST', path: '/v1/enroll', summary: 'register devices with an enrollment token (the token in the body is the credential)', tags, access: 'public',
    body: EnrollRequest, responses: { 201: Enrolled, ...errors(400, 401, 403, 409, 429, 503) },
  }),
  issueCredential: defineRoute({
    method: 'POST', path: '/v1/devices/:deviceId/credentials', summary: "register a device's public key (or, with no body, issue a legacy bearer secret), replacing any previous credential", tags, access: 'admin',
    params: DeviceParams, body: CredentialRequest, bodyOptional: true,
    responses: { 201: z.union([z.object({ deviceId: z.string(), publicKey: z.string() }), z.object({ deviceId: z.string(), secret: z.string() })]), ...errors(400, 401, 403, 409, 503) },
  }),
  revokeDevice: defineRoute({
    method: 'POST', path: '/v1/devices/:deviceId/revoke', summary: "revoke a device's credential and end its MQTT session", tags, access: 'admin',
    params: DeviceParams, responses: { 200: DeviceRevoked, ...errors(400, 401, 403, 409, 503) },
  }),
  credentialStatus: defineRoute({
    method: 'GET', path: '/v1/devices/:deviceId/credential', summary: "a device's current credential (kind, public key, since when)", tags, access: 'admin',
    params: DeviceParams,
    responses: { 200: z.object({ deviceId: z.string(), enrolled: z.boolean(), kind: z.enum(['secret', 'ed25519']).nullable(), publicKey: z.string().nullable(), since: Time.nullable(), via: z.string().nullable() }), ...errors(400, 401, 403) },
  }),
} satisfies Record<string, RouteContract>;

export const accessRoutes: RouteContract[] = Object.values(accessContract);
