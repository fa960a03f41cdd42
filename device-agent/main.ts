// fleet-agent: run the device agent. Configuration from --config FILE and FLEET_AGENT_* variables.
//   fleet-agent --config /etc/fleet-agent/agent.json [--http-port 8089]   (docs/agent.md)
import { parseArgs } from 'node:util';
import { FleetAgent } from './agent.ts';
import { loadAgentConfig, type AgentConfig } from './config.ts';
import { startLocalHttp } from './local-http.ts';

const { values } = parseArgs({ options: { config: { type: 'string' }, 'http-port': { type: 'string' } } });
let config: AgentConfig;
let agent: FleetAgent;
try {
  // a bad config or an unreadable caFile is one line naming the field or file, not a stack trace
  config = loadAgentConfig({ file: values.config ?? process.env.FLEET_AGENT_CONFIG, env: process.env });
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
