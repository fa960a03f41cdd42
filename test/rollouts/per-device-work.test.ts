// Issue 13 (server CPU per device in a rollout): what the server stopped doing per device or per tick,
// and that each shortcut answers exactly as the full work did. A real server and broker; devices are
// played by presence and status messages published into the broker.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { topics } from '../../shared/topics.ts';
import { AGENT_VERSION } from '../../shared/version.ts';
import { pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { createCampaign, events, getCampaign } from '../helpers/campaigns.ts';
import { until } from '../helpers/wait.ts';

describe('per-device work of a rollout (issue 13)', () => {
  let server: TestServer;
  let v1: { manifestSha256: string; version: number };
  const ids = ['pd-0', 'pd-1', 'pd-2', 'pd-3'];
  const say = (deviceId: string, kind: 'presence' | 'status', msg: object) =>
    server.app.fleet.broker.publish(topics[kind](deviceId), JSON.stringify({ deviceId, ts: new Date().toISOString(), ...msg }), { qos: 1, retain: false });
  const deviceRow = (id: string) => server.app.fleet.db.prepare('SELECT active_manifest_sha256 AS active, active_version AS version, claimed_active_json AS claim, last_state AS state FROM devices WHERE device_id = ?').get(id) as
    { active: string | null; version: number | null; claim: string | null; state: string | null };

  beforeAll(async () => {
    server = await startTestServer({ config: { rolloutTickMs: 50 } });
    for (const id of ids) await say(id, 'presence', { online: true, hardware: 'rpi4', agentVersion: AGENT_VERSION });
    await until(async () => (await server.app.inject({ method: 'GET', url: '/v1/devices' })).json().devices.length, (n) => n === ids.length);
    const b = await pushBundle(server, 'tiny', tinyClassifier(1));
    v1 = { manifestSha256: b.manifestSha256, version: b.version };
  }, 60_000);
  afterAll(async () => { await server?.close(); });

  it("a device's active model is fact only once the server assigned it: an answer of 'not assigned' is never remembered, an assignment is, per device", async () => {
    const active = { modelId: 'tiny', version: v1.version, manifestSha256: v1.manifestSha256 };
    // never assigned: a claim
    await say('pd-0', 'status', { state: 'active', active, agentVersion: AGENT_VERSION, detail: 'first' });
    expect(await until(() => deviceRow('pd-0'), (r) => r.state === 'active')).toEqual({ active: null, version: null, claim: JSON.stringify(active), state: 'active' });
    // the director assigns it to pd-0 only: pd-0's next report is fact, pd-1's the same report stays a claim
    await server.app.fleet.director.assign(v1.manifestSha256, ['pd-0']);
    await say('pd-0', 'status', { state: 'downloading', active, agentVersion: AGENT_VERSION });
    expect(await until(() => deviceRow('pd-0'), (r) => r.state === 'downloading')).toEqual({ active: v1.manifestSha256, version: v1.version, claim: null, state: 'downloading' });
    await say('pd-1', 'status', { state: 'verifying', active, agentVersion: AGENT_VERSION });
    expect(await until(() => deviceRow('pd-1'), (r) => r.state === 'verifying')).toEqual({ active: null, version: null, claim: JSON.stringify(active), state: 'verifying' });
    // and again (the remembered assignment answers the same)
    await say('pd-0', 'status', { state: 'active', active, agentVersion: AGENT_VERSION, detail: 'third' });
    expect(await until(() => deviceRow('pd-0'), (r) => r.state === 'active')).toEqual({ active: v1.manifestSha256, version: v1.version, claim: null, state: 'active' });
    // every status stored once: 3 for pd-0, 1 for pd-1
    const n = server.app.fleet.db.prepare("SELECT device_id AS d, COUNT(*) AS n FROM status_events WHERE device_id IN ('pd-0', 'pd-1') GROUP BY device_id ORDER BY device_id").all();
    expect(n).toEqual([{ d: 'pd-0', n: 3 }, { d: 'pd-1', n: 1 }]);
  });

  it('silent devices fail with DEADLINE once their deadline passed, never before (the per-tick scan is skipped until a deadline can have passed)', async () => {
    const c = await createCampaign(server, { manifestSha256: v1.manifestSha256, target: { deviceIds: ['pd-2', 'pd-3'] }, waves: [{ percent: 100, soakSeconds: 0 }], deviceDeadlineSeconds: 2, onGateFailure: 'pause' });
    expect(c.status).toBe(201);
    const id = c.body.campaignId as string;
    const created = Date.parse((server.app.fleet.db.prepare('SELECT created_at FROM campaigns WHERE campaign_id = ?').get(id) as { created_at: string }).created_at);
    const v = await until(() => getCampaign(server, id), (x) => x.status === 'halted', 15_000);
    expect(v.deviceList.map((d) => [d.deviceId, d.state, d.reason]).sort()).toEqual([['pd-2', 'failed', 'DEADLINE'], ['pd-3', 'failed', 'DEADLINE']]);
    const finished = server.app.fleet.db.prepare('SELECT finished_at AS f FROM campaign_devices WHERE campaign_id = ?').all(id) as { f: number }[];
    for (const { f } of finished) expect(f - created).toBeGreaterThanOrEqual(2000);
    expect((await events(server, id)).filter((e) => e.type === 'devices_timed_out').map((e) => e.detail)).toEqual([{ devices: 2 }]);
  });

  it('a device that appears during a campaign and matches its target joins the next wave once; one that does not match, or is already in it, does not', async () => {
    for (const id of ['lj-0', 'lj-1']) await say(id, 'presence', { online: true, hardware: 'jetson', agentVersion: AGENT_VERSION });
    await until(() => server.app.fleet.db.prepare("SELECT COUNT(*) AS n FROM devices WHERE hardware = 'jetson'").get() as { n: number }, (r) => r.n === 2);
    const c = await createCampaign(server, { manifestSha256: v1.manifestSha256, target: { hardware: ['jetson'] },
      waves: [{ percent: 50, soakSeconds: 3600 }, { percent: 100, soakSeconds: 0 }], onGateFailure: 'pause' });
    expect(c.status).toBe(201);
    const id = c.body.campaignId as string;
    await say('lj-2', 'presence', { online: true, hardware: 'jetson', agentVersion: AGENT_VERSION });
    await say('lj-3', 'presence', { online: true, hardware: 'rpi4', agentVersion: AGENT_VERSION });
    const rows = () => server.app.fleet.db.prepare('SELECT device_id AS d, wave, state FROM campaign_devices WHERE campaign_id = ? ORDER BY device_id').all(id) as { d: string; wave: number; state: string }[];
    const joined = await until(rows, (r) => r.length === 3, 20_000);
    expect(joined.find((r) => r.d === 'lj-2')).toEqual({ d: 'lj-2', wave: 1, state: 'pending' });
    expect(joined.map((r) => r.d)).toEqual(['lj-0', 'lj-1', 'lj-2']);
    // another pass of the late-joiner check (every 5 s) adds nobody twice
    await new Promise((r) => setTimeout(r, 5500));
    expect(rows().map((r) => r.d)).toEqual(['lj-0', 'lj-1', 'lj-2']);
    expect((await events(server, id)).filter((e) => e.type === 'devices_joined').map((e) => e.detail)).toEqual([{ devices: 1, wave: 2 }]);
  }, 40_000);

  it("migration 13: a campaign's progress per state is read from the index alone, and the engine's other lookups by state use it", () => {
    const db = server.app.fleet.db;
    const plan = (sql: string, ...args: unknown[]) => (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...args) as { detail: string }[]).map((r) => r.detail).join(' | ');
    expect(plan('SELECT state, COUNT(*) AS n, MAX(finished_at) AS last FROM campaign_devices WHERE campaign_id = ? AND wave <= ? GROUP BY state', 'x', 0))
      .toBe('SEARCH campaign_devices USING COVERING INDEX campaign_devices_state (campaign_id=?)');
    expect(plan(`SELECT device_id FROM campaign_devices WHERE campaign_id = ? AND wave <= ? AND state IN ('pending', 'retry') ORDER BY ordinal LIMIT ?`, 'x', 0, -1))
      .toMatch(/^SEARCH campaign_devices USING INDEX campaign_devices_state \(campaign_id=\? AND state=\? AND wave<\?\)/);
    expect(plan(`UPDATE campaign_devices SET state = 'failed' WHERE campaign_id = ? AND state = 'assigned' AND wait_reason IS NULL AND COALESCE(deadline_from, assigned_at) < ?`, 'x', 0))
      .toBe('SEARCH campaign_devices USING INDEX campaign_devices_state (campaign_id=? AND state=?)');
    // the counts the engine decides from, exact for the campaign above (2 failed, finished after its deadline)
    const id = (db.prepare("SELECT campaign_id AS id FROM campaigns WHERE status = 'halted'").get() as { id: string }).id;
    const p = server.app.fleet.rollouts.store.progress(id, 0);
    expect({ ...p, settledAt: typeof p.settledAt }).toEqual({ inWaves: 2, pending: 0, inFlight: 0, updated: 0, failed: 2, reverted: 0, settledAt: 'number' });
    const last = (db.prepare('SELECT MAX(finished_at) AS m FROM campaign_devices WHERE campaign_id = ?').get(id) as { m: number }).m;
    expect(p.settledAt).toBe(last);
  });
});
