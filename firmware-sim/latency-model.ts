// Device time per hardware class (issue 21): what one inference of artifact M takes on a simulated device,
// independent of the simulator host's load. Device time = baseMs x cost(M) / cost(baseline) x jitter
// (x tailFactor with tailProbability), seeded per device. cost(X) is the artifact's real cost, measured
// once by the runner before the fleet starts (measureCosts), so a 2x costlier candidate is 2x slower in
// the figures however busy the host is.
import { mulberry32 } from '../shared/prng.ts';
import { createSession, runSession, type Feeds } from '../runtime/onnx-session.ts';

/** The scenario's shape (firmware-sim/scenario.ts DeviceGroup.latencyModel); kept exactly so for the twin. */
export interface LatencyModel {
  baseMs: number;
  /** relative standard deviation of a lognormal factor with mean 1 (default 0.1) */
  jitter?: number;
  /** share of inferences that hit the slow tail (default 0.01) */
  tailProbability?: number;
  /** how much slower a tail inference is (default 3) */
  tailFactor?: number;
}

export const LATENCY_DEFAULTS = { jitter: 0.1, tailProbability: 0.01, tailFactor: 3 } as const;

/** A device's latency sampler: seeded, so a scenario gives the same figures on every run. */
export function latencySampler(m: LatencyModel, seed: number): (costRatio: number) => number {
  const jitter = m.jitter ?? LATENCY_DEFAULTS.jitter;
  const tailP = m.tailProbability ?? LATENCY_DEFAULTS.tailProbability;
  const tailFactor = m.tailFactor ?? LATENCY_DEFAULTS.tailFactor;
  // lognormal with mean 1 and relative sd `jitter`: sigma^2 = ln(1 + jitter^2), mu = -sigma^2 / 2
  const sigma = Math.sqrt(Math.log(1 + jitter * jitter));
  const mu = -(sigma * sigma) / 2;
  const rand = mulberry32(seed >>> 0);
  return (costRatio) => {
    // Box-Muller on two seeded uniforms (1 - u keeps log away from 0)
    const z = Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
    const tail = rand() < tailP ? tailFactor : 1;
    return m.baseMs * costRatio * Math.exp(mu + sigma * z) * tail;
  };
}

/** meanMs: CPU milliseconds per inference (the fastest round's mean) */
export interface ArtifactCost { sha256: string; meanMs: number; runs: number }

/**
 * The real cost of each artifact on this host: mean time of `runs` inferences, measured in interleaved
 * rounds (A, B, A, B...) so a change of host load hits both alike, and the fastest round taken (other
 * processes only ever add time). Time is this process's CPU time, not wall time: on a host shared with
 * other work (load 16 on 2 cores here) wall time of a sub-millisecond model read 0.65x to 1.16x between
 * two models of identical shape; CPU time does not count the time the process waited for a core.
 * Run before the fleet starts (nothing else in the process competes for the runtime then).
 */
export async function measureCosts(artifacts: { sha256: string; bytes: Uint8Array; feeds: Feeds }[], opts: { runs?: number; rounds?: number } = {}): Promise<ArtifactCost[]> {
  const rounds = opts.rounds ?? 50;
  const perRound = Math.max(1, Math.round((opts.runs ?? 5000) / rounds));
  const sessions = await Promise.all(artifacts.map((a) => createSession(a.bytes)));
  try {
    for (const [i, s] of sessions.entries()) for (let k = 0; k < 500; k++) await runSession(s, artifacts[i].feeds); // warm-up (JIT, allocations)
    const means: number[][] = artifacts.map(() => []);
    for (let r = 0; r < rounds; r++) {
      // alternate the order too (A B, B A, ...): whichever goes second in a round ran on warmer caches
      const order = r % 2 ? [...sessions.keys()].reverse() : [...sessions.keys()];
      for (const i of order) {
        const s = sessions[i];
        const c0 = process.cpuUsage();
        for (let k = 0; k < perRound; k++) await runSession(s, artifacts[i].feeds);
        const c = process.cpuUsage(c0);
        means[i].push((c.user + c.system) / 1000 / perRound);
      }
    }
    return artifacts.map((a, i) => ({ sha256: a.sha256, meanMs: Math.min(...means[i]), runs: rounds * perRound }));
  } finally {
    await Promise.all(sessions.map((s) => s.release()));
  }
}
