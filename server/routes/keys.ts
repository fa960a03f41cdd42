// Key API: public halves only, ever. Rotation, revocation, and import of a key set signed by an
// offline root. Every change is followed by re-issuing outstanding desired states (key-changes.ts).
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { b64 } from '../../shared/crypto.ts';
import { KeyId } from '../../shared/ids.ts';
import { Envelope } from '../../shared/messages.ts';
import { auditKeyChange, propagateKeyChange } from '../keys/key-changes.ts';
import { actorName } from '../audit/audit-log.ts';
import { parseBody, parseParams } from './params.ts';

const KeyParams = z.object({ keyId: KeyId }).strict();

export async function keyRoutes(app: FastifyInstance): Promise<void> {
  const fleet = app.fleet;
  const { keys } = fleet;
  const admin = { config: { access: 'admin' as const } };

  // What an operator pins into a device's agent config at enrollment, and what waits for the root.
  app.get('/v1/keys', async () => ({
    mode: keys.mode,
    root: { keyId: keys.rootKeyId, publicKey: b64.encode(keys.rootPublicKey) },
    keyset: keys.hasKeyset ? keys.keyset : null,
    keysetEnvelope: keys.hasKeyset ? keys.keysetEnvelope : null,
    pending: keys.pendingKeyset,
  }));

  app.post('/v1/keys/rotate', admin, async (req, reply) => {
    const change = keys.rotate();
    auditKeyChange(fleet, 'keys.rotate', change.keyId, change, req.ip, actorName(req));
    if (!change.applied) {
      reply.status(202);
      return { ...change, message: 'new signing key made; sign the pending key set with the offline root and import it' };
    }
    reply.status(201);
    return { ...change, ...(await propagateKeyChange(fleet, change.revoked)) };
  });

  app.post('/v1/keys/:keyId/revoke', admin, async (req, reply) => {
    const { keyId } = parseParams(KeyParams, req.params);
    const change = keys.revoke(keyId);
    auditKeyChange(fleet, 'keys.revoke', keyId, change, req.ip, actorName(req));
    if (!change.applied) {
      reply.status(202);
      return { keyId, ...change, message: 'this server stopped using the key; devices stop trusting it once the pending key set is signed by the offline root and imported' };
    }
    return { keyId, ...change, ...(await propagateKeyChange(fleet, change.revoked)) };
  });

  app.post('/v1/keys/keyset', admin, async (req) => {
    const envelope = parseBody(Envelope, req.body);
    const imported = keys.importKeySet(envelope);
    auditKeyChange(fleet, 'keys.import', String(imported.keysetVersion), imported, req.ip, actorName(req));
    return { applied: true, ...imported, ...(await propagateKeyChange(fleet, imported.revoked)) };
  });
}
