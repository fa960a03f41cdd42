// A failure of the simulator's own runtime is not the model's (issue 21): the fault wrapper marks it so the
// agent leaves it out of telemetry and probation, and counts it so the runner marks the run invalid. A fault
// the profile asks for ('throw') stays a model error. The runtime failure here is real: a call on a session
// onnxruntime-web has already released.
import { describe, expect, it } from 'vitest';
import { isNotAModelError, OrtRuntime, SharedOrtRuntime, type ModelRuntime } from '../../device-agent/model-runtime.ts';
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
    const health: SimulatorHealth = { infraFailures: 0, firstInfraFailure: null, releasedRuns: 0 };
    const counts = noFaults();
    const m = await new FaultyRuntime(releasedUnderneath, () => ({}), counts, health).load(bytes, key);
    const errs = await Promise.all([1, 2, 3].map(() => m.run(feeds).then(() => null, (e: unknown) => e)));
    expect(errs.map(isNotAModelError)).toEqual([true, true, true]);
    expect(health.infraFailures).toBe(3);
    expect(health.firstInfraFailure).toMatch(/session/i);
    expect(counts.brokenInferences).toBe(0);
  });

  it("calls still running when the device released the model (a shadow candidate unloaded): the device's doing, not counted as the simulator's", async () => {
    const health: SimulatorHealth = { infraFailures: 0, firstInfraFailure: null, releasedRuns: 0 };
    // twenty devices holding one shared session (SharedOrtRuntime), as the simulator's devices hold a shadow candidate
    const shared = new SharedOrtRuntime();
    const faulty = new FaultyRuntime(shared, () => ({}), noFaults(), health);
    const held = await Promise.all(Array.from({ length: 20 }, () => faulty.load(bytes, key)));
    // each device has calls queued for the one runtime, every device unloads it (the last release frees the
    // session), and each device's queue still hands it one more input afterwards
    const calls = held.flatMap((m) => [1, 2, 3].map(() => m.run(feeds).then(() => null, (e: unknown) => e)));
    await Promise.all(held.map((m) => m.release()));
    calls.push(...held.map((m) => m.run(feeds).then(() => null, (e: unknown) => e)));
    const errs = (await Promise.all(calls)).filter((e) => e !== null);
    expect(errs.length).toBeGreaterThanOrEqual(20); // at least the runs after the release: 'invalid session id'
    expect((errs[0] as Error).message).toMatch(/session/i);
    expect(errs.every(isNotAModelError)).toBe(true);
    expect(health).toEqual({ infraFailures: 0, firstInfraFailure: null, releasedRuns: errs.length });
    // the same failure on a model the device still holds is the simulator's (the first test): counted
    const live = await new FaultyRuntime(releasedUnderneath, () => ({}), noFaults(), health).load(bytes, key);
    await live.run(feeds).catch(() => {});
    expect(health.infraFailures).toBe(1);
  });

  it('a fault the profile asks for stays a model error (counted as injected, not as a simulator failure)', async () => {
    const health: SimulatorHealth = { infraFailures: 0, firstInfraFailure: null, releasedRuns: 0 };
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
