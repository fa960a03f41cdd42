// Staged rollouts on a simulated fleet of 200 devices running the real agent over loopback.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SimulatedFleet } from '../../firmware-sim/fleet.ts';
import type { FaultProfile } from '../../firmware-sim/faults.ts';
import { assign, pushBundle, startFleet, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { createCampaign, events, whyStopped, FAST_WAVES, getCampaign, tinyInputs, tinyReference, waitForCampaign } from '../helpers/campaigns.ts';

const N = 200;
const HARDWARE = ['cam-a', 'cam-b', 'cam-c', 'cam-d'];

describe('staged rollout campaigns on 200 simulated devices', { timeout: 150_000 }, () => {
  let server: TestServer;
  let fleet: SimulatedFleet;
  const profiles: FaultProfile[] = Array.from({ length: N }, () => ({ latency: { baseMs: 20, factorByArtifact: {} }, brokenArtifacts: {} }));
  let seed = 10;
  const push = (extra: Record<string, unknown> = {}) => pushBundle(server, 'tiny', tinyClassifier(seed++), { quantize: 'none', reference: tinyReference(), healthCheck: { latencyBudgetMs: 5000 }, ...extra });
  const activeArtifact = (i: number) => fleet.agents[i].active?.manifestSha256;

  beforeAll(async () => {
    server = await startTestServer();
    fleet = await startFleet(server, {
      count: N, hardware: (i) => HARDWARE[i % 4], telemetryWindowMs: 250, faults: (i) => profiles[i],
    });
    // every device starts on v1, with telemetry on it (the latency gate compares against it)
    const v1 = await push();
    await assign(server, v1.manifestSha256, fleet.agents.map((a) => a.deviceId));
    // generous: on a loaded 2-core machine 17 of 200 devices were still in their health check after 60 s
    await fleet.waitAll((s, a) => a.active?.manifestSha256 === v1.manifestSha256, 150_000);
    fleet.startWorkload({ ratePerSecond: 5, inputs: tinyInputs });
    await new Promise((r) => setTimeout(r, 1500));
  }, 300_000);

  afterAll(async () => {
    await fleet?.stop();
    await server?.close();
  });

  it('refuses a campaign whose devices already belong to an unfinished one', async () => {
    const v = await push();
    const first = await createCampaign(server, { manifestSha256: v.manifestSha256, target: { hardware: ['cam-a'] }, waves: [{ percent: 100, soakSeconds: 3600 }] });
    expect(first.status).toBe(201);
    const second = await createCampaign(server, { manifestSha256: v.manifestSha256, target: { deviceIds: [fleet.agents[0].deviceId, fleet.agents[1].deviceId] } });
    expect(second.status).toBe(409);
    expect(second.body.error).toBe('FLEET_ERR_CAMPAIGN_CONFLICT');
    expect(second.body.message).toContain(first.body.campaignId);
    expect(second.body.message).toContain(fleet.agents[0].deviceId);
    // device 1 (cam-b) is not in the first campaign: only device 0 conflicts
    expect(second.body.details.devices).toEqual([fleet.agents[0].deviceId]);
    const aborted = await server.app.inject({ method: 'POST', url: `/v1/campaigns/${first.body.campaignId}/abort`, headers: { 'x-fleet-actor': 'bob' } });
    expect(aborted.json().status).toBe('aborted');
    const ev = await events(server, first.body.campaignId);
    expect(ev.find((e) => e.type === 'manual_action')?.actor).toBe('bob');
    expect(ev[0]).toMatchObject({ type: 'created', actor: 'alice' });
  });

  it('takes a good model through every wave to 100% of the fleet', async () => {
    const v = await push();
    const c = await createCampaign(server, { manifestSha256: v.manifestSha256, waves: FAST_WAVES });
    expect(c.status).toBe(201);
    const done = await waitForCampaign(server, c.body.campaignId, ['completed', 'reverting', 'reverted', 'halted']);
    expect(done.status, await whyStopped(server, c.body.campaignId)).toBe('completed');
    expect(done.devices).toEqual({ updated: N });
    for (let i = 0; i < N; i++) expect(activeArtifact(i)).toBe(v.manifestSha256);
    const ev = await events(server, c.body.campaignId);
    expect(ev.filter((e) => e.type === 'gate_passed')).toHaveLength(4);
    expect(ev.filter((e) => e.type === 'wave_started').map((e) => e.detail.wave)).toEqual([1, 2, 3, 4]);
  });

  it('halts in the first wave a model that breaks on one hardware class, touches nothing else, and reverts', async () => {
    const before = fleet.agents.map((a) => a.active?.manifestSha256);
    const v = await push();
    profiles.forEach((p, i) => { if (HARDWARE[i % 4] === 'cam-c') p.brokenArtifacts![v.manifest.artifact.sha256] = 'wrong-output'; });
    const c = await createCampaign(server, { manifestSha256: v.manifestSha256, waves: FAST_WAVES });
    const end = await waitForCampaign(server, c.body.campaignId, ['reverted', 'completed', 'halted']);
    expect(end.status).toBe('reverted');
    const detail = await getCampaign(server, c.body.campaignId);
    const touched = detail.deviceList.filter((d) => d.state !== 'pending');
    expect(touched.length).toBeGreaterThanOrEqual(5);
    expect(touched.every((d) => d.wave === 0)).toBe(true); // nothing beyond the first wave
    expect(detail.deviceList.filter((d) => d.wave === 0).length).toBe(5);
    const failedOnC = touched.filter((d) => d.state === 'failed');
    expect(failedOnC.length).toBeGreaterThan(0);
    const ev = await events(server, c.body.campaignId);
    const gate = ev.find((e) => e.type === 'gate_failed')!;
    expect((gate.detail.failures as string[]).join()).toMatch(/failures \d+ of \d+ devices/);
    // devices outside the wave never got the bad model's desired state
    const touchedIds = new Set(touched.map((d) => d.deviceId));
    const rows = server.app.fleet.db.prepare('SELECT device_id, desired_manifest_sha256 FROM devices').all() as { device_id: string; desired_manifest_sha256: string }[];
    for (const r of rows) if (!touchedIds.has(r.device_id)) expect(r.desired_manifest_sha256).not.toBe(v.manifestSha256);
    // every touched device runs its previous artifact again, through a newer version
    const artifactOf = (sha: string | undefined) => sha && server.app.fleet.director.bundleEnvelope(sha).manifest.artifact.sha256;
    await fleet.waitAll((_s, a) => {
      const i = fleet.agents.indexOf(a);
      return !touchedIds.has(a.deviceId) || artifactOf(a.active?.manifestSha256) === artifactOf(before[i]);
    }, 30_000);
    for (const [i, a] of fleet.agents.entries()) {
      if (!touchedIds.has(a.deviceId)) expect(a.active?.manifestSha256).toBe(before[i]);
      else expect(server.app.fleet.director.bundleEnvelope(a.active!.manifestSha256).manifest.lineage.revertOf).toBeDefined();
    }
  });

  it('halts a model with a 2x latency regression at its gate, while a 5% slower one passes', async () => {
    const slow = await push();
    profiles.forEach((p) => { p.latency!.factorByArtifact![slow.manifest.artifact.sha256] = 2; });
    const c1 = await createCampaign(server, { manifestSha256: slow.manifestSha256, waves: FAST_WAVES });
    const end1 = await waitForCampaign(server, c1.body.campaignId, ['reverted', 'completed', 'halted']);
    expect(end1.status).toBe('reverted');
    const gate1 = (await events(server, c1.body.campaignId)).find((e) => e.type === 'gate_failed')!;
    expect((gate1.detail.failures as string[]).join()).toMatch(/p95 latency .* is [\d.]+x the previous model/);
    expect((gate1.detail.figures as { p95Ratio: number }).p95Ratio).toBeGreaterThan(1.5);
    await new Promise((r) => setTimeout(r, 1000)); // telemetry on the reverted model

    const ok = await push();
    profiles.forEach((p) => { p.latency!.factorByArtifact![ok.manifest.artifact.sha256] = 1.05; });
    const c2 = await createCampaign(server, { manifestSha256: ok.manifestSha256, waves: FAST_WAVES });
    const end2 = await waitForCampaign(server, c2.body.campaignId, ['reverted', 'completed', 'halted']);
    expect(end2.status, await whyStopped(server, c2.body.campaignId)).toBe('completed');
  });

  it('halts a model whose inputs drift, on the PSI gate', async () => {
    await new Promise((r) => setTimeout(r, 1000));
    const v = await push();
    profiles.forEach((p) => { p.inputDrift = { offset: 0.6 }; });
    try {
      const c = await createCampaign(server, { manifestSha256: v.manifestSha256, waves: FAST_WAVES });
      const end = await waitForCampaign(server, c.body.campaignId, ['reverted', 'completed', 'halted']);
      expect(end.status).toBe('reverted');
      const gate = (await events(server, c.body.campaignId)).find((e) => e.type === 'gate_failed')!;
      expect((gate.detail.failures as string[]).join()).toMatch(/drift on input:x: PSI [\d.]+ \((alert|critical)/);
    } finally {
      profiles.forEach((p) => { delete p.inputDrift; });
    }
  });
});
