// A model that fails its golden inputs never becomes active; a model that passes them but then errors,
// or runs over the latency limit, during probation is reverted to the previous slot with
// PROBATION_FAILED; and the device still takes a good update afterwards.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { FleetAgent } from '../../device-agent/agent.ts';
import type { Feeds } from '../../runtime/onnx-session.ts';
import { decodeTensor, encodeTensor } from '../../shared/tensor-codec.ts';
import { assign, pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { waitFor } from '../helpers/wait.ts';
import { FaultRuntime } from './fault-runtime.ts';
import { assignSigned, manifestOf, outcome, settled, startAgent } from './fixture.ts';

const feeds: Feeds = { x: { data: new Float32Array(8).fill(0.25), dims: [1, 8] } };

describe('health check and probation', () => {
  let server: TestServer;
  let agent: FleetAgent;
  // device time: 2 ms per inference, 60 ms for the slow model; the 30 ms probation limit judges those
  // figures, not the wall time of a loaded test machine (healthy probations failed on it)
  const runtime = new FaultRuntime({ deviceMs: 2 });
  let v1: Awaited<ReturnType<typeof pushBundle>>;

  /** Call infer() until the update settles; returns how many calls failed. */
  async function inferUntil(done: Promise<unknown>): Promise<number> {
    let finished = false;
    void done.finally(() => { finished = true; });
    let failures = 0;
    for (let i = 0; i < 2000 && !finished; i++) {
      await agent.infer(feeds).catch(() => { failures++; });
    }
    await done;
    return failures;
  }

  beforeAll(async () => {
    server = await startTestServer();
    v1 = await pushBundle(server, 'tiny', tinyClassifier(1));
    agent = await startAgent(server, 'probe-1', { probationInferences: 10, probationSeconds: 0, probationMaxErrorRate: 0.05, probationMaxLatencyMs: 30 }, runtime.deps());
    const passed = settled(agent, v1.manifestSha256, ['probation_passed']);
    await assign(server, v1.manifestSha256, [agent.deviceId]);
    await agent.waitForStatus((s) => s.state === 'active' && s.manifestSha256 === v1.manifestSha256);
    expect(await inferUntil(passed)).toBe(0);
  }, 60_000);

  afterAll(async () => {
    await agent?.stop();
    await server?.close();
  });

  it('golden inputs outside tolerance: HEALTH_CHECK_FAILED, the new model never answers', async () => {
    const v2 = await pushBundle(server, 'tiny', tinyClassifier(2));
    const m = manifestOf(server, v2.manifestSha256);
    for (const vec of m.healthCheck.vectors) {
      for (const [name, t] of Object.entries(vec.outputs)) {
        const d = decodeTensor(t);
        vec.outputs[name] = encodeTensor(d.dtype, d.dims, Float32Array.from(d.data as Float32Array, (x) => x + 0.1));
      }
    }
    const sha = await assignSigned(server, m, [agent.deviceId]);
    const s = await outcome(agent, sha);
    expect([s.state, s.reason]).toEqual(['failed', 'HEALTH_CHECK_FAILED']);
    expect(agent.active?.manifestSha256).toBe(v1.manifestSha256);
  });

  it('errors during probation: reverted to the previous model with PROBATION_FAILED', async () => {
    const v3 = await pushBundle(server, 'tiny', tinyClassifier(3));
    runtime.faults.set(v3.manifest.artifact.sha256, { kind: 'error' });
    const reverted = settled(agent, v3.manifestSha256, ['reverted', 'probation_passed', 'failed', 'rejected']);
    await assign(server, v3.manifestSha256, [agent.deviceId]);
    await agent.waitForStatus((s) => s.state === 'active' && s.manifestSha256 === v3.manifestSha256);
    const failures = await inferUntil(reverted);
    const s = await reverted;
    expect([s.state, s.reason]).toEqual(['reverted', 'PROBATION_FAILED']);
    expect(s.detail).toMatch(/error/);
    expect(failures).toBeGreaterThan(0); // the faulty model's own errors, nothing else
    expect(agent.active?.manifestSha256).toBe(v1.manifestSha256);
    // the failed slot is cleared for good
    const slots = join(agent.config.dataDir, 'slots');
    const files = ['a', 'b'].filter((x) => existsSync(join(slots, `${x}.onnx`)));
    expect(files).toHaveLength(1);
    expect(await agent.infer(feeds)).toBeTruthy();
  });

  it('latency over the limit during probation: reverted with PROBATION_FAILED', async () => {
    const v4 = await pushBundle(server, 'tiny', tinyClassifier(4));
    runtime.faults.set(v4.manifest.artifact.sha256, { kind: 'slow', ms: 60 });
    const reverted = settled(agent, v4.manifestSha256, ['reverted', 'probation_passed', 'failed', 'rejected']);
    await assign(server, v4.manifestSha256, [agent.deviceId]);
    await agent.waitForStatus((s) => s.state === 'active' && s.manifestSha256 === v4.manifestSha256);
    expect(await inferUntil(reverted)).toBe(0);
    const s = await reverted;
    expect([s.state, s.reason]).toEqual(['reverted', 'PROBATION_FAILED']);
    expect(s.detail).toMatch(/p95 latency 60\.00 ms over 30 ms/); // the device's figure, exactly
    expect(agent.active?.manifestSha256).toBe(v1.manifestSha256);
  });

  it('the server stored each revert with its reason, and a good update still goes through', async () => {
    const read = () => server.app.fleet.db.prepare("SELECT state, reason FROM status_events WHERE device_id = ? AND state IN ('reverted', 'failed')").all(agent.deviceId) as { state: string; reason: string }[];
    // the agent tells its own listeners at once; the broker and the server follow
    await waitFor(() => read().length >= 3, 5000, 'the reports reach the server');
    const rows = read();
    expect(rows.filter((r) => r.state === 'reverted' && r.reason === 'PROBATION_FAILED')).toHaveLength(2);
    expect(rows.filter((r) => r.state === 'failed' && r.reason === 'HEALTH_CHECK_FAILED')).toHaveLength(1);
    const v5 = await pushBundle(server, 'tiny', tinyClassifier(5));
    const passed = settled(agent, v5.manifestSha256, ['probation_passed', 'reverted', 'failed', 'rejected']);
    await assign(server, v5.manifestSha256, [agent.deviceId]);
    await agent.waitForStatus((s) => s.state === 'active' && s.manifestSha256 === v5.manifestSha256);
    expect(await inferUntil(passed)).toBe(0);
    expect((await passed).state).toBe('probation_passed');
    expect(agent.active?.manifestSha256).toBe(v5.manifestSha256);
  });
});

describe('a newer assignment during probation', () => {
  let server: TestServer;
  let agent: FleetAgent;

  beforeAll(async () => { server = await startTestServer(); }, 60_000);
  afterAll(async () => { await agent?.stop(); await server?.close(); });

  it('is installed at once (a fleet revert must not wait for a probation window)', async () => {
    const [v1, v2, v3] = [await pushBundle(server, 'tiny', tinyClassifier(1)), await pushBundle(server, 'tiny', tinyClassifier(2)), await pushBundle(server, 'tiny', tinyClassifier(1))];
    agent = await startAgent(server, 'probe-2', { probationInferences: 1000, probationSeconds: 3600 });
    for (const v of [v1, v2, v3]) {
      await assign(server, v.manifestSha256, [agent.deviceId]);
      await settled(agent, v.manifestSha256, ['active']);
      expect(agent.onProbation).toBe(true);
    }
    expect(agent.active?.manifestSha256).toBe(v3.manifestSha256);
  });
});
