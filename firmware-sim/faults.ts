// Fault profiles for simulated devices, applied around the real agent (never inside it): a runtime
// wrapper for model-level faults (a model that breaks on this hardware, slower inference), and input
// transforms for the workload (drifting sensors). Network and power faults live in the scenario runner.
import { DEVICE_MS, markNotAModelError, type LoadedModel, type ModelRuntime } from '../device-agent/model-runtime.ts';
import type { Feeds, Outputs } from '../runtime/onnx-session.ts';

export interface FaultProfile {
  /** artifacts (SHA-256) that misbehave on this device: outputs zeroed (fails golden checks) or every call throws */
  brokenArtifacts?: Record<string, 'wrong-output' | 'throw'>;
  /**
   * simulated inference time: base milliseconds, times a factor per artifact (latency regressions). The
   * device waits that long and reports exactly that (device time), not the host's wall time around it.
   */
  latency?: {
    baseMs: number;
    factorByArtifact?: Record<string, number>;
    /**
     * a hardware class's latency model (latency-model.ts): when set, device time is sample(cost ratio of the
     * artifact over the baseline's) x factor, and baseMs is not used
     */
    sample?: (costRatio: number) => number;
    costRatioByArtifact?: Record<string, number>;
  };
  /** workload inputs shifted and scaled (a drifting sensor): x * scale + offset */
  inputDrift?: { offset: number; scale?: number };
  /** the group's own inputs: every `every`-th call, element `element` drawn from [min, max) (scenario.ts InputMix) */
  inputMix?: { element: number; every: number; min: number; max: number };
}

/**
 * What the simulator actually injected, so a test can tell a fault that happened from one configured and
 * never triggered (a profile that names the wrong artifact, a proxy nobody connects through).
 */
export interface FaultCounts {
  /** flaky network: device connections destroyed by the relay */
  connectionsCut: number;
  /** download responses cut short after cutAfterBytes */
  downloadsCut: number;
  /** download chunks held back by delayMsPerChunk */
  chunksDelayed: number;
  /** inferences of an artifact broken on this device (outputs zeroed or the call thrown) */
  brokenInferences: number;
  /** inferences whose modelled latency carried an artifact's regression factor (factor != 1) */
  slowedInferences: number;
  /** workload calls whose inputs were drifted */
  driftedInputs: number;
  /** workload calls drawn from the group's own input distribution (InputMix) */
  mixedInputs: number;
  /** reads of a skewed device clock (the agent checks signatures and expiry against it) */
  skewedClockReads: number;
  /** devices switched off by the offline fault, and started again */
  offlineStops: number;
  offlineRestarts: number;
}

/** Failures of the simulator itself, never of the simulated model (the run is invalid when any happened). */
export interface SimulatorHealth {
  /** calls into the shared runtime that failed without a fault profile asking for it */
  infraFailures: number;
  firstInfraFailure: string | null;
  /**
   * calls that failed on a model the device had itself released while they were running (a shadow candidate
   * unloaded when its gate failed, with runs still queued): the device's doing, not the simulator's runtime
   */
  releasedRuns: number;
}

export const noFaults = (): FaultCounts => ({
  connectionsCut: 0, downloadsCut: 0, chunksDelayed: 0, brokenInferences: 0, slowedInferences: 0, driftedInputs: 0, mixedInputs: 0, skewedClockReads: 0, offlineStops: 0, offlineRestarts: 0,
});

export function addFaultCounts(into: FaultCounts, more: FaultCounts): FaultCounts {
  for (const k of Object.keys(into) as (keyof FaultCounts)[]) into[k] += more[k];
  return into;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Wraps a (shared) runtime with one device's faults; the profile is read on every call so tests can change it. */
export class FaultyRuntime implements ModelRuntime {
  constructor(
    private readonly inner: ModelRuntime,
    private readonly profile: () => FaultProfile,
    private readonly counts: FaultCounts = noFaults(),
    private readonly health: SimulatorHealth = { infraFailures: 0, firstInfraFailure: null, releasedRuns: 0 },
  ) {}

  async load(artifact: Uint8Array, key: { sha256: string; sessionConfig: Record<string, string> }): Promise<LoadedModel> {
    const model = await this.inner.load(artifact, key);
    let released = false;
    return {
      release: () => { released = true; return model.release(); },
      run: async (feeds: Feeds): Promise<Outputs> => {
        const p = this.profile();
        const factor = p.latency?.factorByArtifact?.[key.sha256] ?? 1;
        const l = p.latency;
        const deviceMs = l ? (l.sample ? l.sample(l.costRatioByArtifact?.[key.sha256] ?? 1) : l.baseMs) * factor : undefined;
        if (p.latency && factor !== 1) this.counts.slowedInferences++;
        if (deviceMs !== undefined) await sleep(deviceMs);
        const broken = p.brokenArtifacts?.[key.sha256];
        if (broken) this.counts.brokenInferences++;
        if (broken === 'throw') throw new Error('simulated hardware fault: kernel crashed');
        let out;
        try {
          out = await model.run(feeds);
        } catch (err) {
          // not in the profile: not the device's model. The agent does not count it against the model
          // (markNotAModelError). On a model the device had not released, the simulator's runtime failed and
          // the runner marks the run invalid; on one it had released meanwhile (a shadow candidate unloaded
          // with runs still queued: "invalid session id" once the shared session's last holder let go), the
          // device's own unload ended the call, which the shadow counts as dropped.
          if (released) this.health.releasedRuns++;
          else {
            this.health.infraFailures++;
            this.health.firstInfraFailure ??= (err as Error).message ?? String(err);
          }
          throw markNotAModelError(err);
        }
        if (broken === 'wrong-output') {
          const bad: Outputs = {};
          for (const [k, v] of Object.entries(out)) bad[k] = { ...v, data: new Float32Array(v.data.length) };
          out = bad;
        }
        return deviceMs === undefined ? out : Object.assign({ [DEVICE_MS]: deviceMs }, out);
      },
    };
  }
}

/** Call `n` of a device: on every `every`-th one, element `element` of each float input from [min, max) (seeded by device and call). */
export function applyInputMix(feeds: Feeds, mix: FaultProfile['inputMix'], device: number, n: number): Feeds {
  if (!mix || n % mix.every !== mix.every - 1) return feeds;
  const out: Feeds = {};
  for (const [name, t] of Object.entries(feeds)) {
    const src = t.data as ArrayLike<number>;
    if ((t.type ?? 'float32') !== 'float32' || mix.element >= src.length) { out[name] = t; continue; }
    const data = Float32Array.from(src);
    const u = ((Math.imul(device + 1, 0x9e3779b1) ^ Math.imul(n + 1, 0x85ebca6b)) >>> 0) / 2 ** 32;
    data[mix.element] = mix.min + (mix.max - mix.min) * u;
    out[name] = { ...t, data };
  }
  return out;
}

export function applyInputDrift(feeds: Feeds, drift: FaultProfile['inputDrift']): Feeds {
  if (!drift) return feeds;
  const out: Feeds = {};
  for (const [name, t] of Object.entries(feeds)) {
    if ((t.type ?? 'float32') !== 'float32') { out[name] = t; continue; }
    const src = t.data as ArrayLike<number>;
    const data = new Float32Array(src.length);
    for (let i = 0; i < src.length; i++) data[i] = src[i] * (drift.scale ?? 1) + drift.offset;
    out[name] = { ...t, data };
  }
  return out;
}
