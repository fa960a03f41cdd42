// The sequential canary test on a real server with a simulated fleet over loopback: a candidate as fast
// as the previous model completes, and a 3x latency candidate is halted in wave 1 by the sequential test.
// Devices report modelled device time (FaultProfile latency), so the verdict is about the models, not
// about how busy this machine is.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SimulatedFleet } from '../../firmware-sim/fleet.ts';
import type { FaultProfile } from '../../firmware-sim/faults.ts';
import { assign, pushBundle, startFleet, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { createCampaign, events, getCampaign, tinyInputs, tinyReference, waitForCampaign, whyStopped } from '../helpers/campaigns.ts';

const N = 30;
const WAVES = [
  { percent: 20, minDevices: 5, soakSeconds: 10, minReporting: 3, minInferences: 20 },
  { percent: 100, soakSeconds: 10, minReporting: 3, minInferences: 20 },
];

describe('the sequential gate on 30 simulated devices', { timeout: 200_000 }, () => {
  let server: TestServer;
  let fleet: SimulatedFleet;
  // devices of different speeds (4..13 ms of device time per inference)
  const profiles: FaultProfile[] = Array.from({ length: N }, (_, i) => ({ latency: { baseMs: 4 + (i % 10), factorByArtifact: {} }, brokenArtifacts: {} }));
  let seed = 300;
  const push = () => pushBundle(server, 'tiny', tinyClassifier(seed++), { quantize: 'none', reference: tinyReference(), healthCheck: { latencyBudgetMs: 5000 } });

  beforeAll(async () => {
    server = await startTestServer();
    fleet = await startFleet(server, { count: N, hardware: (i) => ['cam-a', 'cam-b'][i % 2], telemetryWindowMs: 1000, faults: (i) => profiles[i] });
    const v1 = await push();
    await assign(server, v1.manifestSha256, fleet.agents.map((a) => a.deviceId));
    await fleet.waitAll((_s, a) => a.active?.manifestSha256 === v1.manifestSha256, 150_000);
    fleet.startWorkload({ ratePerSecond: 20, inputs: tinyInputs });
    await new Promise((r) => setTimeout(r, 4000)); // telemetry windows on the previous model
  }, 200_000);

  afterAll(async () => {
    await fleet?.stop();
    await server?.close();
  });

  it('refuses bad sequential settings with a 400 naming the field', async () => {
    const v = await push();
    const bad = await createCampaign(server, { manifestSha256: v.manifestSha256, gates: { sequential: { alpha: 0.9 } } });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toBe('FLEET_ERR_VALIDATION');
    expect(bad.body.message).toMatch(/gates\.sequential\.alpha/);
    const order = await createCampaign(server, { manifestSha256: v.manifestSha256, gates: { sequential: { latencyMargin: 1.05 } } });
    expect(order.status).toBe(400);
    expect(order.body.message).toMatch(/gates\.sequential\.latencyHaltRatio: latencyHaltRatio must be below latencyMargin/);
  });

  it('completes a candidate as fast as the previous model: wave 1 (4 devices, too few for the test) by the fixed limits, wave 2 on the test', async () => {
    const good = await push();
    // a small test fleet of a tiny model cannot show the error rate within 1 point: margins a small fleet can show
    const gates = { sequential: { errorMarginPoints: 5, errorHaltPoints: 2 } };
    const waves = [{ ...WAVES[0], percent: 10, minDevices: 4 }, { ...WAVES[1], soakSeconds: 60 }];
    const c = await createCampaign(server, { manifestSha256: good.manifestSha256, waves, gates });
    expect(c.status).toBe(201);
    const end = await waitForCampaign(server, c.body.campaignId, ['completed', 'reverting', 'reverted', 'halted'], 150_000);
    expect(end.status, await whyStopped(server, c.body.campaignId)).toBe('completed');
    expect(end.devices).toEqual({ updated: N });
    const passed = (await events(server, c.body.campaignId)).filter((e) => e.type === 'gate_passed');
    const why = JSON.stringify(passed.map((e) => e.detail));
    expect(passed.map((e) => e.detail.wave), why).toEqual([1, 2]);
    expect((passed[0].detail.warnings as string[]).join(), why).toMatch(/sequential test unavailable: 4 devices have telemetry on their previous model, the test needs 5; judged by the fixed limits alone/);
    const seq2 = passed[1].detail.sequential as { decision: string; devices: { observed: number; observedInWave: number }; latency: { estimate: number; state: string } };
    expect(seq2.decision, JSON.stringify(seq2)).toBe('advance');
    expect(passed[1].detail.warnings, why).toEqual([]); // on the test, before the 60 s soak maximum
    // as soon as 5 of the wave's own devices are observed and both metrics are shown within their margins
    expect(seq2.devices.observedInWave, why).toBeGreaterThanOrEqual(5);
    expect(seq2.devices.observed, why).toBeLessThanOrEqual(N);
    expect(seq2.latency.state).toBe('non-inferior');
    expect(seq2.latency.estimate).toBeCloseTo(1, 6); // modelled device time: the same on both models
    await new Promise((r) => setTimeout(r, 2500)); // telemetry on this model, the next campaign's previous one
  });

  it('halts a 3x latency candidate in wave 1 on the sequential test and reverts the wave, touching no other device', async () => {
    const slow = await push();
    profiles.forEach((p) => { p.latency!.factorByArtifact![slow.manifest.artifact.sha256] = 3; });
    const c = await createCampaign(server, { manifestSha256: slow.manifestSha256, waves: WAVES });
    const end = await waitForCampaign(server, c.body.campaignId, ['completed', 'reverted', 'halted'], 150_000);
    expect(end.status).toBe('reverted');
    expect(end.wave).toBe(1);
    const ev = await events(server, c.body.campaignId);
    const gate = ev.find((e) => e.type === 'gate_failed')!;
    expect(gate.detail.wave).toBe(1);
    expect((gate.detail.failures as string[])[0]).toMatch(/^sequential test: latency shown worse on \d+ devices, p95 ratio \d\.\d{3}/);
    const seq = gate.detail.sequential as { decision: string; latency: { estimate: number; lowerBound: number; haltAbove: number } };
    expect(seq.decision).toBe('halt');
    expect(seq.latency.estimate).toBeGreaterThan(1.5); // 3x device time, read through the telemetry's p95
    expect(seq.latency.lowerBound).toBeGreaterThan(seq.latency.haltAbove);
    const detail = await getCampaign(server, c.body.campaignId) as Awaited<ReturnType<typeof getCampaign>> & { statistics: { decision: string } | null };
    expect(detail.statistics?.decision).toBe('halt');
    const touched = detail.deviceList.filter((d) => d.state !== 'pending');
    expect(touched.length).toBe(6);
    expect(touched.every((d) => d.wave === 0)).toBe(true);
  });
});
