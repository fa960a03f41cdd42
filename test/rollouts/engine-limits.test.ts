// Rate limit, per-device retries and the per-device deadline, on a real server whose devices are
// played by status and presence messages published into its broker (no agents: the timing is ours).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { topics } from '../../shared/topics.ts';
import { AGENT_VERSION } from '../../shared/version.ts';
import { pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { createCampaign, getCampaign, events } from '../helpers/campaigns.ts';
import { until } from '../helpers/wait.ts';

const ids = Array.from({ length: 10 }, (_, i) => `fake-${i}`);

describe('campaign limits', () => {
  let server: TestServer;
  let manifestSha256: string;
  const say = (deviceId: string, kind: 'presence' | 'status', msg: object) =>
    server.app.fleet.broker.publish(topics[kind](deviceId), JSON.stringify({ deviceId, ts: new Date().toISOString(), ...msg }), { qos: 1, retain: false });
  const assignedSeq = (campaignId: string, deviceId: string) =>
    (server.app.fleet.db.prepare('SELECT assigned_seq AS s, attempts AS a FROM campaign_devices WHERE campaign_id = ? AND device_id = ?').get(campaignId, deviceId) as { s: number; a: number });

  beforeAll(async () => {
    server = await startTestServer({ config: { rolloutTickMs: 50 } });
    for (const id of ids) await say(id, 'presence', { online: true, hardware: 'rpi4', agentVersion: AGENT_VERSION });
    await until(async () => (await server.app.inject({ method: 'GET', url: '/v1/devices' })).json().devices.length, (n) => n === 10);
    manifestSha256 = (await pushBundle(server, 'tiny', tinyClassifier(1))).manifestSha256;
  });
  afterAll(async () => { await server?.close(); });

  it('assigns no more devices per minute than the rate limit', async () => {
    const c = await createCampaign(server, { manifestSha256, target: { deviceIds: ids }, waves: [{ percent: 100, soakSeconds: 0 }], rateLimitPerMinute: 4 });
    expect(c.status).toBe(201);
    await new Promise((r) => setTimeout(r, 500)); // ten ticks
    const v = await getCampaign(server, c.body.campaignId);
    expect(v.devices).toEqual({ assigned: 4, pending: 6 });
    await server.app.inject({ method: 'POST', url: `/v1/campaigns/${c.body.campaignId}/abort` });
  });

  it('assigns a failed device again (CRASH_RECOVERY) with a new sequence number up to maxRetries, shown in the device and campaign views, then counts it as failed', async () => {
    const c = await createCampaign(server, { manifestSha256, target: { deviceIds: ['fake-0', 'fake-1'] }, waves: [{ percent: 100, soakSeconds: 3600 }], maxRetries: 1, gates: { failureCount: 5 } });
    expect(c.status).toBe(201);
    const id = c.body.campaignId;
    const first = assignedSeq(id, 'fake-0');
    expect(first.a).toBe(1);
    const deviceView = async () => (await server.app.inject({ method: 'GET', url: '/v1/devices/fake-0' })).json().campaign;
    expect(await deviceView()).toEqual({ campaignId: id, campaignStatus: 'running', wave: 1, state: 'assigned', attempts: 1, maxRetries: 1, assignedSeq: first.s, reason: null, revertState: null });
    // an update a restart cut short: assigned again
    await say('fake-0', 'status', { state: 'failed', reason: 'CRASH_RECOVERY', manifestSha256, directorSeq: first.s, active: null, agentVersion: AGENT_VERSION });
    const second = await until(async () => assignedSeq(id, 'fake-0'), (r) => r.a === 2 && r.s !== first.s);
    expect(second.s).toBeGreaterThan(first.s); // a new signed desired state, not the old one again
    const desired = (await server.app.inject({ method: 'GET', url: '/v1/devices/fake-0' })).json().desired;
    expect(desired).toEqual({ manifestSha256, seq: second.s });
    // visible in the device view and the campaign view: the second attempt, with the reason of the first
    expect(await deviceView()).toEqual({ campaignId: id, campaignStatus: 'running', wave: 1, state: 'assigned', attempts: 2, maxRetries: 1, assignedSeq: second.s, reason: 'CRASH_RECOVERY', revertState: null });
    expect((await getCampaign(server, id)).deviceList.find((d) => d.deviceId === 'fake-0')).toMatchObject({ state: 'assigned', attempts: 2, reason: 'CRASH_RECOVERY' });
    // a report about the first assignment, arriving late, changes nothing
    await say('fake-0', 'status', { state: 'failed', reason: 'CRASH_RECOVERY', manifestSha256, directorSeq: first.s, active: null, agentVersion: AGENT_VERSION });
    await say('fake-0', 'status', { state: 'failed', reason: 'DOWNLOAD_FAILED', manifestSha256, directorSeq: second.s, active: null, agentVersion: AGENT_VERSION });
    const row = await until(async () => (await getCampaign(server, id)).deviceList.find((d) => d.deviceId === 'fake-0')!, (d) => d.state === 'failed');
    expect(row).toMatchObject({ attempts: 2, reason: 'DOWNLOAD_FAILED' });
    expect(await deviceView()).toMatchObject({ state: 'failed', attempts: 2, assignedSeq: second.s, reason: 'DOWNLOAD_FAILED' });
    expect(assignedSeq(id, 'fake-0')).toEqual(second); // bounded: no third assignment
    await server.app.inject({ method: 'POST', url: `/v1/campaigns/${id}/abort` });
  });

  it('a wave whose desired states could not be signed stays pending and is assigned on the next pass, not left waiting for its deadline', async () => {
    const keys = server.app.fleet.keys;
    const signerFor = keys.signerFor.bind(keys);
    let failures = 0;
    keys.signerFor = ((role: Parameters<typeof signerFor>[0]) => {
      if (failures++ === 0) throw new Error('simulated: the server failed between deciding and signing');
      return signerFor(role);
    }) as typeof keys.signerFor;
    try {
      const c = await createCampaign(server, { manifestSha256, target: { deviceIds: ['fake-7', 'fake-8'] }, waves: [{ percent: 100, soakSeconds: 3600 }] });
      expect(c.status).toBe(201);
      // the first pass failed before any desired state was signed; nothing was recorded as assigned
      expect(failures).toBeGreaterThanOrEqual(1);
      const v = await until(() => getCampaign(server, c.body.campaignId), (x) => x.deviceList.every((d) => d.state === 'assigned'));
      expect(v.deviceList.map((d) => [d.deviceId, d.attempts]).sort()).toEqual([['fake-7', 1], ['fake-8', 1]]);
      for (const id of ['fake-7', 'fake-8']) expect(assignedSeq(c.body.campaignId, id).s).toBe((server.app.fleet.db.prepare('SELECT desired_seq AS s FROM devices WHERE device_id = ?').get(id) as { s: number }).s);
      await server.app.inject({ method: 'POST', url: `/v1/campaigns/${c.body.campaignId}/abort` });
    } finally {
      keys.signerFor = signerFor;
    }
  });

  it('counts a device that stays silent past its deadline as failed, and the gate halts', async () => {
    const c = await createCampaign(server, { manifestSha256, target: { deviceIds: ['fake-5', 'fake-6'] }, waves: [{ percent: 100, soakSeconds: 0 }], deviceDeadlineSeconds: 1, onGateFailure: 'pause' });
    expect(c.status).toBe(201);
    const v = await until(() => getCampaign(server, c.body.campaignId), (x) => x.status === 'halted', 5000);
    expect(v.deviceList.map((d) => [d.state, d.reason])).toEqual([['failed', 'DEADLINE'], ['failed', 'DEADLINE']]);
    const ev = await events(server, c.body.campaignId);
    expect(ev.find((e) => e.type === 'devices_timed_out')?.detail).toEqual({ devices: 2 });
    expect((ev.find((e) => e.type === 'gate_failed')?.detail.failures as string[])[0]).toMatch(/failures 2 of 2 devices/);
  });
});
