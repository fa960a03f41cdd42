// fleet-server: config from FLEET_* env (and --config FILE), listen, close cleanly on SIGINT/SIGTERM.
import { buildServer } from './app.ts';
import { loadServerConfig } from './config.ts';

const fileArg = process.argv.indexOf('--config');
const config = loadServerConfig({ env: process.env, file: fileArg > 0 ? process.argv[fileArg + 1] : undefined });
const app = await buildServer(config);
await app.listen({ host: config.httpHost, port: config.httpPort });
console.log(`fleet server: http://${config.httpHost}:${(app.server.address() as { port: number }).port} mqtt://${config.mqttHost}:${app.fleet.broker.port} data=${config.dataDir}`);
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => { void app.close().then(() => process.exit(0)); });
