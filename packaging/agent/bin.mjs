#!/usr/bin/env node
// fleet-agent command of the packaged agent (built by scripts/package-agent.ts; docs/agent.md).
// `fleet-agent --config FILE [--http-port N]` runs the agent; the agent itself is ../lib/agent.mjs.
const VERSION = '__VERSION__';
const cmd = process.argv[2];
if (cmd === '--version' || cmd === 'version') {
  console.log(VERSION);
} else if (cmd === '--help' || cmd === '-h' || cmd === 'help') {
  console.log(`fleet-agent ${VERSION}: the edge model fleet agent

usage:
  fleet-agent --config /etc/fleet-agent/agent.json [--http-port 8089]
  fleet-agent --version

Configuration: a JSON file (--config or FLEET_AGENT_CONFIG) and FLEET_AGENT_* variables.
See /usr/share/doc/fleet-agent/README.md or docs/agent.md of the fleet repository.`);
} else if (cmd === 'enroll') {
  // Placeholder: device enrollment is being reworked (Ed25519 device keys); until then a device is
  // enrolled as docs/agent.md "Enrolling a device" describes and its config written by hand.
  console.error('fleet-agent enroll: not available in this version; write /etc/fleet-agent/agent.json as docs/agent.md describes');
  process.exitCode = 2;
} else {
  await import('../lib/agent.mjs');
}
