import type { FastifyInstance } from 'fastify';
import { b64 } from '../../shared/crypto.ts';

export async function keyRoutes(app: FastifyInstance): Promise<void> {
  const { keys } = app.fleet;
  // Public halves only: what an operator pins into a device's agent config at enrollment.
  app.get('/v1/keys', async () => ({
    root: { keyId: keys.rootKeyId, publicKey: b64.encode(keys.rootPublicKey) },
    keyset: keys.keyset,
    keysetEnvelope: keys.keysetEnvelope,
  }));
}
