// A real fleet server with config overrides (e.g. a tiny maxModelBytes), for API tests that use app.inject.
import type { FastifyInstance } from 'fastify';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { buildServer } from '../../server/app.ts';
import type { ServerConfigInput } from '../../server/config.ts';
import { newSecret } from '../../server/auth/secrets.ts';
import { tempDir, withBearer } from '../helpers/harness.ts';

export interface InjectServer { app: FastifyInstance; dir: string; dataDir: string; close(): Promise<void> }

export async function startInjectServer(overrides: ServerConfigInput = {}): Promise<InjectServer> {
  const dir = tempDir('fleet-api-test-');
  const dataDir = join(dir, 'server');
  const token = newSecret('apiToken');
  const app = await buildServer({ dataDir, httpPort: 0, mqttPort: 0, logLevel: 'silent', bootstrapAdminToken: token, ...overrides });
  await app.ready();
  withBearer(app, token);
  return {
    app, dir, dataDir,
    async close() {
      await app.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
