// Maintenance windows and conditions end to end: a real server running campaigns whose policy is signed
// into each desired state, real agents over loopback with a simulated window clock and conditions
// reported through their local HTTP API, real onnxruntime sessions. Waiting devices are neither failed
// nor late; the campaign view counts them by reason.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentDeps, FleetAgent } from '../../device-agent/agent.ts';
import type { AgentConfigInput } from '../../device-agent/config.ts';
import { FaultRuntime } from './fault-runtime.ts';
import { startLocalHttp } from '../../device-agent/local-http.ts';
import type { Status } from '../../shared/messages.ts';
import { pushBundle, assign, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { createCampaign, getCampaign } from '../helpers/campaigns.ts';
import { waitFor } from '../helpers/wait.ts';
import { outcome, settled, startAgent } from './fixture.ts';
import { topics } from '../../shared/topics.ts';
import { AGENT_VERSION } from '../../shared/version.ts';

const ALL_DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
const ONE_WAVE = [{ percent: 100, soakSeconds: 0 }];

describe('maintenance windows and conditions', () => {
  let server: TestServer;
  const stops: (() => Promise<void>)[] = [];
  beforeAll(async () => { server = await startTestServer(); }, 60_000);
  afterAll(async () => { for (const s of stops.reverse()) await s(); await server?.close(); });

  /** An agent with its own window clock (epoch ms, moved by the test) and local HTTP API. */
  async function device(deviceId: string, timeZone: string, clock: { t: number }, tags: string[] = [], over: Partial<AgentConfigInput> = {}, deps: AgentDeps = {}) {
    const artifacts: string[] = [];
    const statuses: Status[] = [];
    const agent = await startAgent(server, deviceId, { timeZone, conditionPollSeconds: 3600, tags, ...over }, {
      ...deps,
      windowClock: () => clock.t,
      fetch: (input, init) => { const u = String(input); if (u.includes('/v1/artifacts/')) artifacts.push(u.split('/').pop()!); return fetch(input, init); },
    });
    agent.on('status', (s: Status) => statuses.push(s));
    const http = await startLocalHttp(agent, 0);
    stops.push(() => agent.stop(), () => http.close());
    const post = async (path: string, body: unknown) => {
      const res = await fetch(`http://127.0.0.1:${http.port}${path}`, { method: 'POST', body: JSON.stringify(body) });
      return { status: res.status, body: await res.json() };
    };
    await waitFor(() => !!server.app.fleet.db.prepare('SELECT 1 FROM devices WHERE device_id = ? AND online = 1').get(deviceId), 10_000, `${deviceId} online`);
    return { agent, artifacts, statuses, post };
  }
  const row = (campaignId: string, deviceId: string) => server.app.fleet.db.prepare('SELECT state, reason, wait_reason, deadline_from FROM campaign_devices WHERE campaign_id = ? AND device_id = ?').get(campaignId, deviceId) as
    { state: string; reason: string | null; wait_reason: string | null; deadline_from: number | null };

  it('a wave outside its download window (in the device\'s own time zone) does not download until it opens, and is never late', async () => {
    // 17:30 UTC on Monday: 02:30 on Tuesday in Tokyo (inside 02:00-04:00), 18:30 in Berlin (outside)
    const clock = { t: Date.parse('2026-11-30T17:30:00Z') };
    const tokyo = await device('win-tokyo', 'Asia/Tokyo', clock);
    const berlin = await device('win-berlin', 'Europe/Berlin', clock);
    const v1 = await pushBundle(server, 'windowed', tinyClassifier(21));
    const tokyoDone = outcome(tokyo.agent, v1.manifestSha256);
    const berlinWaits = settled(berlin.agent, v1.manifestSha256, ['waiting']);
    const created = await createCampaign(server, {
      manifestSha256: v1.manifestSha256, target: { deviceIds: ['win-tokyo', 'win-berlin'] }, waves: ONE_WAVE, deviceDeadlineSeconds: 3,
      policy: { downloadWindows: [{ days: ALL_DAYS, start: '02:00', end: '04:00' }] },
    });
    expect(created.status).toBe(201);
    const id = created.body.campaignId as string;
    expect((await tokyoDone).state).toBe('active');
    const waiting = await berlinWaits;
    expect([waiting.reason, waiting.detail]).toEqual(['WAIT_WINDOW', 'download waits: WAIT_WINDOW']);
    await waitFor(() => row(id, 'win-berlin').wait_reason === 'WAIT_WINDOW', 10_000, 'server knows Berlin waits');
    // past the 3 s deadline, several engine ticks later: still assigned and waiting, not failed
    await new Promise((r) => setTimeout(r, 4000));
    expect(row(id, 'win-berlin')).toMatchObject({ state: 'assigned', wait_reason: 'WAIT_WINDOW' });
    expect(berlin.artifacts).toEqual([]);
    const view = await getCampaign(server, id) as Awaited<ReturnType<typeof getCampaign>> & { deviceWaits: Record<string, number> };
    expect(view.deviceWaits).toEqual({ WAIT_WINDOW: 1 });
    expect(view.devices).toEqual({ updated: 1, assigned: 1 });
    // 02:30 on Tuesday in Berlin: the window opens
    const berlinDone = outcome(berlin.agent, v1.manifestSha256);
    clock.t = Date.parse('2026-12-01T01:30:00Z');
    berlin.agent.gate.poke();
    expect((await berlinDone).state).toBe('active');
    expect(berlin.artifacts).toEqual([v1.manifest.artifact.sha256]);
    await waitFor(() => row(id, 'win-berlin').state === 'updated', 10_000, 'Berlin updated');
    const r = row(id, 'win-berlin');
    expect(r.reason).toBeNull();
    expect(r.deadline_from).toBeGreaterThan(0); // the deadline ran from when the window opened
    expect((await getCampaign(server, id) as unknown as { deviceWaits: Record<string, number> }).deviceWaits).toEqual({});
  }, 60_000);

  it('on battery below the level the device waits, then updates when plugged in', async () => {
    const clock = { t: Date.now() };
    const d = await device('bat-1', 'UTC', clock);
    expect(await d.post('/v1/conditions', { onCharger: false, batteryPercent: 20 })).toEqual({ status: 200, body: expect.objectContaining({ onCharger: false, batteryPercent: 20, busy: false }) });
    expect((await d.post('/v1/conditions', { batteryPercent: 120 })).status).toBe(400);
    const v1 = await pushBundle(server, 'battery', tinyClassifier(22));
    const waits = settled(d.agent, v1.manifestSha256, ['waiting']);
    const created = await createCampaign(server, { manifestSha256: v1.manifestSha256, target: { deviceIds: ['bat-1'] }, waves: ONE_WAVE, policy: { conditions: { minBatteryPercent: 50 } } });
    expect(created.status).toBe(201);
    expect((await waits).reason).toBe('WAIT_BATTERY');
    await waitFor(() => row(created.body.campaignId, 'bat-1').wait_reason === 'WAIT_BATTERY', 10_000, 'server knows bat-1 waits');
    expect(d.artifacts).toEqual([]);
    const done = outcome(d.agent, v1.manifestSha256);
    expect((await d.post('/v1/conditions', { onCharger: true })).status).toBe(200);
    expect((await done).state).toBe('active');
    expect(d.artifacts).toEqual([v1.manifest.artifact.sha256]);
    await waitFor(() => row(created.body.campaignId, 'bat-1').state === 'updated', 10_000, 'bat-1 updated');
  }, 60_000);

  it('a device that says it is busy: the switch waits, the old model answers, no infer() fails', async () => {
    const clock = { t: Date.now() };
    const d = await device('busy-1', 'UTC', clock);
    const v1 = await pushBundle(server, 'busy', tinyClassifier(23));
    const v2 = await pushBundle(server, 'busy', tinyClassifier(24));
    const first = outcome(d.agent, v1.manifestSha256);
    await assign(server, v1.manifestSha256, ['busy-1']);
    expect((await first).state).toBe('active');
    await waitFor(() => (server.app.fleet.db.prepare('SELECT active_manifest_sha256 AS m FROM devices WHERE device_id = ?').get('busy-1') as { m: string }).m === v1.manifestSha256, 10_000, 'server knows v1');
    expect(await d.post('/v1/busy', { busy: true })).toEqual({ status: 200, body: { busy: true } });
    expect((await d.post('/v1/busy', { busy: 'yes' })).status).toBe(400);
    // the device's own workload, all along
    let calls = 0, failures = 0, running = true;
    const answeredBy = new Set<string>();
    const workload = (async () => {
      while (running) {
        try {
          await d.agent.infer({ x: { data: new Float32Array(8).fill(0.25), dims: [1, 8] } });
          answeredBy.add(d.agent.active!.manifestSha256);
          calls++;
        } catch { failures++; }
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const waits = settled(d.agent, v2.manifestSha256, ['waiting']);
    const created = await createCampaign(server, { manifestSha256: v2.manifestSha256, target: { deviceIds: ['busy-1'] }, waves: ONE_WAVE, policy: { conditions: { notBusy: true } } });
    expect(created.status).toBe(201);
    const w = await waits;
    expect([w.reason, w.detail]).toEqual(['WAIT_BUSY', 'switch waits: WAIT_BUSY']);
    // downloaded and health-checked already; still answering with v1
    expect(d.artifacts).toEqual([v1.manifest.artifact.sha256, v2.manifest.artifact.sha256]);
    const before = calls;
    await waitFor(() => calls >= before + 20, 10_000, 'inferences while the switch waits');
    expect(d.agent.active?.manifestSha256).toBe(v1.manifestSha256);
    const done = outcome(d.agent, v2.manifestSha256);
    await d.post('/v1/busy', { busy: false });
    expect((await done).state).toBe('active');
    const after = calls;
    await waitFor(() => calls >= after + 20, 10_000, 'inferences after the switch');
    running = false;
    await workload;
    expect(failures).toBe(0);
    expect([...answeredBy].sort()).toEqual([v1.manifestSha256, v2.manifestSha256].sort());
    await waitFor(() => row(created.body.campaignId, 'busy-1').state === 'updated', 10_000, 'busy-1 updated');
  }, 60_000);

  it('a model on probation that fails is reverted at once, even while a newer update waits for its switch window', async () => {
    const clock = { t: Date.parse('2026-11-30T12:00:00Z') };
    const runtime = new FaultRuntime({ deviceMs: 1 });
    const d = await device('probe-w', 'UTC', clock, [], { probationInferences: 20, probationSeconds: 0, probationMaxErrorRate: 0.05 }, runtime.deps());
    const [v1, v2, v3] = [await pushBundle(server, 'probe-w', tinyClassifier(27)), await pushBundle(server, 'probe-w', tinyClassifier(28)), await pushBundle(server, 'probe-w', tinyClassifier(29))];
    const x = { x: { data: new Float32Array(8).fill(0.5), dims: [1, 8] } };
    const passed = settled(d.agent, v1.manifestSha256, ['probation_passed']);
    await assign(server, v1.manifestSha256, ['probe-w']);
    await settled(d.agent, v1.manifestSha256, ['active']);
    for (let i = 0; i < 20; i++) await d.agent.infer(x);
    await passed;
    await waitFor(() => (server.app.fleet.db.prepare('SELECT active_manifest_sha256 AS m FROM devices WHERE device_id = ?').get('probe-w') as { m: string }).m === v1.manifestSha256, 10_000, 'server knows v1');
    runtime.faults.set(v2.manifest.artifact.sha256, { kind: 'error' });
    const onV2 = settled(d.agent, v2.manifestSha256, ['active']);
    await assign(server, v2.manifestSha256, ['probe-w']);
    await onV2;
    expect(d.agent.onProbation).toBe(true);
    // v3's switch may happen only on Sundays: it downloads, checks, and waits
    const waits = settled(d.agent, v3.manifestSha256, ['waiting']);
    const created = await createCampaign(server, { manifestSha256: v3.manifestSha256, target: { deviceIds: ['probe-w'] }, waves: ONE_WAVE, policy: { switchWindows: [{ days: ['sun'], start: '00:00', end: '24:00' }] } });
    expect(created.status).toBe(201);
    expect((await waits).reason).toBe('WAIT_WINDOW');
    const dropped = settled(d.agent, v3.manifestSha256, ['rejected']);
    const reverted = settled(d.agent, v2.manifestSha256, ['reverted']);
    for (let i = 0; i < 3; i++) await d.agent.infer(x).catch(() => undefined); // v2 fails on probation
    expect((await reverted).reason).toBe('PROBATION_FAILED');
    expect((await dropped).reason).toBe('SUPERSEDED');
    expect(d.agent.active?.manifestSha256).toBe(v1.manifestSha256);
  }, 60_000);

  it('an agent stopped while an update waits reports nothing then; after the restart it is assigned again and waits again', async () => {
    await server.app.inject({ method: 'PUT', url: '/v1/tag-policies/sleepy', payload: { downloadWindows: [{ days: ALL_DAYS, start: '01:00', end: '03:00' }] } });
    stops.push(async () => { await server.app.inject({ method: 'DELETE', url: '/v1/tag-policies/sleepy' }); });
    const clock = { t: Date.parse('2026-11-30T12:00:00Z') };
    const first = await device('restart-w', 'UTC', clock, ['sleepy']);
    await waitFor(() => (server.app.fleet.db.prepare('SELECT tags_json AS t FROM devices WHERE device_id = ?').get('restart-w') as { t: string }).t.includes('sleepy'), 10_000, 'tags known');
    const v1 = await pushBundle(server, 'restart-w', tinyClassifier(30));
    const waits = settled(first.agent, v1.manifestSha256, ['waiting']);
    await assign(server, v1.manifestSha256, ['restart-w']);
    const w1 = await waits;
    await first.agent.stop();
    expect(first.statuses.filter((s) => s.manifestSha256 === v1.manifestSha256).map((s) => s.state)).toEqual(['waiting']);
    const again = await device('restart-w', 'UTC', clock, ['sleepy']);
    // the restart reports the interrupted update (CRASH_RECOVERY); the server assigns it again (a new seq) and it waits again
    const w2 = await settled(again.agent, v1.manifestSha256, ['waiting']);
    expect(w2.directorSeq).toBeGreaterThan(w1.directorSeq!);
    expect(server.app.fleet.db.prepare("SELECT state, reason FROM status_events WHERE device_id = 'restart-w' AND reason = 'CRASH_RECOVERY'").all()).toEqual([{ state: 'failed', reason: 'CRASH_RECOVERY' }]);
    const done = outcome(again.agent, v1.manifestSha256);
    clock.t = Date.parse('2026-12-01T01:30:00Z');
    again.agent.gate.poke();
    expect((await done).state).toBe('active');
    await waitFor(() => (server.app.fleet.db.prepare("SELECT state FROM plain_assignments WHERE device_id = 'restart-w'").get() as { state: string }).state === 'done', 10_000, 'plain assignment done');
    expect(server.app.fleet.db.prepare("SELECT attempts, state FROM plain_assignments WHERE device_id = 'restart-w'").get()).toEqual({ attempts: 2, state: 'done' });
  }, 60_000);

  it('a campaign device restarted while it waits is assigned again without using up an attempt (maxRetries 0)', async () => {
    const clock = { t: Date.parse('2026-11-30T12:00:00Z') };
    const first = await device('reboot-w', 'UTC', clock);
    const v1 = await pushBundle(server, 'reboot-w', tinyClassifier(31));
    const waits = settled(first.agent, v1.manifestSha256, ['waiting']);
    const created = await createCampaign(server, {
      manifestSha256: v1.manifestSha256, target: { deviceIds: ['reboot-w'] }, waves: ONE_WAVE, deviceDeadlineSeconds: 3,
      policy: { downloadWindows: [{ days: ALL_DAYS, start: '01:00', end: '03:00' }] },
    });
    expect(created.status).toBe(201);
    const id = created.body.campaignId as string;
    const w1 = await waits;
    await waitFor(() => row(id, 'reboot-w').wait_reason === 'WAIT_WINDOW', 10_000, 'server knows it waits');
    await first.agent.stop();
    const attempts = () => (server.app.fleet.db.prepare("SELECT attempts FROM campaign_devices WHERE campaign_id = ? AND device_id = 'reboot-w'").get(id) as { attempts: number }).attempts;
    expect(attempts()).toBe(1);

    // the restart reports the interrupted update (CRASH_RECOVERY): not a failure of the update, it waits again
    const again = await device('reboot-w', 'UTC', clock);
    const w2 = await settled(again.agent, v1.manifestSha256, ['waiting']);
    expect(w2.directorSeq).toBeGreaterThan(w1.directorSeq!);
    await waitFor(() => row(id, 'reboot-w').wait_reason === 'WAIT_WINDOW', 10_000, 'server knows it waits again');
    expect(row(id, 'reboot-w')).toMatchObject({ state: 'assigned', reason: 'CRASH_RECOVERY' });
    expect(attempts()).toBe(1);
    const done = outcome(again.agent, v1.manifestSha256);
    clock.t = Date.parse('2026-12-01T01:30:00Z');
    again.agent.gate.poke();
    expect((await done).state).toBe('active');
    await waitFor(() => row(id, 'reboot-w').state === 'updated', 10_000, 'updated');
    expect(attempts()).toBe(1);
    expect(server.app.fleet.db.prepare("SELECT state, reason FROM status_events WHERE device_id = 'reboot-w' AND reason = 'CRASH_RECOVERY'").all()).toEqual([{ state: 'failed', reason: 'CRASH_RECOVERY' }]);
  }, 60_000);

  it('a device that claims to wait when what the server signed for it has no policy is timed out as usual', async () => {
    const say = (deviceId: string, kind: 'presence' | 'status', msg: object) =>
      server.app.fleet.broker.publish(topics[kind](deviceId), JSON.stringify({ deviceId, ts: new Date().toISOString(), ...msg }), { qos: 1, retain: false });
    await say('liar-1', 'presence', { online: true, hardware: 'generic', agentVersion: AGENT_VERSION });
    await waitFor(() => !!server.app.fleet.db.prepare("SELECT 1 FROM devices WHERE device_id = 'liar-1'").get(), 10_000, 'liar-1 known');
    const v1 = await pushBundle(server, 'liar', tinyClassifier(26));
    const created = await createCampaign(server, { manifestSha256: v1.manifestSha256, target: { deviceIds: ['liar-1'] }, waves: ONE_WAVE, deviceDeadlineSeconds: 2, onGateFailure: 'pause' });
    expect(created.status).toBe(201);
    const id = created.body.campaignId as string;
    await waitFor(() => row(id, 'liar-1').state === 'assigned', 10_000, 'liar-1 assigned');
    const seq = (server.app.fleet.db.prepare('SELECT assigned_seq AS s FROM campaign_devices WHERE campaign_id = ? AND device_id = ?').get(id, 'liar-1') as { s: number }).s;
    await say('liar-1', 'status', { state: 'waiting', reason: 'WAIT_WINDOW', manifestSha256: v1.manifestSha256, directorSeq: seq, active: null, agentVersion: AGENT_VERSION });
    await waitFor(() => !!server.app.fleet.db.prepare("SELECT 1 FROM status_events WHERE device_id = 'liar-1' AND state = 'waiting'").get(), 10_000, 'the claim arrived');
    expect(row(id, 'liar-1').wait_reason).toBeNull();
    await waitFor(() => row(id, 'liar-1').state === 'failed', 15_000, 'liar-1 timed out');
    expect(row(id, 'liar-1').reason).toBe('DEADLINE');
  }, 60_000);

  it('a device group by tag: its policy is signed into plain assignments of devices with the tag, and refused when malformed', async () => {
    const bad = await server.app.inject({ method: 'PUT', url: '/v1/tag-policies/night', payload: { downloadWindows: [{ days: ['mon'], start: '9:00', end: '10:00' }] } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().message).toMatch(/downloadWindows\.0\.start/);
    const policy = { downloadWindows: [{ days: ALL_DAYS, start: '01:00', end: '03:00' }] };
    const put = await server.app.inject({ method: 'PUT', url: '/v1/tag-policies/night', payload: policy, headers: { 'x-fleet-actor': 'alice' } });
    expect(put.statusCode).toBe(200);
    expect(put.json()).toMatchObject({ tag: 'night', policy, updatedBy: 'alice' });
    expect((await server.app.inject({ method: 'GET', url: '/v1/tag-policies' })).json().policies.map((p: { tag: string }) => p.tag)).toContain('night');
    const clock = { t: Date.parse('2026-11-30T12:00:00Z') };
    const d = await device('tag-1', 'UTC', clock, ['night', 'zone-a']);
    await waitFor(() => (server.app.fleet.db.prepare('SELECT tags_json AS t FROM devices WHERE device_id = ?').get('tag-1') as { t: string }).t.includes('night'), 10_000, 'tags known');
    const v1 = await pushBundle(server, 'tagged', tinyClassifier(25));
    const waits = settled(d.agent, v1.manifestSha256, ['waiting']);
    await assign(server, v1.manifestSha256, ['tag-1']);
    expect((await waits).reason).toBe('WAIT_WINDOW');
    const desired = JSON.parse(JSON.parse((server.app.fleet.db.prepare('SELECT desired_json AS j FROM devices WHERE device_id = ?').get('tag-1') as { j: string }).j).director.signed);
    expect(desired.policy).toEqual(policy);
    expect(d.artifacts).toEqual([]);
    const done = outcome(d.agent, v1.manifestSha256);
    clock.t = Date.parse('2026-12-01T01:30:00Z');
    d.agent.gate.poke();
    expect((await done).state).toBe('active');
    expect((await server.app.inject({ method: 'DELETE', url: '/v1/tag-policies/night' })).json()).toEqual({ deleted: true });
    expect((await server.app.inject({ method: 'DELETE', url: '/v1/tag-policies/night' })).json()).toEqual({ deleted: false });
  }, 60_000);
});
