// fleet-agent: run the device agent. Configuration from --config FILE and FLEET_AGENT_* variables.
//   fleet-agent --config /etc/fleet-agent/agent.json [--http-port 8089]   (docs/agent.md)
//   fleet-agent enroll --config /etc/fleet-agent/agent.json --token fleet_et_... [--server URL]
//       [--device-id ID --mqtt-url URL --root-public-key KEY [--data-dir DIR] [--ca-file FILE]]
//     makes the device's key pair (<dataDir>/device-key.pem, 0600) and registers its public key; with no
//     config file yet, writes it from those options once the server accepted the key (enroll-command.ts)
import { parseArgs } from 'node:util';
import { FleetAgent } from './agent.ts';
import { loadAgentConfig, type AgentConfig } from './config.ts';
import { ENROLL_OPTIONS, enrollCommand } from './enroll-command.ts';
import { startLocalHttp } from './local-http.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { config: { type: 'string' }, 'http-port': { type: 'string' }, ...ENROLL_OPTIONS },
});
if (positionals[0] === 'enroll') process.exit(await enrollCommand(values, process.env));
if (positionals.length) {
  console.error(`fleet-agent: unknown command ${positionals[0]} (commands: enroll; without one the agent runs)`);
  process.exit(2);
}
let config: AgentConfig;
try {
  // a bad config is one line naming the field, not a stack trace
  config = loadAgentConfig({ file: values.config ?? process.env.FLEET_AGENT_CONFIG, env: process.env });
} catch (err) {
  console.error(`fleet-agent: cannot start: ${(err as Error).message}`);
  process.exit(1);
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
