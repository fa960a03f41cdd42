// What one simulator process can carry, measured while it runs (issue 21): event-loop lag (perf_hooks
// monitorEventLoopDelay, p99 and max per one-second sample), the inference backlog (calls waiting for the
// process's one WASM runtime, runtime/onnx-session.ts) and CPU (process.cpuUsage over wall time, in cores).
// The runner reads every process's report and marks a run invalid when a process was over its capacity
// (run-scenario.ts judgeValidity): a simulator past its limits measures itself, not the model.
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { runtimeQueueStats } from '../runtime/onnx-session.ts';

export interface CapacityReport {
  role: 'server' | 'fleet' | 'server+fleet';
  /** one-second samples taken */
  samples: number;
  /** event-loop delay p99 per sample: the worst sample, the mean over samples, and how many samples were over the limit */
  lagP99MaxMs: number;
  lagP99MeanMs: number;
  lagMaxMs: number;
  samplesOverLag: number;
  /** calls waiting for the WASM runtime, largest seen at a sample */
  backlogMax: number;
  /** CPU time over wall time (1 = one core busy), mean and worst sample */
  cpuMean: number;
  cpuMax: number;
  /** calls into the runtime completed while monitored, per second of wall time */
  runtimeCalls: number;
  runtimeCallsPerSecond: number;
}

export class CapacityMonitor {
  private h: IntervalHistogram | null = null;
  private timer: NodeJS.Timeout | null = null;
  private lastCpu = process.cpuUsage();
  private lastAt = performance.now();
  private t0 = 0;
  private calls0 = 0;
  private readonly p99s: number[] = [];
  private lagMax = 0;
  private backlogMax = 0;
  private readonly cpus: number[] = [];

  constructor(private readonly role: CapacityReport['role'], private readonly opts: { sampleMs?: number; maxLagMs?: number } = {}) {}

  start(): void {
    if (this.h) return;
    this.h = monitorEventLoopDelay({ resolution: 10 });
    this.h.enable();
    this.t0 = this.lastAt = performance.now();
    this.lastCpu = process.cpuUsage();
    this.calls0 = runtimeQueueStats().completed;
    this.timer = setInterval(() => this.sample(), this.opts.sampleMs ?? 1000);
    this.timer.unref();
  }

  private sample(): void {
    const h = this.h!;
    if (h.count > 0) {
      this.p99s.push(h.percentile(99) / 1e6);
      this.lagMax = Math.max(this.lagMax, h.max / 1e6);
    }
    h.reset();
    const now = performance.now();
    const cpu = process.cpuUsage(this.lastCpu);
    this.cpus.push((cpu.user + cpu.system) / 1000 / Math.max(1, now - this.lastAt));
    this.lastCpu = process.cpuUsage();
    this.lastAt = now;
    this.backlogMax = Math.max(this.backlogMax, runtimeQueueStats().waiting);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.h?.disable();
  }

  report(): CapacityReport {
    const round = (x: number, d = 1) => Number(x.toFixed(d));
    const elapsedS = this.t0 ? (performance.now() - this.t0) / 1000 : 0;
    const calls = this.t0 ? runtimeQueueStats().completed - this.calls0 : 0;
    const maxLag = this.opts.maxLagMs ?? Infinity;
    return {
      role: this.role,
      samples: this.p99s.length,
      lagP99MaxMs: round(Math.max(0, ...this.p99s)),
      lagP99MeanMs: round(this.p99s.length ? this.p99s.reduce((a, b) => a + b, 0) / this.p99s.length : 0),
      lagMaxMs: round(this.lagMax),
      samplesOverLag: this.p99s.filter((x) => x > maxLag).length,
      backlogMax: this.backlogMax,
      cpuMean: round(this.cpus.length ? this.cpus.reduce((a, b) => a + b, 0) / this.cpus.length : 0, 2),
      cpuMax: round(Math.max(0, ...this.cpus), 2),
      runtimeCalls: calls,
      runtimeCallsPerSecond: round(elapsedS > 0 ? calls / elapsedS : 0),
    };
  }
}
