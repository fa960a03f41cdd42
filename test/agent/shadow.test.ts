// Shadow mode on one device (issue 17): a candidate named in the signed desired state is fetched and
// verified into its own slot (`shadow`), loaded next to the active model and run on the live inputs it is
// offered; the caller only ever gets the active model's answer; the telemetry carries exact figures;
// a memory ceiling refuses a candidate before anything is fetched; promotion fetches nothing again
// (artifact requests counted at the server); a restart restores the shadow from its slot; while it is
// held the previous model stays the revert target (a failing active model goes back to it).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { IncomingMessage } from 'node:http';
import type { FleetAgent } from '../../device-agent/agent.ts';
import { AgentState } from '../../device-agent/state-store.ts';
import { OrtRuntime } from '../../device-agent/model-runtime.ts';
import type { Feeds } from '../../runtime/onnx-session.ts';
import type { ShadowTelemetry, Status, Telemetry } from '../../shared/messages.ts';
import { addWindow, emptyTotals, shadowFigures } from '../../shared/shadow-figures.ts';
import { seededRandom } from '../../server/bundles/golden-vectors.ts';
import { assign, pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { waitFor } from '../helpers/wait.ts';
import { FaultRuntime } from './fault-runtime.ts';
import { outcome, settled, startAgent } from './fixture.ts';

const inputsFor = (n: number, seed: number): Feeds[] => {
  const rand = seededRandom(seed);
  return Array.from({ length: n }, () => ({ x: { data: Float32Array.from({ length: 8 }, () => rand()), dims: [1, 8] } }));
};

const sha256Of = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
const AgentStateOf = (dataDir: string) => AgentState.parse(JSON.parse(readFileSync(join(dataDir, 'state.json'), 'utf8')));

function argmax(a: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}

describe('shadow mode on a device', () => {
  let server: TestServer;
  const agents: FleetAgent[] = [];
  /** artifact requests the server received, by artifact SHA-256 */
  const served = new Map<string, number>();
  const onRequest = (req: IncomingMessage) => {
    const m = /^\/v1\/artifacts\/([0-9a-f]{64})/.exec(req.url ?? '');
    if (m && req.method === 'GET') served.set(m[1], (served.get(m[1]) ?? 0) + 1);
  };

  beforeAll(async () => {
    server = await startTestServer();
    server.app.server.on('request', onRequest);
  }, 60_000);
  afterAll(async () => {
    for (const a of agents) await a.stop();
    server?.app.server.off('request', onRequest);
    await server?.close();
  });

  const shadowStatus = (agent: FleetAgent, manifestSha256: string, states: string[]) =>
    agent.waitForStatus((s: Status) => s.manifestSha256 === manifestSha256 && states.includes(s.state), 20_000);

  /** telemetry windows' shadow parts, added up, until `n` inputs are accounted for */
  async function shadowTotals(agent: FleetAgent, n: number): Promise<{ windows: ShadowTelemetry[]; total: ReturnType<typeof emptyTotals> }> {
    const windows: ShadowTelemetry[] = [];
    const total = emptyTotals();
    const on = (t: Telemetry) => { if (t.shadow) { windows.push(t.shadow); addWindow(total, t.shadow); } };
    agent.on('telemetry', on);
    try {
      await waitFor(() => total.samples + total.errors + total.dropped >= n, 20_000, `${n} shadow samples reported`);
    } finally {
      agent.off('telemetry', on);
    }
    return { windows, total };
  }

  it('holds a candidate in shadow: fetched once, run on every sampled input, never answering; exact figures in telemetry', async () => {
    const active = await pushBundle(server, 'shadow-a', tinyClassifier(31));
    const cand = await pushBundle(server, 'shadow-a', tinyClassifier(32));
    const agent = await startAgent(server, 'shadow-1', { telemetryWindowMs: 200, shadow: { queue: 64, maxWaitMs: 60_000 } });
    agents.push(agent);
    const done = outcome(agent, active.manifestSha256);
    await assign(server, active.manifestSha256, [agent.deviceId]);
    expect((await done).state).toBe('active');

    const loaded = shadowStatus(agent, cand.manifestSha256, ['shadow_loaded', 'shadow_failed']);
    await server.app.fleet.director.assign(active.manifestSha256, [agent.deviceId], undefined, { shadow: { manifestSha256: cand.manifestSha256, sampleRate: 1 } });
    const s = await loaded;
    expect(s.state).toBe('shadow_loaded');
    expect(s.active?.manifestSha256).toBe(active.manifestSha256);
    expect(agent.shadowCandidate).toEqual({ modelId: 'shadow-a', version: cand.version, manifestSha256: cand.manifestSha256, sampleRate: 1 });
    expect(served.get(cand.manifest.artifact.sha256)).toBe(1);

    // the expected figures, from the two models run side by side on the same inputs
    const inputs = inputsFor(40, 7);
    const rt = new OrtRuntime();
    const [ma, mc] = [await rt.load(tinyClassifier(31), { sessionConfig: {} }), await rt.load(tinyClassifier(32), { sessionConfig: {} })];
    let agree = 0;
    const answers: number[][] = [];
    for (const f of inputs) {
      const [a, c] = [await ma.run(f), await mc.run(f)];
      answers.push([...(a.probs.data as Float32Array)]);
      if (argmax(a.probs.data as Float32Array) === argmax(c.probs.data as Float32Array)) agree++;
    }
    await ma.release(); await mc.release();
    expect(agree).toBeGreaterThan(0);
    expect(agree).toBeLessThan(40); // the two models do disagree on some of these inputs

    const totals = shadowTotals(agent, 40);
    for (const [i, f] of inputs.entries()) {
      const out = await agent.infer(f);
      expect([...(out.probs.data as Float32Array)]).toEqual(answers[i]); // the active model's answer, never the candidate's
    }
    const { total } = await totals;
    expect(total.samples).toBe(40);
    expect(total.errors).toBe(0);
    expect(total.dropped).toBe(0);
    expect(total.outputs.probs.kind).toBe('classifier');
    expect(total.outputs.probs.positions).toBe(40);
    expect(total.outputs.probs.agree).toBe(agree);
    const f = shadowFigures(total);
    expect(f.agreement).toBeCloseTo(agree / 40, 12);
    expect(f.latencyRatio).not.toBeNull();
    expect(f.outputs.probs.sqnrDb).not.toBeNull();
    expect(agent.active?.manifestSha256).toBe(active.manifestSha256);
  }, 60_000);

  it('a candidate with the active model\'s own bytes agrees on every input: agreement 1, no noise, cosine 1', async () => {
    const active = await pushBundle(server, 'shadow-same', tinyClassifier(41));
    const cand = await pushBundle(server, 'shadow-same', tinyClassifier(41)); // same bytes, a new version
    const agent = await startAgent(server, 'shadow-2', { telemetryWindowMs: 200, shadow: { queue: 64, maxWaitMs: 60_000 } });
    agents.push(agent);
    const done = outcome(agent, active.manifestSha256);
    await assign(server, active.manifestSha256, [agent.deviceId]);
    await done;
    const loaded = shadowStatus(agent, cand.manifestSha256, ['shadow_loaded', 'shadow_failed']);
    await server.app.fleet.director.assign(active.manifestSha256, [agent.deviceId], undefined, { shadow: { manifestSha256: cand.manifestSha256, sampleRate: 1 } });
    expect((await loaded).state).toBe('shadow_loaded');
    const totals = shadowTotals(agent, 25);
    for (const f of inputsFor(25, 9)) await agent.infer(f);
    const { total } = await totals;
    expect(total.samples).toBe(25);
    const fig = shadowFigures(total);
    expect(fig.agreement).toBe(1);
    expect(fig.outputs.probs.sqnrDb).toBeNull();
    expect(fig.outputs.probs.cosine).toBeCloseTo(1, 12);
    expect(fig.outputs.probs.maxAbsError).toBe(0);
  }, 60_000);

  it('sample rate 0 runs the candidate on nothing', async () => {
    const active = await pushBundle(server, 'shadow-zero', tinyClassifier(51));
    const cand = await pushBundle(server, 'shadow-zero', tinyClassifier(52));
    const agent = await startAgent(server, 'shadow-3', { telemetryWindowMs: 200 });
    agents.push(agent);
    const done = outcome(agent, active.manifestSha256);
    await assign(server, active.manifestSha256, [agent.deviceId]);
    await done;
    const loaded = shadowStatus(agent, cand.manifestSha256, ['shadow_loaded', 'shadow_failed']);
    await server.app.fleet.director.assign(active.manifestSha256, [agent.deviceId], undefined, { shadow: { manifestSha256: cand.manifestSha256, sampleRate: 0 } });
    expect((await loaded).state).toBe('shadow_loaded');
    for (const f of inputsFor(30, 3)) await agent.infer(f);
    const seen: ShadowTelemetry[] = [];
    const on = (t: Telemetry) => { if (t.shadow && t.count > 0) seen.push(t.shadow); };
    agent.on('telemetry', on);
    await waitFor(() => seen.length > 0, 10_000, 'a window with the 30 calls');
    agent.off('telemetry', on);
    expect(seen[0].samples + seen[0].dropped + seen[0].errors).toBe(0);
  }, 60_000);

  it('a memory ceiling refuses the candidate before anything is fetched, and says why', async () => {
    const active = await pushBundle(server, 'shadow-mem', tinyClassifier(61));
    const cand = await pushBundle(server, 'shadow-mem', tinyClassifier(62));
    const agent = await startAgent(server, 'shadow-4', { shadow: { maxRssBytes: 1024 * 1024 } }); // below any Node process
    agents.push(agent);
    const done = outcome(agent, active.manifestSha256);
    await assign(server, active.manifestSha256, [agent.deviceId]);
    await done;
    const failed = shadowStatus(agent, cand.manifestSha256, ['shadow_loaded', 'shadow_failed']);
    await server.app.fleet.director.assign(active.manifestSha256, [agent.deviceId], undefined, { shadow: { manifestSha256: cand.manifestSha256, sampleRate: 1 } });
    const s = await failed;
    expect(s.state).toBe('shadow_failed');
    expect(s.reason).toBe('SHADOW_MEMORY');
    expect(s.detail).toMatch(/over the ceiling of 1\.0 MiB \(shadow\.maxRssBytes\)/);
    expect(served.get(cand.manifest.artifact.sha256)).toBeUndefined();
    expect(agent.shadowCandidate).toBeNull();
    expect(agent.active?.manifestSha256).toBe(active.manifestSha256);
  }, 60_000);

  it('restored from its slot after a restart; unloaded when the desired state names no shadow; promoted with no second download', async () => {
    const v1 = await pushBundle(server, 'shadow-p', tinyClassifier(71));
    const cand = await pushBundle(server, 'shadow-p', tinyClassifier(72));
    const dataDir = join(server.dir, 'agents', 'shadow-5');
    let agent = await startAgent(server, 'shadow-5', { dataDir });
    const done = outcome(agent, v1.manifestSha256);
    await assign(server, v1.manifestSha256, [agent.deviceId]);
    await done;
    const loaded = shadowStatus(agent, cand.manifestSha256, ['shadow_loaded', 'shadow_failed']);
    await server.app.fleet.director.assign(v1.manifestSha256, [agent.deviceId], undefined, { shadow: { manifestSha256: cand.manifestSha256, sampleRate: 0.5 } });
    expect((await loaded).state).toBe('shadow_loaded');
    const state = () => JSON.parse(readFileSync(join(dataDir, 'state.json'), 'utf8')) as { active: 'a' | 'b'; previous: string | null; shadow: { slot: string; manifestSha256: string; model?: { artifactSha256: string } } | null; slots: Record<string, { manifestSha256: string } | null> };
    const held = state();
    expect(held.shadow?.manifestSha256).toBe(cand.manifestSha256);
    expect(held.shadow?.slot).toBe('shadow');
    expect(held.shadow?.model?.artifactSha256).toBe(cand.manifest.artifact.sha256);
    expect(sha256Of(join(dataDir, 'slots', 'shadow.onnx'))).toBe(cand.manifest.artifact.sha256);
    expect(held.slots[held.active === 'a' ? 'b' : 'a']).toBeNull(); // the inactive slot is not taken (nothing was installed before v1)
    expect(held.previous).toBeNull();

    // a restart: the shadow is loaded again from its slot, nothing fetched
    await agent.stop();
    agent = await startAgent(server, 'shadow-5', { dataDir }, {});
    agents.push(agent);
    expect(agent.active?.manifestSha256).toBe(v1.manifestSha256);
    expect(agent.shadowCandidate?.manifestSha256).toBe(cand.manifestSha256);
    expect(agent.shadowCandidate?.sampleRate).toBe(0.5);
    expect(served.get(cand.manifest.artifact.sha256)).toBe(1);

    // promotion: the candidate becomes the active model, staged from the shadow slot
    const promoted = outcome(agent, cand.manifestSha256);
    await assign(server, cand.manifestSha256, [agent.deviceId]);
    expect((await promoted).state).toBe('active');
    expect(agent.active?.manifestSha256).toBe(cand.manifestSha256);
    expect(agent.shadowCandidate).toBeNull();
    expect(served.get(cand.manifest.artifact.sha256)).toBe(1); // counted at the server: no second download
    expect(state().shadow).toBeNull();
    // the bytes were moved out of the shadow slot into the candidate's slot: none left behind
    expect(existsSync(join(dataDir, 'slots', 'shadow.onnx'))).toBe(false);
    expect(sha256Of(join(dataDir, 'slots', `${state().active}.onnx`))).toBe(cand.manifest.artifact.sha256);
    expect(state().slots[state().previous!]?.manifestSha256).toBe(v1.manifestSha256); // v1 is the revert target

    // held again, then a desired state with no shadow unloads it: record, slot and files gone
    const v3 = await pushBundle(server, 'shadow-p', tinyClassifier(73));
    const again = shadowStatus(agent, v3.manifestSha256, ['shadow_loaded', 'shadow_failed']);
    await server.app.fleet.director.assign(cand.manifestSha256, [agent.deviceId], undefined, { shadow: { manifestSha256: v3.manifestSha256, sampleRate: 1 } });
    expect((await again).state).toBe('shadow_loaded');
    const slot = state().shadow!.slot;
    expect(slot).toBe('shadow');
    expect(state().slots[state().previous!]?.manifestSha256).toBe(v1.manifestSha256); // still the revert target while v3 is held
    const unloaded = shadowStatus(agent, v3.manifestSha256, ['shadow_unloaded']);
    await assign(server, cand.manifestSha256, [agent.deviceId]);
    expect((await unloaded).detail).toBe('the desired state names no shadow any more');
    expect(agent.shadowCandidate).toBeNull();
    expect(state().shadow).toBeNull();
    expect(existsSync(join(dataDir, 'slots', 'shadow.onnx'))).toBe(false);
    expect(existsSync(join(dataDir, 'slots', 'shadow.manifest.json'))).toBe(false);
    expect(agent.active?.manifestSha256).toBe(cand.manifestSha256);
    expect(state().slots[state().previous!]?.manifestSha256).toBe(v1.manifestSha256);
  }, 90_000);

  it('while a shadow is held, a failing active model is reverted to the previous one (exact bytes); the shadow stays held', async () => {
    const v1 = await pushBundle(server, 'shadow-r', tinyClassifier(81));
    const v2 = await pushBundle(server, 'shadow-r', tinyClassifier(82));
    const cand = await pushBundle(server, 'shadow-r', tinyClassifier(83));
    const runtime = new FaultRuntime({ deviceMs: 2 });
    const dataDir = join(server.dir, 'agents', 'shadow-6');
    const agent = await startAgent(server, 'shadow-6', { dataDir, probationInferences: 10, probationSeconds: 0, probationMaxErrorRate: 0.05 }, runtime.deps());
    agents.push(agent);
    const feeds: Feeds = { x: { data: new Float32Array(8).fill(0.25), dims: [1, 8] } };
    const inferUntil = async (done: Promise<Status>) => {
      let finished = false;
      void done.finally(() => { finished = true; });
      for (let i = 0; i < 2000 && !finished; i++) await agent.infer(feeds).catch(() => {});
      return done;
    };
    const passed = settled(agent, v1.manifestSha256, ['probation_passed', 'reverted', 'failed']);
    await assign(server, v1.manifestSha256, [agent.deviceId]);
    await agent.waitForStatus((s) => s.state === 'active' && s.manifestSha256 === v1.manifestSha256);
    expect((await inferUntil(passed)).state).toBe('probation_passed');

    // v2 errors once it has passed its health check; the same desired state holds a candidate in shadow
    runtime.faults.set(v2.manifest.artifact.sha256, { kind: 'error' });
    const active2 = agent.waitForStatus((s) => s.state === 'active' && s.manifestSha256 === v2.manifestSha256);
    const loaded = shadowStatus(agent, cand.manifestSha256, ['shadow_loaded', 'shadow_failed']);
    await server.app.fleet.director.assign(v2.manifestSha256, [agent.deviceId], undefined, { shadow: { manifestSha256: cand.manifestSha256, sampleRate: 1 } });
    await active2;
    expect((await loaded).state).toBe('shadow_loaded');
    const held = AgentStateOf(dataDir);
    expect(held.slots[held.active!]?.manifestSha256).toBe(v2.manifestSha256);
    expect(held.previous).not.toBeNull();
    expect(held.slots[held.previous!]?.manifestSha256).toBe(v1.manifestSha256);
    expect(held.probation?.previous).toBe(held.previous);
    expect(held.shadow?.slot).toBe('shadow');

    // v2 fails its probation while the shadow is held: back to v1, from its own slot
    const reverted = settled(agent, v2.manifestSha256, ['reverted', 'probation_passed', 'failed', 'active']);
    const s = await inferUntil(reverted);
    expect([s.state, s.reason]).toEqual(['reverted', 'PROBATION_FAILED']);
    expect(agent.active?.manifestSha256).toBe(v1.manifestSha256);
    const after = AgentStateOf(dataDir);
    expect(after.slots[after.active!]?.manifestSha256).toBe(v1.manifestSha256);
    expect(sha256Of(join(dataDir, 'slots', `${after.active}.onnx`))).toBe(v1.manifest.artifact.sha256);
    expect(await agent.infer(feeds)).toBeTruthy();
    // the candidate is still held in its own slot, untouched by the revert
    expect(agent.shadowCandidate?.manifestSha256).toBe(cand.manifestSha256);
    expect(after.shadow?.manifestSha256).toBe(cand.manifestSha256);
    expect(sha256Of(join(dataDir, 'slots', 'shadow.onnx'))).toBe(cand.manifest.artifact.sha256);
    expect(served.get(v1.manifest.artifact.sha256)).toBe(1); // v1 was not fetched again: it was still on the device
  }, 90_000);
});
