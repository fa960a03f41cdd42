// fleetctl's commands, built without touching process state: the entry point passes the defaults
// (from the environment) and the output sinks, so the program can also be driven in-process.
import { Command } from 'commander';
import { keysCommand } from './commands/keys.ts';
import { pushCommand } from './commands/push.ts';
import { fleetCommands } from './commands/fleet.ts';
import { campaignCommands } from './commands/campaigns.ts';
import { rehearseCommand } from './commands/rehearse.ts';
import { offlineCommands } from './commands/bundle-offline.ts';
import { devCaCommands } from './commands/dev-ca.ts';
import { telemetryCommand } from './commands/telemetry.ts';
import { accessCommands } from './commands/access.ts';
import { deviceCommands } from './commands/devices.ts';
import { releaseCommands } from './commands/releases.ts';
import { tagPolicyCommands } from './commands/tag-policies.ts';
import { contextOf, type Ctx, type Defaults } from './context.ts';
import type { Io } from './output.ts';

export function buildProgram(defaults: Defaults, sink: Omit<Io, 'json'>): Command {
  const program = new Command('fleetctl')
    .description('operate an edge ML fleet: keys, model bundles, devices')
    .option('--server <url>', 'fleet server URL (default: FLEET_SERVER_URL or http://127.0.0.1:8080)')
    .option('--token <token>', 'API token, sent as "authorization: Bearer" (default: FLEET_TOKEN)')
    .option('--json', 'print one JSON document instead of text')
    .showHelpAfterError()
    .configureOutput({ writeOut: (s) => sink.out(s.replace(/\n$/, '')), writeErr: (s) => sink.err(s.replace(/\n$/, '')) });
  const run = async (cmd: Command, fn: (ctx: Ctx, cmd: Command) => Promise<void>) => fn(contextOf(cmd, defaults, sink), cmd);
  keysCommand(program, run);
  pushCommand(program, run);
  fleetCommands(program, run);
  deviceCommands(program, run);
  campaignCommands(program, run);
  accessCommands(program, run);
  // under `campaigns`, kept in its own file (it runs a simulated fleet)
  rehearseCommand(program.commands.find((c) => c.name() === 'campaigns')!, run);
  offlineCommands(program, run);
  devCaCommands(program, run);
  telemetryCommand(program, run);
  releaseCommands(program, run);
  tagPolicyCommands(program, run);
  return program;
}
