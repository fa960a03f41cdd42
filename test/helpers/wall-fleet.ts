// Parent side of wall-fleet-child.ts: a "real" fleet of enrolled devices in child processes, each
// device reporting the wall time of its real inferences (no modelled device time).
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { enrollKeys, type TestServer } from './harness.ts';

const CHILD = fileURLToPath(new URL('./wall-fleet-child.ts', import.meta.url));

export interface WallFleetSpec { count: number; processes: number; idPrefix: string; hardware: (i: number) => string; tags: (i: number) => string[]; telemetryWindowMs: number }

export class WallFleet {
  private children: ChildProcess[] = [];
  private nextId = 1;
  readonly ids: string[];

  constructor(private readonly server: TestServer, private readonly spec: WallFleetSpec) {
    this.ids = Array.from({ length: spec.count }, (_, i) => `${spec.idPrefix}-${String(i).padStart(5, '0')}`);
  }

  async start(): Promise<void> {
    const s = this.spec;
    const baseDir = join(this.server.dir, 'devices');
    await enrollKeys(this.server, this.ids.map((deviceId) => ({ deviceId, dataDir: join(baseDir, deviceId) })));
    const per = Math.ceil(s.count / s.processes);
    await Promise.all(Array.from({ length: s.processes }, (_, p) => {
      const first = p * per, count = Math.min(per, s.count - first);
      const child = fork(CHILD, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      this.children.push(child);
      return new Promise<void>((resolve, reject) => {
        child.on('message', (m: { type: string; message?: string }) => {
          if (m.type === 'ready') resolve();
          if (m.type === 'error') reject(new Error(`wall fleet ${p}: ${m.message}`));
        });
        child.once('exit', (code) => reject(new Error(`wall fleet ${p} exited with ${code}`)));
        child.send({
          type: 'start', baseDir, mqttUrl: this.server.mqttUrl, serverUrl: this.server.baseUrl, rootPublicKey: this.server.rootPublicKey,
          idPrefix: s.idPrefix, first, count, telemetryWindowMs: s.telemetryWindowMs,
          hardware: Array.from({ length: count }, (_, i) => s.hardware(first + i)), tags: Array.from({ length: count }, (_, i) => s.tags(first + i)),
        });
      });
    }));
  }

  startWorkload(ratePerSecond: number): void {
    for (const c of this.children) c.send({ type: 'workload', ratePerSecond });
  }

  /** The manifest each device runs now (null: none). */
  async active(): Promise<(string | null)[]> {
    const parts = await Promise.all(this.children.map((c) => new Promise<(string | null)[]>((resolve) => {
      const id = this.nextId++;
      const on = (m: { type: string; id?: number; active?: (string | null)[] }) => {
        if (m.type === 'summary' && m.id === id) { c.off('message', on); resolve(m.active!); }
      };
      c.on('message', on);
      c.send({ type: 'summary', id });
    })));
    return parts.flat();
  }

  async waitActive(manifestSha256: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const a = await this.active();
      const missing = a.filter((x) => x !== manifestSha256).length;
      if (missing === 0) return;
      if (Date.now() > deadline) throw new Error(`${missing} of ${a.length} devices not on ${manifestSha256} after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.children.map((c) => new Promise<void>((resolve) => {
      if (c.exitCode !== null) return resolve();
      c.once('exit', () => resolve());
      c.send({ type: 'stop' });
      setTimeout(() => c.kill('SIGKILL'), 15_000).unref();
    })));
    this.children = [];
  }
}
