// fleet-server: config from FLEET_* env (and --config FILE), listen, close cleanly on SIGINT/SIGTERM.
// A start-up failure (bad config, unreadable certificate, port in use) is one line on stderr and exit 1.
import type { FastifyInstance } from 'fastify';
import { buildServer } from './app.ts';
import { loadServerConfig, type ServerConfig } from './config.ts';
import { writeAudit } from './audit/audit-log.ts';

let config: ServerConfig;
let app: FastifyInstance;
try {
  const fileArg = process.argv.indexOf('--config');
  config = loadServerConfig({ env: process.env, file: fileArg > 0 ? process.argv[fileArg + 1] : undefined });
  app = await buildServer(config);
} catch (err) {
  console.error(`fleet-server: cannot start: ${(err as Error).message}`);
  process.exit(1);
}
if (app.fleet.apiTokens.count() === 0) {
  // First start with no FLEET_BOOTSTRAP_TOKEN: make the operator's admin token and show it once (only its hash is kept).
  const { token, row } = app.fleet.apiTokens.create({ name: 'initial-admin', role: 'admin', createdBy: 'server' });
  writeAudit(app.fleet.db, { actor: 'server', action: 'tokens.create', target: row.token_id, detail: { name: row.name, role: row.role }, source: 'first-start' });
  console.log(`initial admin token (shown once; make others with POST /v1/tokens, then revoke this one): ${token}`);
}
try {
  await app.listen({ host: config.httpHost, port: config.httpPort });
} catch (err) {
  console.error(`fleet-server: cannot listen on ${config.httpHost}:${config.httpPort}: ${(err as Error).message}`);
  await app.close();
  process.exit(1);
}
const secure = !!config.tlsCertFile;
const mqttWhere = config.brokerMode === 'external' ? `external broker ${config.brokerUrls.join(',')}` : `${secure ? 'mqtts' : 'mqtt'}://${config.mqttHost}:${app.fleet.broker.port}`;
console.log(`fleet server: ${secure ? 'https' : 'http'}://${config.httpHost}:${(app.server.address() as { port: number }).port} ${mqttWhere} data=${config.dataDir}${secure ? ' (TLS only)' : ''}`);
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => { void app.close().then(() => process.exit(0)); });
