// Who may get in: operator API tokens (admin), enrollment tokens (admin), device enrollment (public,
// carries its own token), and an admin's direct issue and revocation of device credentials.
// Schemas: shared/api/access.ts.
import type { FastifyInstance } from 'fastify';
import { accessContract as c, EnrollmentTokenRequest } from '../../shared/api/access.ts';
import { actorName, auditRequest } from '../audit/audit-log.ts';
import { tokenView } from '../auth/api-tokens.ts';
import { contractRoute } from './contract-route.ts';
import { AppError } from '../errors.ts';
import type { DeviceAccessSync } from '../mqtt/broker.ts';

/** An external broker that checks passwords only cannot verify a key pair's signed tokens: say so before anything is stored. */
function refuseKeyPairs(access: DeviceAccessSync | undefined, keyPairs: number): void {
  if (access && !access.acceptsKeyPairs && keyPairs > 0) {
    throw new AppError('FLEET_ERR_BROKER_NEEDS_SECRET', 'this fleet\'s external broker checks device passwords only: enroll with deviceIds (a bearer secret per device), not public keys (docs/brokers.md)', 409);
  }
}

/** A device id that names the server's own broker user would let an enrollment delete the server's account: refused before anything is stored. */
function refuseReserved(access: DeviceAccessSync | undefined, deviceIds: string[]): void {
  for (const d of deviceIds) {
    const why = access?.reservedDeviceId?.(d);
    if (why) throw new AppError('FLEET_ERR_DEVICE_ID_RESERVED', `device id ${d} cannot be used on this fleet's broker: ${why}`, 409);
  }
}

/** Run a broker credential change; a broker that does not answer is a 503 naming it (the caller undoes what it stored). */
async function onBroker<T>(what: string, step: () => Promise<T>, undo?: () => void): Promise<T> {
  try {
    return await step();
  } catch (err) {
    undo?.();
    throw new AppError('FLEET_ERR_BROKER_UNAVAILABLE', `the external broker did not take the change (${what}): ${(err as Error).message}`, 503);
  }
}

export async function accessRoutes(app: FastifyInstance): Promise<void> {
  const { apiTokens, credentials, broker } = app.fleet;

  contractRoute(app, c.whoami, async (_in, req) => {
    const p = req.principal!;
    return p.kind === 'token' ? { kind: p.kind, name: p.name, role: p.role, tokenId: p.tokenId } : { kind: p.kind, deviceId: p.deviceId };
  });

  contractRoute(app, c.createToken, async ({ body }, req, reply) => {
    const { token, row } = apiTokens.create({ ...body, createdBy: actorName(req) });
    auditRequest(req, 'tokens.create', row.token_id, { name: row.name, role: row.role, expiresAt: row.expires_at });
    reply.status(201);
    return { ...tokenView(row), token };
  });

  contractRoute(app, c.listTokens, async () => ({ tokens: apiTokens.list().map(tokenView) }));

  contractRoute(app, c.revokeToken, async ({ params: { tokenId } }, req) => {
    const row = apiTokens.revoke(tokenId);
    auditRequest(req, 'tokens.revoke', tokenId, { name: row.name, role: row.role });
    return tokenView(row);
  });

  contractRoute(app, c.createEnrollmentToken, async ({ body }, req, reply) => {
    const made = credentials.createEnrollmentToken({ ...(body ?? EnrollmentTokenRequest.parse({})), createdBy: actorName(req) });
    auditRequest(req, 'enrollment.token_create', made.tokenId, { uses: made.uses, expiresAt: made.expiresAt, idPrefix: made.idPrefix });
    reply.status(201);
    return made;
  });

  contractRoute(app, c.revokeEnrollmentToken, async ({ params: { tokenId } }, req) => {
    credentials.revokeEnrollmentToken(tokenId);
    auditRequest(req, 'enrollment.token_revoke', tokenId);
    return { tokenId, revoked: true };
  });

  // Public: the enrollment token in the body is the credential. Batches let a simulator enroll a fleet.
  contractRoute(app, c.enroll, async ({ body }, req, reply) => {
    const asked = body.devices ?? body.deviceIds!.map((deviceId) => ({ deviceId }));
    refuseKeyPairs(broker.deviceAccess, asked.filter((d) => 'publicKey' in d && d.publicKey).length);
    refuseReserved(broker.deviceAccess, asked.map((d) => d.deviceId));
    const { tokenId, devices } = credentials.enroll(body.enrollmentToken, asked);
    const access = broker.deviceAccess;
    if (access) {
      // the broker learns each new secret before the device does; one it refused leaves that device unenrolled
      const issued = devices.flatMap((d) => (d.secret ? [{ deviceId: d.deviceId, secret: d.secret }] : []));
      await onBroker('enrollment', async () => {
        if (access.secretsIssued) await access.secretsIssued(issued);
        else for (const d of issued) await access.secretIssued(d.deviceId, d.secret);
      },
        () => devices.forEach((d) => credentials.revoke(d.deviceId)));
    }
    const ids = asked.map((d) => d.deviceId);
    auditRequest(req, 'devices.enroll', ids.length === 1 ? ids[0] : `${ids.length} devices`,
      { enrollmentTokenId: tokenId, deviceIds: ids.slice(0, 100), count: ids.length, credential: body.devices ? 'ed25519' : 'secret' });
    reply.status(201);
    return { devices };
  });

  // The operator-approved path: an admin registers a device's public key (or, with no body, issues a
  // legacy bearer secret), replacing (revoking) any previous credential.
  contractRoute(app, c.issueCredential, async ({ params: { deviceId }, body }, req, reply) => {
    const via = `admin:${actorName(req)}`;
    refuseKeyPairs(broker.deviceAccess, body ? 1 : 0);
    refuseReserved(broker.deviceAccess, [deviceId]);
    const secret = body ? (credentials.registerKey(deviceId, body.publicKey, via), null) : credentials.issue(deviceId, via);
    const access = broker.deviceAccess;
    // an old credential's session ends now (an external broker drops it when the client is replaced)
    const disconnected = access && secret
      ? await onBroker(`credential of ${deviceId}`, () => access.secretIssued(deviceId, secret), () => credentials.revoke(deviceId))
      : broker.disconnect(deviceId);
    auditRequest(req, 'devices.credential_issue', deviceId, { disconnected, credential: body ? 'ed25519' : 'secret' });
    reply.status(201);
    return body ? { deviceId, publicKey: body.publicKey } : { deviceId, secret };
  });

  contractRoute(app, c.revokeDevice, async ({ params: { deviceId } }, req) => {
    refuseReserved(broker.deviceAccess, [deviceId]);
    const revoked = credentials.revoke(deviceId);
    const access = broker.deviceAccess;
    // revoked in the server's store first: whatever the broker says, no token or download works any more
    const disconnected = access ? await onBroker(`revocation of ${deviceId}`, () => access.revoked(deviceId)) : broker.disconnect(deviceId);
    auditRequest(req, 'devices.revoke', deviceId, { revoked, disconnected });
    return { deviceId, revoked, disconnected };
  });

  contractRoute(app, c.credentialStatus, async ({ params: { deviceId } }) => ({ deviceId, ...credentials.status(deviceId) }));
}
