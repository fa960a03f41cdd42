// The parent side of a fleet split over child processes (or run in this process when processes = 0).
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { CapacityReport } from './capacity.ts';
import { DeviceFleet, type DeviceFleetSpec, type DeviceSummary } from './device-fleet.ts';
import { addFaultCounts, noFaults, type FaultCounts, type SimulatorHealth } from './faults.ts';
import type { SimulatedFleet } from './fleet.ts';
import { workloadInputs, type ModelKind } from './workload.ts';

const WORKER = fileURLToPath(new URL('./fleet-worker.ts', import.meta.url));

/** One fleet process's view of itself: its capacity (null in the runner's own process: the runner measures that) */
export interface ProcessReport {
  capacity: CapacityReport | null; workload: SimulatedFleet['workloadStats']; health: SimulatorHealth;
  /** the process's CPU seconds from the campaign's start to the first summary after it (null: not measured, or the runner's own process) */
  campaignCpuSeconds?: number | null;
}

interface Part { devices: DeviceSummary[]; faults: FaultCounts; rss: number; report: ProcessReport }
interface Worker { child: ChildProcess; pending: Map<number, (m: Part) => void> }

export class FleetProcesses {
  private workers: Worker[] = [];
  private local: DeviceFleet | null = null;
  private nextId = 1;
  startMs = 0;

  constructor(private readonly spec: Omit<DeviceFleetSpec, 'first' | 'count'>, private readonly processes: number) {}

  async start(): Promise<void> {
    const t0 = Date.now();
    if (this.processes === 0) {
      this.local = await DeviceFleet.withProxies({ ...this.spec, first: 0, count: this.spec.total });
      await this.local.start();
    } else {
      const per = Math.ceil(this.spec.total / this.processes);
      const starts: Promise<void>[] = [];
      for (let p = 0; p < this.processes; p++) {
        const first = p * per;
        const count = Math.min(per, this.spec.total - first);
        if (count <= 0) break;
        const child = fork(WORKER, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
        const w: Worker = { child, pending: new Map() };
        this.workers.push(w);
        starts.push(new Promise((resolve, reject) => {
          child.on('message', (m: { type: string; id?: number; message?: string; devices?: DeviceSummary[]; faults?: FaultCounts; rss?: number; report?: ProcessReport }) => {
            if (m.type === 'ready') resolve();
            else if (m.type === 'error') reject(new Error(`fleet worker ${p}: ${m.message}`));
            else if (m.type === 'summary') w.pending.get(m.id!)?.({ devices: m.devices!, faults: m.faults ?? noFaults(), rss: m.rss!, report: m.report! });
          });
          child.once('exit', (code) => reject(new Error(`fleet worker ${p} exited with ${code}`)));
        }));
        child.send({ type: 'start', spec: { ...this.spec, first, count } });
      }
      await Promise.all(starts);
    }
    this.startMs = Date.now() - t0;
  }

  private broadcast(m: object): void {
    for (const w of this.workers) w.child.send(m);
  }

  applyBaselineFaults(): void {
    if (this.local) this.local.applyBaselineFaults(); else this.broadcast({ type: 'baseline' });
  }

  setCandidate(artifactSha256: string, at = Date.now()): void {
    if (this.local) this.local.setCandidate(artifactSha256, at); else this.broadcast({ type: 'candidate', artifactSha256, at });
  }

  async startWorkload(ratePerSecond: number, model: ModelKind, maxLagMs: number): Promise<void> {
    if (ratePerSecond <= 0) return;
    if (this.local) this.local.fleet.startWorkload({ ratePerSecond, inputs: await workloadInputs(model) });
    else this.broadcast({ type: 'workload', ratePerSecond, model, maxLagMs });
  }

  async summary(): Promise<{ devices: DeviceSummary[]; faults: FaultCounts; rss: number[]; processes: ProcessReport[] }> {
    if (this.local) {
      const f = this.local.fleet;
      return { devices: this.local.summary(), faults: this.local.faults(), rss: [], processes: [{ capacity: null, workload: { ...f.workloadStats }, health: { ...f.health } }] };
    }
    const parts = await Promise.all(this.workers.map((w) => new Promise<Part>((resolve) => {
      const id = this.nextId++;
      w.pending.set(id, (m) => { w.pending.delete(id); resolve(m); });
      w.child.send({ type: 'summary', id });
    })));
    return {
      devices: parts.flatMap((p) => p.devices), faults: parts.reduce((a, p) => addFaultCounts(a, p.faults), noFaults()),
      rss: parts.map((p) => p.rss), processes: parts.map((p) => p.report),
    };
  }

  /**
   * Poll until every device satisfies pred, or throw with the stragglers after timeoutMs; with `failed`,
   * throw as soon as a device not there yet satisfies it (it will not get there).
   */
  async waitAll(pred: (d: DeviceSummary) => boolean, timeoutMs: number, pollMs = 200, failed?: (d: DeviceSummary) => boolean): Promise<DeviceSummary[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { devices } = await this.summary();
      const pending = devices.filter((d) => !pred(d));
      if (pending.length === 0) return devices;
      const lost = failed ? pending.filter(failed) : [];
      if (lost.length > 0) {
        const reasons = [...new Set(lost.map((d) => d.reason))].join(', ');
        throw new Error(`${lost.length} of ${devices.length} devices failed (${reasons}); first: ${JSON.stringify(lost[0])}`);
      }
      if (Date.now() > deadline) throw new Error(`${pending.length} of ${devices.length} devices not there after ${timeoutMs} ms; first: ${JSON.stringify(pending[0])}`);
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  async stop(): Promise<void> {
    if (this.local) await this.local.stop();
    await Promise.all(this.workers.map((w) => new Promise<void>((resolve) => {
      if (w.child.exitCode !== null) return resolve();
      w.child.once('exit', () => resolve());
      w.child.send({ type: 'stop' });
      setTimeout(() => w.child.kill('SIGKILL'), 15_000).unref();
    })));
    this.workers = [];
  }
}
