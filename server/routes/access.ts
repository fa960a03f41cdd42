// Who may get in: operator API tokens (admin), enrollment tokens (admin), device enrollment (public,
// carries its own token), and an admin's direct issue and revocation of device credentials.
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { DeviceId } from '../../shared/ids.ts';
import { actorName, auditRequest } from '../audit/audit-log.ts';
import { Role, tokenView } from '../auth/api-tokens.ts';
import { DeviceParams, parseBody, parseParams } from './params.ts';

const Name = z.string().regex(/^[A-Za-z0-9][\w.@-]{0,63}$/, 'names are 1-64 characters of A-Z a-z 0-9 _ . @ - and start with a letter or digit');
const TokenParams = z.object({ tokenId: z.string().regex(/^[0-9a-f]{16}$/, 'token ids are 16 hex characters') }).strict();

export const TokenRequest = z.object({ name: Name, role: Role, ttlDays: z.number().int().min(1).max(3650).optional() }).strict();
export const EnrollmentTokenRequest = z.object({
  uses: z.number().int().min(1).max(100_000).default(1),
  ttlSeconds: z.number().int().min(60).max(30 * 86_400).default(3600),
  /** only device ids starting with this may enroll with the token */
  idPrefix: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/).optional(),
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

export async function accessRoutes(app: FastifyInstance): Promise<void> {
  const { apiTokens, credentials, broker } = app.fleet;
  const admin = { config: { access: 'admin' as const } };

  app.get('/v1/whoami', async (req) => {
    const p = req.principal!;
    return p.kind === 'token' ? { kind: p.kind, name: p.name, role: p.role, tokenId: p.tokenId } : { kind: p.kind, deviceId: p.deviceId };
  });

  app.post('/v1/tokens', admin, async (req, reply) => {
    const body = parseBody(TokenRequest, req.body);
    const { token, row } = apiTokens.create({ ...body, createdBy: actorName(req) });
    auditRequest(req, 'tokens.create', row.token_id, { name: row.name, role: row.role, expiresAt: row.expires_at });
    reply.status(201);
    return { ...tokenView(row), token };
  });

  app.get('/v1/tokens', admin, async () => ({ tokens: apiTokens.list().map(tokenView) }));

  app.post('/v1/tokens/:tokenId/revoke', admin, async (req) => {
    const { tokenId } = parseParams(TokenParams, req.params);
    const row = apiTokens.revoke(tokenId);
    auditRequest(req, 'tokens.revoke', tokenId, { name: row.name, role: row.role });
    return tokenView(row);
  });

  app.post('/v1/enrollment-tokens', admin, async (req, reply) => {
    const body = parseBody(EnrollmentTokenRequest, req.body ?? {});
    const made = credentials.createEnrollmentToken({ ...body, createdBy: actorName(req) });
    auditRequest(req, 'enrollment.token_create', made.tokenId, { uses: made.uses, expiresAt: made.expiresAt, idPrefix: made.idPrefix });
    reply.status(201);
    return made;
  });

  app.post('/v1/enrollment-tokens/:tokenId/revoke', admin, async (req) => {
    const { tokenId } = parseParams(TokenParams, req.params);
    credentials.revokeEnrollmentToken(tokenId);
    auditRequest(req, 'enrollment.token_revoke', tokenId);
    return { tokenId, revoked: true };
  });

  // Public: the enrollment token in the body is the credential. Batches let a simulator enroll a fleet.
  app.post('/v1/enroll', { config: { access: 'public' } }, async (req, reply) => {
    const body = parseBody(EnrollRequest, req.body);
    const asked = body.devices ?? body.deviceIds!.map((deviceId) => ({ deviceId }));
    const { tokenId, devices } = credentials.enroll(body.enrollmentToken, asked);
    const ids = asked.map((d) => d.deviceId);
    auditRequest(req, 'devices.enroll', ids.length === 1 ? ids[0] : `${ids.length} devices`,
      { enrollmentTokenId: tokenId, deviceIds: ids.slice(0, 100), count: ids.length, credential: body.devices ? 'ed25519' : 'secret' });
    reply.status(201);
    return { devices };
  });

  // The operator-approved path: an admin registers a device's public key (or, with no body, issues a
  // legacy bearer secret), replacing (revoking) any previous credential.
  app.post('/v1/devices/:deviceId/credentials', admin, async (req, reply) => {
    const { deviceId } = parseParams(DeviceParams, req.params);
    const empty = req.body === undefined || req.body === null || (typeof req.body === 'object' && Object.keys(req.body).length === 0);
    const body = empty ? null : parseBody(CredentialRequest, req.body);
    const via = `admin:${actorName(req)}`;
    const secret = body ? (credentials.registerKey(deviceId, body.publicKey, via), null) : credentials.issue(deviceId, via);
    const disconnected = broker.disconnect(deviceId); // an old credential's session ends now
    auditRequest(req, 'devices.credential_issue', deviceId, { disconnected, credential: body ? 'ed25519' : 'secret' });
    reply.status(201);
    return body ? { deviceId, publicKey: body.publicKey } : { deviceId, secret };
  });

  app.post('/v1/devices/:deviceId/revoke', admin, async (req) => {
    const { deviceId } = parseParams(DeviceParams, req.params);
    const revoked = credentials.revoke(deviceId);
    const disconnected = broker.disconnect(deviceId);
    auditRequest(req, 'devices.revoke', deviceId, { revoked, disconnected });
    return { deviceId, revoked, disconnected };
  });

  app.get('/v1/devices/:deviceId/credential', admin, async (req) => {
    const { deviceId } = parseParams(DeviceParams, req.params);
    return { deviceId, ...credentials.status(deviceId) };
  });
}
