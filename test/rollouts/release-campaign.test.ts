// Campaigns of a release (issue 19): POST /v1/campaigns {release} rolls a release out wave by wave, each
// wave's devices getting the release's whole set as one signed assignment; a device is updated when it
// runs every model of it; a failure halts the campaign and the revert puts each touched device back on
// the set it ran before, all models. Real server and broker on loopback, enrolled in-process agents,
// real onnxruntime-web sessions, real signatures.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetAgent } from '../../device-agent/agent.ts';
import { pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { createCampaign, events, getCampaign, waitForCampaign, whyStopped } from '../helpers/campaigns.ts';
import { startAgent } from '../agent/fixture.ts';
import { FaultRuntime } from '../agent/fault-runtime.ts';
import type { Feeds } from '../../runtime/onnx-session.ts';

const IDS = ['mel', 'emb', 'kws'] as const;
const WIDTH = { mel: 8, emb: 6, kws: 4 } as const;
const N = 4;
const WAVES = [
  { percent: 50, minDevices: 2, soakSeconds: 0.2, minReporting: 0, minInferences: 0 },
  { percent: 100, soakSeconds: 0.2, minReporting: 0, minInferences: 0 },
];

describe('campaigns of a release', { timeout: 120_000 }, () => {
  let server: TestServer;
  const agents: FleetAgent[] = [];
  // every call reports 1 ms of device time (a 'slow' fault its own), so latency gates judge the modelled device, not the host's load
  const runtimes: FaultRuntime[] = [];
  let seed = 100;

  /** the three models pushed again as new bundles; `slowEmb` gives emb a latency budget no run can meet */
  async function pushSet(slowEmb = false): Promise<{ manifestSha256: string; artifactSha256: string }[]> {
    const out = [];
    for (const id of IDS) {
      const b = await pushBundle(server, id, tinyClassifier(seed++, { inputs: WIDTH[id], classes: 3 }), {
        quantize: 'none', ...(slowEmb && id === 'emb' ? { healthCheck: { latencyBudgetMs: 0.000001 } } : {}),
      } as never);
      out.push({ manifestSha256: b.manifestSha256, artifactSha256: b.manifest.artifact.sha256 });
    }
    return out;
  }
  async function release(name: string): Promise<{ version: number }> {
    const res = await server.app.inject({ method: 'POST', url: '/v1/releases', payload: { name, models: IDS.map((modelId) => ({ modelId })) } });
    expect(res.statusCode, res.body).toBe(201);
    return res.json();
  }
  const setOf = (a: FleetAgent) => a.activeSet.map((m) => m.manifestSha256);
  const artifactsOf = (a: FleetAgent) => a.activeSet.map((m) => server.app.fleet.director.bundleEnvelope(m.manifestSha256).manifest.artifact.sha256);
  async function waitFor(what: string, ok: () => boolean, ms = 60_000): Promise<void> {
    const end = Date.now() + ms;
    while (!ok()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  let v1: { manifestSha256: string; artifactSha256: string }[];
  beforeAll(async () => {
    server = await startTestServer();
    for (let i = 0; i < N; i++) {
      runtimes.push(new FaultRuntime({ deviceMs: 1 }));
      agents.push(await startAgent(server, `rel-${i}`, { telemetryWindowMs: 300 }, runtimes[i].deps()));
    }
    // every device starts on release pipe v1, assigned at once
    v1 = await pushSet();
    await release('pipe');
    const res = await server.app.inject({ method: 'POST', url: '/v1/releases/pipe/assignments', payload: { all: true } });
    expect(res.statusCode, res.body).toBe(202);
    await waitFor('release v1 on every device', () => agents.every((a) => setOf(a).join() === v1.map((m) => m.manifestSha256).join()));
  }, 120_000);

  afterAll(async () => {
    for (const a of agents) await a.stop();
    await server?.close();
  });

  it('refuses a campaign naming both a bundle and a release, neither, an unknown release, or a release with shadow waves', async () => {
    const both = await createCampaign(server, { release: 'pipe', manifestSha256: v1[0].manifestSha256 });
    expect(both.status).toBe(400);
    expect(both.body.message).toContain('exactly one of manifestSha256 (a bundle) or release');
    const neither = await createCampaign(server, { waves: WAVES });
    expect(neither.status).toBe(400);
    expect(neither.body.message).toContain('exactly one of');
    const unknown = await createCampaign(server, { release: 'nope' });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toBe('FLEET_ERR_RELEASE_NOT_FOUND');
    const shadow = await createCampaign(server, { release: 'pipe', waves: [{ percent: 100, shadow: {} }] });
    expect(shadow.status).toBe(400);
    expect(shadow.body.message).toContain('shadow waves are for single-bundle campaigns');
  });

  it('takes a release through two waves: every device ends on all three models of it', async () => {
    const v2 = await pushSet();
    expect((await release('pipe')).version).toBe(2);
    const c = await createCampaign(server, { release: 'pipe', waves: WAVES });
    expect(c.status, JSON.stringify(c.body)).toBe(201);
    expect(c.body.release).toEqual({ name: 'pipe', version: 2, models: IDS.map((modelId, i) => ({ modelId, version: 2, manifestSha256: v2[i].manifestSha256 })) });
    expect(c.body.manifestSha256).toBe(v2[0].manifestSha256);
    const done = await waitForCampaign(server, c.body.campaignId, ['completed', 'reverting', 'reverted', 'halted']);
    expect(done.status, await whyStopped(server, c.body.campaignId)).toBe('completed');
    expect(done.devices).toEqual({ updated: N });
    for (const a of agents) {
      expect(setOf(a)).toEqual(v2.map((m) => m.manifestSha256));
      expect(a.release).toEqual({ name: 'pipe', version: 2 });
    }
    const ev = await events(server, c.body.campaignId);
    expect(ev.filter((e) => e.type === 'wave_started').map((e) => e.detail.wave)).toEqual([1, 2]);
    expect(ev.filter((e) => e.type === 'gate_passed')).toHaveLength(2);
    const detail = await getCampaign(server, c.body.campaignId);
    expect(detail.deviceList.map((d) => d.wave).sort()).toEqual([0, 0, 1, 1]);
    // the device view shows each model it runs and the release
    const dev = (await server.app.inject({ method: 'GET', url: `/v1/devices/${agents[0].deviceId}` })).json();
    expect(dev.models.map((m: { modelId: string }) => m.modelId)).toEqual([...IDS]);
    expect(dev.release).toEqual({ name: 'pipe', version: 2 });
  });

  it('a release whose second model fails its health check halts in wave 1; every touched device is back on the old set, all models', async () => {
    const before = agents.map((a) => ({ set: setOf(a), artifacts: artifactsOf(a) }));
    const v2Artifacts = before[0].artifacts;
    expect(before.every((b) => b.artifacts.join() === v2Artifacts.join())).toBe(true);
    const v3 = await pushSet(true);
    expect((await release('pipe')).version).toBe(3);
    const c = await createCampaign(server, { release: 'pipe', waves: WAVES });
    expect(c.status, JSON.stringify(c.body)).toBe(201);
    const end = await waitForCampaign(server, c.body.campaignId, ['reverted', 'completed', 'halted']);
    expect(end.status).toBe('reverted');
    const detail = await getCampaign(server, c.body.campaignId);
    const touched = detail.deviceList.filter((d) => d.state !== 'pending');
    const untouched = detail.deviceList.filter((d) => d.state === 'pending');
    expect(touched).toHaveLength(2);
    expect(touched.every((d) => d.wave === 0)).toBe(true); // nothing beyond the first wave
    expect(untouched).toHaveLength(2);
    const failed = touched.filter((d) => d.state === 'failed');
    expect(failed.length).toBeGreaterThanOrEqual(1);
    for (const d of failed) expect(d.reason).toBe('LATENCY_BUDGET');
    expect(touched.every((d) => d.revertState === 'done')).toBe(true);
    const ev = await events(server, c.body.campaignId);
    expect(ev.filter((e) => e.type === 'gate_failed')).toHaveLength(1);
    expect(ev.find((e) => e.type === 'reverted')?.detail).toMatchObject({ done: 2 });
    const byId = new Map(agents.map((a, i) => [a.deviceId, { a, i }]));
    for (const d of touched) {
      const { a } = byId.get(d.deviceId)!;
      // the old set's three artifacts, all models, through newly signed higher versions; never one of v3's
      expect(a.activeSet.map((m) => m.modelId)).toEqual([...IDS]);
      expect(artifactsOf(a)).toEqual(v2Artifacts);
      expect(setOf(a).some((sha) => v3.some((m) => m.manifestSha256 === sha))).toBe(false);
      expect(a.release).toEqual({ name: 'pipe', version: 2 });
    }
    for (const d of untouched) expect(setOf(byId.get(d.deviceId)!.a)).toEqual(before[byId.get(d.deviceId)!.i].set);
  });

  it('a release whose second model is slow on the devices (after its health check) halts in wave 1 naming that model', async () => {
    const feedsOf = (id: (typeof IDS)[number]): Feeds => ({ x: { data: Float32Array.from({ length: WIDTH[id] }, (_, i) => Math.sin(i + 1) * 0.7), dims: [1, WIDTH[id]] } });
    // the device code's calls: emb one in 41, so the device's overall latency hides a slow emb
    let running = true;
    let failedCalls = 0;
    const work = agents.map(async (a) => {
      while (running) {
        for (const [id, n] of [['mel', 20], ['emb', 1], ['kws', 20]] as const) {
          for (let k = 0; k < n; k++) await a.infer(id, feedsOf(id)).catch(() => { failedCalls++; });
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    });
    const db = server.app.fleet.db;
    const embRows = (sha: string) => (db.prepare(`SELECT COUNT(*) AS n FROM telemetry_models WHERE model_id = 'emb' AND manifest_sha256 = ? AND count > errors`).get(sha) as { n: number }).n;
    try {
      // per-model telemetry on the set each device runs now: the "before" figures
      await waitFor('emb telemetry on every device', () => agents.every((a) => embRows(a.activeSet[1].manifestSha256) > 0));
      const v4 = await pushSet();
      for (const r of runtimes) r.faults.set(v4[1].artifactSha256, { kind: 'slow', ms: 5 });
      expect((await release('pipe')).version).toBe(4);
      const c = await createCampaign(server, {
        release: 'pipe', onGateFailure: 'pause',
        waves: [{ percent: 50, minDevices: 2, soakSeconds: 1, minReporting: 2, minInferences: 200 }, { percent: 100, soakSeconds: 1, minReporting: 2, minInferences: 200 }],
        gates: { maxP99Ratio: 10, sequential: { enabled: false } },
      });
      expect(c.status, JSON.stringify(c.body)).toBe(201);
      const end = await waitForCampaign(server, c.body.campaignId, ['halted', 'completed', 'reverted']);
      expect(end.status, await whyStopped(server, c.body.campaignId)).toBe('halted');
      expect(end.devices).toEqual({ updated: 2, pending: 2 });
      const ev = await events(server, c.body.campaignId);
      const gate = ev.find((e) => e.type === 'gate_failed')!;
      expect(gate.detail.wave).toBe(1);
      expect(gate.detail.failedModels).toEqual(['emb']);
      const failures = gate.detail.failures as string[];
      expect(failures.length).toBeGreaterThanOrEqual(1);
      // only emb's own figures failed: the device-wide figures passed (emb's calls are too few to move them)
      for (const f of failures) expect(f).toMatch(/^model emb: p9[59] latency 5\.00 ms is 5\.00x the previous model's 1\.00 ms/);
      expect(gate.detail.figures).toMatchObject({ 'emb:p95New': 5, 'emb:p95Old': 1, 'mel:p95Ratio': 1, 'kws:p95Ratio': 1, p95Ratio: 1 });
      expect(ev.find((e) => e.type === 'halted')?.detail).toEqual({ wave: 1, models: ['emb'] });
      // the device view shows each model's own telemetry
      const touched = (await getCampaign(server, c.body.campaignId)).deviceList.filter((d) => d.state === 'updated');
      expect(touched.map((d) => d.wave)).toEqual([0, 0]);
      const dev = (await server.app.inject({ method: 'GET', url: `/v1/devices/${touched[0].deviceId}` })).json();
      const emb = dev.modelTelemetry.models.find((m: { modelId: string; manifestSha256: string }) => m.modelId === 'emb' && m.manifestSha256 === v4[1].manifestSha256);
      expect(emb).toMatchObject({ p50: 5, p95: 5, errors: 0 });
      expect(emb.count).toBeGreaterThan(0);
      expect(dev.modelTelemetry.models.find((m: { modelId: string; manifestSha256: string }) => m.modelId === 'mel' && m.manifestSha256 === v4[0].manifestSha256)).toMatchObject({ p95: 1, errors: 0 });
      expect(dev.modelTelemetry.chain).toBeNull();
      const aborted = await server.app.inject({ method: 'POST', url: `/v1/campaigns/${c.body.campaignId}/abort` });
      expect(aborted.statusCode).toBe(200);
    } finally {
      running = false;
      await Promise.all(work);
    }
    expect(failedCalls).toBe(0);
  });
});
