// Inference figures gathered over one window: counts, errors, latency percentiles.
import type { ActiveModel, Telemetry } from '../shared/messages.ts';

export class TelemetryWindow {
  private latencies: number[] = [];
  private errors = 0;
  private start: number;

  constructor(private readonly now: () => number) {
    this.start = now();
  }

  record(ms: number, ok: boolean): void {
    if (ok) this.latencies.push(ms); else this.errors++;
    if (this.latencies.length > 50_000) this.latencies = this.latencies.filter((_, i) => i % 2 === 0); // bounded memory
  }

  get count(): number { return this.latencies.length + this.errors; }

  /** Close the window and start the next one. */
  cut(deviceId: string, seq: number, active: ActiveModel | null): Telemetry {
    const end = this.now();
    const sorted = this.latencies.sort((a, b) => a - b);
    const q = (p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : 0);
    const t: Telemetry = {
      deviceId, seq,
      windowStart: new Date(this.start).toISOString(), windowEnd: new Date(end).toISOString(),
      active, count: this.count, errors: this.errors,
      latencyMs: { p50: q(0.5), p95: q(0.95), p99: q(0.99), max: sorted.length ? sorted[sorted.length - 1] : 0 },
      rssBytes: process.memoryUsage.rss(),
    };
    this.latencies = [];
    this.errors = 0;
    this.start = end;
    return t;
  }
}
