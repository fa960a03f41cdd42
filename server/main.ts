// fleet-server: config from FLEET_* env (and --config FILE), listen, close cleanly on SIGINT/SIGTERM.
import { buildServer } from './app.ts';
import { loadServerConfig } from './config.ts';
import { writeAudit } from './audit/audit-log.ts';

const fileArg = process.argv.indexOf('--config');
const config = loadServerConfig({ env: process.env, file: fileArg > 0 ? process.argv[fileArg + 1] : undefined });
const app = await buildServer(config);
if (app.fleet.apiTokens.count() === 0) {
  // First start with no FLEET_BOOTSTRAP_TOKEN: make the operator's admin token and show it once (only its hash is kept).
  const { token, row } = app.fleet.apiTokens.create({ name: 'initial-admin', role: 'admin', createdBy: 'server' });
  writeAudit(app.fleet.db, { actor: 'server', action: 'tokens.create', target: row.token_id, detail: { name: row.name, role: row.role }, source: 'first-start' });
  console.log(`initial admin token (shown once; make others with POST /v1/tokens, then revoke this one): ${token}`);
}
await app.listen({ host: config.httpHost, port: config.httpPort });
console.log(`fleet server: http://${config.httpHost}:${(app.server.address() as { port: number }).port} mqtt://${config.mqttHost}:${app.fleet.broker.port} data=${config.dataDir}`);
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => { void app.close().then(() => process.exit(0)); });
