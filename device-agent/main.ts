// fleet-agent: run the device agent. Configuration from --config FILE and FLEET_AGENT_* variables.
//   fleet-agent --config /etc/fleet-agent/agent.json [--http-port 8089]   (docs/agent.md)
//   fleet-agent enroll --config /etc/fleet-agent/agent.json [--server URL] --token fleet_et_...
//     makes the device's key pair (<dataDir>/device-key.pem, 0600) and registers its public key
import { parseArgs } from 'node:util';
import { FleetAgent } from './agent.ts';
import { loadAgentConfig, type AgentConfig } from './config.ts';
import { enrollDevice } from './identity.ts';
import { startLocalHttp } from './local-http.ts';
import { pinnedFetch, readCaFile } from './pinned-fetch.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { config: { type: 'string' }, 'http-port': { type: 'string' }, server: { type: 'string' }, token: { type: 'string' } },
});
let config: AgentConfig;
try {
  // a bad config is one line naming the field, not a stack trace
  config = loadAgentConfig({ file: values.config ?? process.env.FLEET_AGENT_CONFIG, env: process.env });
} catch (err) {
  console.error(`fleet-agent: cannot start: ${(err as Error).message}`);
  process.exit(1);
}
if (positionals[0] === 'enroll') {
  const enrollmentToken = values.token ?? config.enrollmentToken;
  if (!enrollmentToken) {
    console.error('fleet-agent enroll: give the enrollment token with --token (or enrollmentToken in the config)');
    process.exit(2);
  }
  try {
    // with a pinned CA, enrollment trusts only it, as downloads do
    const fetchFn = config.caFile ? pinnedFetch(readCaFile(config.caFile)) : undefined;
    const { publicKey } = await enrollDevice({ serverUrl: values.server ?? config.serverUrl, deviceId: config.deviceId, dataDir: config.dataDir, enrollmentToken, fetch: fetchFn });
    console.log(JSON.stringify({ event: 'enrolled', deviceId: config.deviceId, publicKey }));
    process.exit(0);
  } catch (err) {
    console.error(`fleet-agent enroll: ${(err as Error).message}`);
    process.exit(1);
  }
} else if (positionals.length) {
  console.error(`fleet-agent: unknown command ${positionals[0]} (commands: enroll; without one the agent runs)`);
  process.exit(2);
}
let agent: FleetAgent;
try {
  // an unreadable caFile is one line naming the file
  agent = new FleetAgent(config, {
    log: (event, fields) => console.log(JSON.stringify({ time: new Date().toISOString(), event, ...fields })),
  });
} catch (err) {
  console.error(`fleet-agent: cannot start: ${(err as Error).message}`);
  process.exit(1);
}
await agent.start();
const httpPort = values['http-port'] !== undefined ? Number(values['http-port']) : config.httpPort;
const http = httpPort !== undefined ? await startLocalHttp(agent, httpPort) : null;
console.log(JSON.stringify({ event: 'agent_started', deviceId: config.deviceId, active: agent.active, httpPort: http?.port ?? null }));
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    // agent.stop() is bounded; this is the last resort, and what is unsent is on disk already
    setTimeout(() => process.exit(1), 10_000).unref();
    void (async () => {
      await http?.close();
      await agent.stop();
      process.exit(0);
    })();
  });
}
