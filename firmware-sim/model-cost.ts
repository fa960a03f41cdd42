// A model's cost, measured once by the scenario runner on the artifacts that ship: the fastest wall time of
// real onnxruntime-web runs on the workload's inputs, baseline and candidate interleaved so that a busy
// host slows both alike. Simulated devices then report device time scaled by the ratio (a 3x heavier
// candidate is 3x slower on every class, whatever the host's load while the fleet runs).
import { createSession, runSession, type Feeds } from '../runtime/onnx-session.ts';
import type { DeviceGroup } from './scenario.ts';

export interface ModelCost { baselineMs: number; candidateMs: number; ratio: number; runs: number }

/**
 * The fastest run: a busy host only ever adds time (preemption, other processes), so the minimum is the
 * model's cost. Medians and even the low quartile read a 3x model as 16-21x, and an equal one as 1.7x, with
 * the load average at 16 on two cores; the minimum read 2.8-2.9x and 1.01x.
 */
function fastest(xs: number[]): number {
  return Math.min(...xs);
}

export async function measureCostRatio(
  baseline: { bytes: Uint8Array; sessionConfig: Record<string, string> },
  candidate: { bytes: Uint8Array; sessionConfig: Record<string, string> },
  inputs: Feeds[], runs = 60,
): Promise<ModelCost> {
  const [b, c] = await Promise.all([createSession(baseline.bytes, { config: baseline.sessionConfig }), createSession(candidate.bytes, { config: candidate.sessionConfig })]);
  try {
    const tb: number[] = [], tc: number[] = [];
    // warm-up: a new session's first runs grow memory and are several times slower
    for (let i = 0; i < 10; i++) { await runSession(b, inputs[i % inputs.length]); await runSession(c, inputs[i % inputs.length]); }
    for (let i = 0; i < runs; i++) {
      const feeds = inputs[i % inputs.length];
      for (const [s, into] of (i % 2 ? [[b, tb], [c, tc]] : [[c, tc], [b, tb]]) as [typeof b, number[]][]) {
        const t0 = performance.now();
        await runSession(s, feeds);
        into.push(performance.now() - t0);
      }
    }
    const baselineMs = fastest(tb), candidateMs = fastest(tc);
    return { baselineMs, candidateMs, ratio: baselineMs > 0 ? candidateMs / baselineMs : 1, runs };
  } finally {
    await Promise.all([b.release(), c.release()]);
  }
}

/**
 * Groups with a latency model, as fault-profile latency: the baseline takes baseMs of device time, the
 * candidate baseMs x cost ratio (times any candidateLatencyFactor the group already has). Jitter and the
 * slow tail of the latency model are not applied here.
 */
export function applyLatencyModels(groups: DeviceGroup[], costRatio: number): DeviceGroup[] {
  return groups.map((g) => (g.latencyModel
    ? { ...g, faults: { ...g.faults, baseLatencyMs: g.latencyModel.baseMs, candidateLatencyFactor: costRatio * (g.faults.candidateLatencyFactor ?? 1) } }
    : g));
}
