// A failure of the simulator's own runtime is not the model's (issue 21): the fault wrapper marks it so the
// agent leaves it out of telemetry and probation, and counts it so the runner marks the run invalid. A fault
// the profile asks for ('throw') stays a model error. The runtime failure here is real: a call on a session
// onnxruntime-web has already released.
import { describe, expect, it } from 'vitest';
import { isNotAModelError, OrtRuntime, type ModelRuntime } from '../../device-agent/model-runtime.ts';
import { FaultyRuntime, noFaults, type SimulatorHealth } from '../../firmware-sim/faults.ts';
import { tinyClassifier } from '../../firmware-sim/sample-models.ts';
import { sha256Hex } from '../../shared/crypto.ts';

const bytes = tinyClassifier(1);
const key = { sha256: sha256Hex(bytes), sessionConfig: {} };
const feeds = { x: { data: new Float32Array(8), dims: [1, 8] } };

/** A runtime whose session is released under the device's feet (the simulator's fault, not the model's). */
const releasedUnderneath: ModelRuntime = {
  async load(artifact, k) {
    const m = await new OrtRuntime().load(artifact, k);
    await m.release();
    return m;
  },
};

describe('simulator failures are not model errors', () => {
  it('a runtime failure outside the profile: marked, counted, its message kept', async () => {
    const health: SimulatorHealth = { infraFailures: 0, firstInfraFailure: null };
    const counts = noFaults();
    const m = await new FaultyRuntime(releasedUnderneath, () => ({}), counts, health).load(bytes, key);
    const errs = await Promise.all([1, 2, 3].map(() => m.run(feeds).then(() => null, (e: unknown) => e)));
    expect(errs.map(isNotAModelError)).toEqual([true, true, true]);
    expect(health.infraFailures).toBe(3);
    expect(health.firstInfraFailure).toMatch(/session/i);
    expect(counts.brokenInferences).toBe(0);
  });

  it('a fault the profile asks for stays a model error (counted as injected, not as a simulator failure)', async () => {
    const health: SimulatorHealth = { infraFailures: 0, firstInfraFailure: null };
    const counts = noFaults();
    const m = await new FaultyRuntime(new OrtRuntime(), () => ({ brokenArtifacts: { [key.sha256]: 'throw' } }), counts, health).load(bytes, key);
    const err = await m.run(feeds).then(() => null, (e: unknown) => e);
    expect((err as Error).message).toBe('simulated hardware fault: kernel crashed');
    expect(isNotAModelError(err)).toBe(false);
    expect(health.infraFailures).toBe(0);
    expect(counts.brokenInferences).toBe(1);
    await m.release();
  });
});
