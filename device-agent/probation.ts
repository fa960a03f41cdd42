// The probation window after a switch, as a small pure tracker: the agent feeds it every inference the
// new model answers and asks for a verdict. It ends after `inferences` calls or `seconds`, whichever
// comes first; errors fail it early, as soon as the error budget of the whole window is spent.

export interface ProbationLimits {
  /** 0 = no count limit */
  inferences: number;
  /** 0 = no time limit */
  seconds: number;
  maxErrorRate: number;
  maxLatencyMs: number;
}

export type ProbationVerdict =
  | { kind: 'continue' }
  | { kind: 'pass'; detail: string }
  | { kind: 'fail'; detail: string };

/** below this many timed calls a p95 says nothing; latency is then judged by the health check alone */
const MIN_CALLS_FOR_LATENCY = 5;
const MAX_KEPT_LATENCIES = 10_000;

export class Probation {
  private n = 0;
  private errors = 0;
  private readonly latencies: number[] = [];

  constructor(readonly limits: ProbationLimits, readonly startedAt: number) {}

  get calls(): number { return this.n; }

  static enabled(l: ProbationLimits): boolean {
    return l.inferences > 0 || l.seconds > 0;
  }

  record(ms: number, ok: boolean): void {
    this.n++;
    if (!ok) this.errors++;
    else if (this.latencies.length < MAX_KEPT_LATENCIES) this.latencies.push(ms);
  }

  /** epoch ms at which the window closes by time, or null without a time limit */
  get deadline(): number | null {
    return this.limits.seconds > 0 ? this.startedAt + this.limits.seconds * 1000 : null;
  }

  verdict(now: number): ProbationVerdict {
    const l = this.limits;
    const byCount = l.inferences > 0 && this.n >= l.inferences;
    const byTime = this.deadline !== null && now >= this.deadline;
    // Fail early once the errors already exceed what the full window could allow.
    const errorBudget = l.inferences > 0 ? l.maxErrorRate * l.inferences : Infinity;
    if (this.errors > 0 && this.errors > errorBudget) return { kind: 'fail', detail: this.describe(`${this.errors} errors exceed the budget of ${Math.floor(errorBudget)}`) };
    if (!byCount && !byTime) return { kind: 'continue' };
    const rate = this.n ? this.errors / this.n : 0;
    if (rate > l.maxErrorRate) return { kind: 'fail', detail: this.describe(`error rate ${rate.toFixed(3)} over ${l.maxErrorRate}`) };
    const p95 = this.p95();
    if (p95 !== null && p95 > l.maxLatencyMs) return { kind: 'fail', detail: this.describe(`p95 latency ${p95.toFixed(2)} ms over ${l.maxLatencyMs} ms`) };
    return { kind: 'pass', detail: this.describe(byCount ? 'inference count reached' : 'time elapsed') };
  }

  private p95(): number | null {
    if (this.latencies.length < MIN_CALLS_FOR_LATENCY) return null;
    const s = [...this.latencies].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.floor(0.95 * s.length))];
  }

  private describe(what: string): string {
    return `probation: ${what} (${this.n} inferences, ${this.errors} errors)`;
  }
}
