// The agent's side of maintenance windows and download conditions (shared/update-policy.ts). Before an
// update downloads, and again before it switches, the agent asks the gate; while a step may not run the
// gate reports `waiting` with the reasons and checks again every `pollMs` and at once whenever the
// device's own code changes what it says about itself (setConditions, setBusy: the library API and the
// local HTTP API's POST /v1/conditions and POST /v1/busy). The clock and the sources are injected, so
// tests move time and plug chargers in without waiting.
import { statfsSync } from 'node:fs';
import { blockers, type DeviceConditions, type UpdatePolicy, type UpdateStep, type WaitReason } from '../shared/update-policy.ts';

/**
 * The agent stopped while an update waited: nothing is reported and the state record keeps the update
 * under way, so the next start handles it as an update a restart cut short (CRASH_RECOVERY), which the
 * server assigns again.
 */
export class WaitInterrupted extends Error {
  constructor() { super('the agent stopped while the update waited'); this.name = 'WaitInterrupted'; }
}

export interface ConditionsReport { onCharger?: boolean | null; batteryPercent?: number | null; metered?: boolean | null }

export interface GateOptions {
  timeZone: string;
  /** the clock windows are judged by (defaults to the agent's) */
  now: () => number;
  /** free bytes on the data disk; null = unknown */
  freeDiskBytes: () => number | null;
  /** how often a waiting step looks again without being told */
  pollMs: number;
}

export class UpdateGate {
  private reported: ConditionsReport = {};
  private busy = false;
  private readonly waiters = new Set<() => void>();

  constructor(private readonly o: GateOptions) {}

  /** What the device's own code says about power and network (fields left out stay as they were). */
  setConditions(c: ConditionsReport): void {
    this.reported = { ...this.reported, ...c };
    this.poke();
  }

  setBusy(busy: boolean): void {
    this.busy = busy;
    this.poke();
  }

  get isBusy(): boolean { return this.busy; }

  conditions(): DeviceConditions {
    return { ...this.reported, busy: this.busy, freeDiskBytes: this.o.freeDiskBytes() };
  }

  /** Look again now (the clock moved, a condition changed). */
  poke(): void {
    for (const w of [...this.waiters]) w();
  }

  blockers(policy: UpdatePolicy | undefined, step: UpdateStep, artifactBytes = 0): WaitReason[] {
    // no policy, nothing to wait for: no statfs of the data disk (issue 13: twice per update, for nothing)
    if (!policy) return [];
    return blockers(policy, step, this.o.now(), this.o.timeZone, this.conditions(), artifactBytes);
  }

  /**
   * Resolves when `step` may run; `onWait` is called with the reasons at every look that finds it
   * may not. Resolves 'stopped' when `abandon()` says so (agent stopping, a newer assignment).
   */
  async until(policy: UpdatePolicy | undefined, step: UpdateStep, artifactBytes: number, onWait: (why: WaitReason[]) => void, abandon: () => boolean, signal?: AbortSignal): Promise<'go' | 'stopped'> {
    for (;;) {
      if (abandon() || signal?.aborted) return 'stopped';
      const why = this.blockers(policy, step, artifactBytes);
      if (why.length === 0) return 'go';
      // reported at every look, not only on a change: a progress report sent while offline is lost
      onWait(why);
      await new Promise<void>((resolve) => {
        const done = () => { clearTimeout(timer); this.waiters.delete(done); signal?.removeEventListener('abort', done); resolve(); };
        const timer = setTimeout(done, this.o.pollMs);
        this.waiters.add(done);
        signal?.addEventListener('abort', done, { once: true });
      });
    }
  }
}

/** Free bytes on the file system holding `dir`, or null if it cannot be read. */
export function freeDiskBytes(dir: string): number | null {
  try {
    const s = statfsSync(dir);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return null;
  }
}
