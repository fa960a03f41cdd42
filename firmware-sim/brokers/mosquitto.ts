// A real mosquitto (Debian's /usr/sbin/mosquitto, .ci/run installs it) for tests and the bench: its own
// temp folder, a free loopback port, the dynamic security plugin initialised with an admin user (the
// fleet server's user), persistence on (so a restart keeps sessions and retained desired states), and
// a bounded stop. Nothing here turns a check off: devices get in only through the dynsec clients the
// server creates.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

export const MOSQUITTO = '/usr/sbin/mosquitto';
const PLUGIN_PATHS = ['/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so', '/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so', '/usr/lib/mosquitto_dynamic_security.so'];

export function mosquittoAvailable(): boolean {
  return existsSync(MOSQUITTO) && PLUGIN_PATHS.some(existsSync);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** resolves once something accepts TCP on the port (bounded) */
export async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Stop a child: SIGTERM, then SIGKILL after graceMs; resolves when it exited. */
export function stopChild(child: ChildProcess, graceMs = 5000, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => { clearTimeout(t); resolve(); });
    child.kill(signal);
  });
}

export interface Mosquitto {
  url: string;
  port: number;
  dir: string;
  adminUser: string;
  adminPassword: string;
  /** the running broker's process id */
  pid(): number | undefined;
  /** the broker's log so far (stderr/stdout), for failure messages */
  log(): string;
  /** stop it (SIGTERM, or the signal given) and start it again on the same port, folder and dynsec state; whileDown runs in between */
  restart(opts?: { signal?: NodeJS.Signals; whileDown?: () => void | Promise<void> }): Promise<void>;
  stop(): Promise<void>;
}

export interface MosquittoOptions {
  /** mosquitto's max_packet_size: bigger packets from clients are refused and the client disconnected */
  maxPacketBytes?: number;
}

export async function startMosquitto(opts: MosquittoOptions = {}): Promise<Mosquitto> {
  const plugin = PLUGIN_PATHS.find(existsSync);
  if (!existsSync(MOSQUITTO) || !plugin) throw new Error('mosquitto with its dynamic security plugin is not installed (apt-get install mosquitto; .ci/run does it)');
  const dir = mkdtempSync(join(tmpdir(), 'fleet-mosquitto-'));
  const port = await freePort();
  const adminUser = 'fleet-admin';
  const adminPassword = `pw-${Math.random().toString(36).slice(2)}${Date.now().toString(36)}`;
  execFileSync('/usr/bin/mosquitto_ctrl', ['dynsec', 'init', join(dir, 'dynsec.json'), adminUser, adminPassword], { stdio: 'ignore', timeout: 10_000 });
  const conf = [
    `listener ${port} 127.0.0.1`,
    // run as root, mosquitto switches to the user 'mosquitto', which cannot read our 0700 temp folder
    `user ${userInfo().username}`,
    'allow_anonymous false',
    `plugin ${plugin}`,
    `plugin_opt_config_file ${join(dir, 'dynsec.json')}`,
    'persistence true',
    `persistence_location ${dir}/`,
    'autosave_interval 1',
    'log_dest stdout',
    'log_type error',
    'log_type warning',
    'log_type notice',
    ...(opts.maxPacketBytes ? [`max_packet_size ${opts.maxPacketBytes}`] : []),
    // the server is one client holding every device's QoS 1 traffic: let it have many in flight
    'max_inflight_messages 1000',
    'max_queued_messages 100000',
    'max_keepalive 65535',
  ].join('\n');
  writeFileSync(join(dir, 'mosquitto.conf'), conf + '\n');
  let output = '';
  let child: ChildProcess;
  const launch = async () => {
    child = spawn(MOSQUITTO, ['-c', join(dir, 'mosquitto.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (b: Buffer) => { output = (output + b.toString()).slice(-20_000); });
    child.stderr!.on('data', (b: Buffer) => { output = (output + b.toString()).slice(-20_000); });
    try {
      await waitForPort(port);
    } catch (err) {
      child.kill('SIGKILL');
      throw new Error(`mosquitto did not start: ${(err as Error).message}\n${output}`);
    }
  };
  await launch();
  return {
    url: `mqtt://127.0.0.1:${port}`, port, dir, adminUser, adminPassword,
    log: () => output,
    pid: () => child.pid,
    async restart(o = {}) {
      await stopChild(child, 5000, o.signal);
      await o.whileDown?.();
      await launch();
    },
    async stop() {
      await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
