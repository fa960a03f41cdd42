// fleetctl as an operator runs it: a child process, its exit code and its output (never throws).
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const BIN = join(import.meta.dirname, '..', '..', 'bin', 'fleetctl.mjs');

export interface FleetctlResult { code: number; stdout: string; stderr: string }

/** `fleetctl --server <server> ...args` with FLEET_TOKEN = token (no FLEET_SERVER_URL from the environment). */
export async function runFleetctl(server: string, token: string, ...args: string[]): Promise<FleetctlResult> {
  try {
    const r = await run(process.execPath, [BIN, '--server', server, ...args], { env: { ...process.env, FLEET_SERVER_URL: '', FLEET_TOKEN: token }, maxBuffer: 256 * 1024 * 1024 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout, stderr: e.stderr };
  }
}
