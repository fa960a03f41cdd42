// The shadow phase's deadline (issue 17, shadow.maxSeconds): a wave whose devices never reach its
// shadow minimums (one refuses the candidate: SHADOW_MEMORY; one is offline) halts with SHADOW_TIMEOUT
// once the deadline passes, with the figures reached and the refusals by reason, and the candidate is
// unloaded everywhere (the desired states name no shadow any more). Real agents, broker and SQLite; the
// engine runs on the wall clock (app.ts does not take a clock), so the deadline is a few seconds and
// the test waits for the halt with a generous bound; the decision itself is table-tested with a
// controlled clock in shadow-gate.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetAgent } from '../../device-agent/agent.ts';
import type { Status } from '../../shared/messages.ts';
import { createCampaign, events, getCampaign, waitForCampaign } from '../helpers/campaigns.ts';
import { assign, pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { waitFor } from '../helpers/wait.ts';
import { outcome, startAgent } from '../agent/fixture.ts';

describe('shadow phase deadline', () => {
  let server: TestServer;
  const agents: FleetAgent[] = [];
  beforeAll(async () => { server = await startTestServer({ config: { rolloutTickMs: 50 } }); }, 60_000);
  afterAll(async () => {
    for (const a of agents) await a.stop();
    await server?.close();
  });

  it('halts with SHADOW_TIMEOUT, the figures reached and the refusals, and unloads the candidate everywhere', async () => {
    const v1 = await pushBundle(server, 'shadow-dl', tinyClassifier(91));
    const cand = await pushBundle(server, 'shadow-dl', tinyClassifier(92));
    // one device that cannot afford any shadow (a ceiling below any Node process), one that will be offline
    const refuser = await startAgent(server, 'shdl-mem', { shadow: { maxRssBytes: 1024 * 1024 } });
    const offline = await startAgent(server, 'shdl-off');
    agents.push(refuser, offline);
    const done = [outcome(refuser, v1.manifestSha256), outcome(offline, v1.manifestSha256)];
    await assign(server, v1.manifestSha256, [refuser.deviceId, offline.deviceId]);
    for (const d of done) expect((await d).state).toBe('active');
    await offline.stop();
    await waitFor(() => (server.app.fleet.db.prepare('SELECT online FROM devices WHERE device_id = ?').get(offline.deviceId) as { online: number }).online === 0, 20_000, 'the server sees the device offline');

    const refused = refuser.waitForStatus((s: Status) => s.manifestSha256 === cand.manifestSha256 && s.state === 'shadow_failed', 30_000);
    const created = await createCampaign(server, {
      manifestSha256: cand.manifestSha256, target: { deviceIds: [refuser.deviceId, offline.deviceId] },
      waves: [{ percent: 100, minDevices: 1, soakSeconds: 0, minReporting: 0, shadow: { minSamples: 10, minDevices: 1, soakSeconds: 0, sampleRate: 1, maxSeconds: 3 } }],
    });
    expect(created.status).toBe(201);
    const id = created.body.campaignId as string;
    expect((await refused).reason).toBe('SHADOW_MEMORY');
    await waitForCampaign(server, id, ['halted', 'completed', 'reverting', 'reverted'], 60_000);
    expect((await getCampaign(server, id)).status).toBe('halted');

    const ev = await events(server, id);
    const types = ev.map((e) => e.type);
    const started = ev.find((e) => e.type === 'shadow_started')!;
    expect(started.detail).toMatchObject({ wave: 1, devices: 2 });
    const timeout = ev.find((e) => e.type === 'shadow_timeout');
    expect(timeout, JSON.stringify(types)).toBeDefined();
    expect(timeout!.detail).toEqual({
      wave: 1, reason: 'SHADOW_TIMEOUT', why: 'the shadow phase ran out of time (maxSeconds 3) with 0/1 devices reporting, 0/10 inputs compared',
      devices: 0, minDevices: 1, samples: 0, minSamples: 10, maxSeconds: 3, refused: { byReason: { SHADOW_MEMORY: 1 }, silent: 1 },
    });
    expect(ev.find((e) => e.type === 'halted')!.detail).toEqual({ wave: 1, inShadow: true, reason: 'SHADOW_TIMEOUT' });
    expect(ev.find((e) => e.type === 'shadow_unloaded')!.detail).toEqual({ devices: 2, reason: 'shadow phase timed out' });
    expect(types).not.toContain('shadow_gate_passed');
    expect(types).not.toContain('shadow_gate_failed');
    // unloaded everywhere: the signed desired state of both devices names no shadow, and neither runs the candidate
    for (const d of [refuser.deviceId, offline.deviceId]) {
      const row = server.app.fleet.db.prepare('SELECT desired_json, active_manifest_sha256 AS active FROM devices WHERE device_id = ?').get(d) as { desired_json: string; active: string };
      expect(row.active).toBe(v1.manifestSha256);
      expect(row.desired_json).not.toContain(cand.manifestSha256);
    }
    // the campaign view's shadow wave, and the device views: nothing held any more
    expect((await getCampaign(server, id) as unknown as { shadow: unknown[] }).shadow).toEqual([
      { wave: 1, state: 'failed', startedAt: expect.any(String), finishedAt: expect.any(String), devices: 0, samples: 0, figures: { samples: 0, errorRate: 0, latencyRatio: null, agreement: null }, groups: [] },
    ]);
    for (const d of [refuser.deviceId, offline.deviceId]) expect((await server.app.inject({ method: 'GET', url: `/v1/devices/${d}` })).json().shadow).toBeNull();
    expect(refuser.shadowCandidate).toBeNull();
    expect(refuser.active?.manifestSha256).toBe(v1.manifestSha256);
  }, 120_000);
});
