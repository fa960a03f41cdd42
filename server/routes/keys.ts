// Key API: public halves only, ever. Rotation, revocation, and import of a key set signed by an
// offline root. Every change is followed by re-issuing outstanding desired states (key-changes.ts).
import type { FastifyInstance } from 'fastify';
import { b64 } from '../../shared/crypto.ts';
import { keysContract as c } from '../../shared/api/keys.ts';
import { auditKeyChange, propagateKeyChange } from '../keys/key-changes.ts';
import { actorName } from '../audit/audit-log.ts';
import { contractRoute } from './contract-route.ts';

export async function keyRoutes(app: FastifyInstance): Promise<void> {
  const fleet = app.fleet;
  const { keys } = fleet;

  // What an operator pins into a device's agent config at enrollment, and what waits for the root.
  contractRoute(app, c.getKeys, async () => ({
    mode: keys.mode,
    root: { keyId: keys.rootKeyId, publicKey: b64.encode(keys.rootPublicKey) },
    keyset: keys.hasKeyset ? keys.keyset : null,
    keysetEnvelope: keys.hasKeyset ? keys.keysetEnvelope : null,
    pending: keys.pendingKeyset,
  }));

  contractRoute(app, c.rotate, async (_in, req, reply) => {
    const change = keys.rotate();
    auditKeyChange(fleet, 'keys.rotate', change.keyId, change, req.ip, actorName(req));
    if (!change.applied) {
      reply.status(202);
      return { ...change, message: 'new signing key made; sign the pending key set with the offline root and import it' };
    }
    reply.status(201);
    return { ...change, ...(await propagateKeyChange(fleet, change.revoked)) };
  });

  contractRoute(app, c.revokeKey, async ({ params: { keyId } }, req, reply) => {
    const change = keys.revoke(keyId);
    auditKeyChange(fleet, 'keys.revoke', keyId, change, req.ip, actorName(req));
    if (!change.applied) {
      reply.status(202);
      return { keyId, ...change, message: 'this server stopped using the key; devices stop trusting it once the pending key set is signed by the offline root and imported' };
    }
    return { keyId, ...change, ...(await propagateKeyChange(fleet, change.revoked)) };
  });

  contractRoute(app, c.importKeyset, async ({ body: envelope }, req) => {
    const imported = keys.importKeySet(envelope);
    auditKeyChange(fleet, 'keys.import', String(imported.keysetVersion), imported, req.ip, actorName(req));
    return { applied: true, ...imported, ...(await propagateKeyChange(fleet, imported.revoked)) };
  });
}
