#!/usr/bin/env node
// fleet-agent command of the packaged agent (built by scripts/package-agent.ts; docs/agent.md).
// `fleet-agent --config FILE [--http-port N]` runs the agent and `fleet-agent enroll ...` enrolls it; both
// are ../lib/agent.mjs (device-agent/main.ts).
const VERSION = '__VERSION__';
const cmd = process.argv[2];
if (cmd === '--version' || cmd === 'version') {
  console.log(VERSION);
} else if (cmd === '--help' || cmd === '-h' || cmd === 'help') {
  console.log(`fleet-agent ${VERSION}: the edge model fleet agent

usage:
  fleet-agent --config /etc/fleet-agent/agent.json [--http-port 8089]
  fleet-agent enroll --config /etc/fleet-agent/agent.json --token fleet_et_... [--server URL]
      (a config that exists: enroll the device it names)
  fleet-agent enroll --config /etc/fleet-agent/agent.json --token fleet_et_... --server URL \
      --device-id ID --mqtt-url URL --root-public-key KEY [--data-dir DIR] [--ca-file FILE]
      (no config yet: enroll, then write it)
  fleet-agent --version

Configuration: a JSON file (--config or FLEET_AGENT_CONFIG) and FLEET_AGENT_* variables.
See /usr/share/doc/fleet-agent/README.md or docs/agent.md of the fleet repository.`);
} else {
  await import('../lib/agent.mjs');
}
