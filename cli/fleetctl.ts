// fleetctl entry point: the only place that reads process.env and sets the exit code.
// Exit 0 on success, 1 on any refusal or error (the server's message is printed).
import { CommanderError } from 'commander';
import { CliError } from './api-client.ts';
import { buildProgram } from './program.ts';

const json = process.argv.includes('--json');
const sink = {
  out: (line: string) => process.stdout.write(line + '\n'), err: (line: string) => process.stderr.write(line + '\n'),
  tty: process.stdout.isTTY === true, write: (chunk: string) => process.stdout.write(chunk),
};
const program = buildProgram({ serverUrl: process.env.FLEET_SERVER_URL || 'http://127.0.0.1:8080', token: process.env.FLEET_TOKEN || undefined }, sink);
program.exitOverride();

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // help and version are not failures; commander already printed its message
    process.exitCode = err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0 ? 0 : 1;
  } else if (err instanceof CliError) {
    sink.err(`error: ${err.message}${err.code.startsWith('FLEET') ? ` [${err.code}]` : ''}`);
    const reported = (err.details as { reported?: boolean; gate?: unknown } | undefined);
    if (json && !reported?.reported && !reported?.gate) sink.out(JSON.stringify({ error: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) }, null, 2));
    process.exitCode = 1;
  } else {
    sink.err(`error: ${(err as Error).message}`);
    process.exitCode = 1;
  }
}
