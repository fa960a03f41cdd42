// GET/POST /v1/fleet/shape on a real server with real agents: counts per class and tag set, online share,
// telemetry figures from the devices' own reports; bad queries are clear 400s, no token a 401.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tinyClassifier } from '../../firmware-sim/sample-models.ts';
import type { SimulatedFleet } from '../../firmware-sim/fleet.ts';
import { FleetShape } from '../../shared/api/fleet-shape.ts';
import { tinyInputs, tinyReference } from '../helpers/campaigns.ts';
import { assign, pushBundle, startFleet, startTestServer, type TestServer } from '../helpers/harness.ts';

describe('/v1/fleet/shape', { timeout: 120_000 }, () => {
  let server: TestServer;
  let fleet: SimulatedFleet;
  let sha: string;

  beforeAll(async () => {
    server = await startTestServer();
    // 6 devices: 4 rpi4 (2 tagged eu), 2 jetson; one jetson goes offline
    fleet = await startFleet(server, { count: 6, telemetryWindowMs: 300, hardware: (i) => (i < 4 ? 'rpi4' : 'jetson'), tags: (i) => (i < 2 ? ['eu'] : []) });
    sha = (await pushBundle(server, 'm', tinyClassifier(1), { quantize: 'none', reference: tinyReference() })).manifestSha256;
    await assign(server, sha, fleet.agents.map((a) => a.deviceId));
    await fleet.waitAll((s) => s.state === 'active', 60_000);
    fleet.startWorkload({ ratePerSecond: 10, inputs: tinyInputs });
    // every device reports telemetry on the model at least twice
    const deadline = Date.now() + 60_000;
    while ((server.app.fleet.db.prepare('SELECT COUNT(DISTINCT device_id) AS n FROM telemetry WHERE manifest_sha256 = ? AND count > 0').get(sha) as { n: number }).n < 6) {
      if (Date.now() > deadline) throw new Error('no telemetry');
      await new Promise((r) => setTimeout(r, 100));
    }
    fleet.stopWorkload();
    await fleet.agents[5].stop();
    const d2 = Date.now() + 30_000;
    while ((server.app.fleet.db.prepare('SELECT online FROM devices WHERE device_id = ?').get(fleet.agents[5].deviceId) as { online: number }).online !== 0) {
      if (Date.now() > d2) throw new Error('still online');
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  afterAll(async () => {
    await fleet?.stop();
    await server?.close();
  });

  it('describes the fleet from its records', async () => {
    const res = await server.app.inject({ method: 'GET', url: '/v1/fleet/shape' });
    expect(res.statusCode, res.body).toBe(200);
    const s = FleetShape.parse(res.json());
    expect([s.devices, s.online]).toEqual([6, 5]);
    expect(s.window.seconds).toBe(3600);
    expect(s.classes.map((c) => [c.hardware, c.devices, c.online])).toEqual([['rpi4', 4, 4], ['jetson', 2, 1]]);
    expect(s.classes[0].tagSets).toEqual([{ tags: ['eu'], devices: 2, online: 2 }, { tags: [], devices: 2, online: 2 }]);
    expect(s.classes[0].currentModels).toEqual([{ manifestSha256: sha, modelId: 'm', version: 1, devices: 4 }]);
    const rows = server.app.fleet.db.prepare(`SELECT SUM(t.count) AS n, COUNT(DISTINCT t.device_id) AS d FROM telemetry t JOIN devices d ON d.device_id = t.device_id WHERE d.hardware = 'rpi4' AND t.manifest_sha256 = ?`).get(sha) as { n: number; d: number };
    expect(s.classes[0].telemetry.inferences).toBe(rows.n);
    expect(s.classes[0].telemetry.reportingDevices).toBe(4);
    expect(s.classes[0].telemetry.errors).toBe(0);
    expect(s.classes[0].telemetry.inferencesPerSecond).toBeGreaterThan(0);
    expect(s.classes[0].telemetry.latencyMs).not.toBeNull();
  });

  it('takes a campaign target: by query and by body', async () => {
    const q = FleetShape.parse((await server.app.inject({ method: 'GET', url: '/v1/fleet/shape?hardware=rpi4&tags=eu&windowSeconds=60' })).json());
    expect([q.devices, q.classes.length, q.window.seconds]).toEqual([2, 1, 60]);
    const b = await server.app.inject({ method: 'POST', url: '/v1/fleet/shape', payload: { target: { currentModel: { modelId: 'm' }, hardware: ['jetson'] } } });
    expect(b.statusCode, b.body).toBe(200);
    expect(FleetShape.parse(b.json()).devices).toBe(2);
    const none = FleetShape.parse((await server.app.inject({ method: 'GET', url: '/v1/fleet/shape?modelId=other' })).json());
    expect([none.devices, none.classes]).toEqual([0, []]);
  });

  it.each([
    ['GET', '/v1/fleet/shape?windowSeconds=1', undefined, 'query.windowSeconds'],
    ['GET', '/v1/fleet/shape?modelVersion=2', undefined, 'query.modelVersion: modelVersion needs modelId'],
    ['GET', '/v1/fleet/shape?bogus=1', undefined, 'query: Unrecognized key'],
    ['POST', '/v1/fleet/shape', { target: { hardware: 'rpi4' } }, 'body.target.hardware'],
    ['POST', '/v1/fleet/shape', { target: {}, extra: 1 }, 'body: Unrecognized key'],
  ] as const)('%s %s %j is a 400 naming %s', async (method, url, payload, msg) => {
    const res = await server.app.inject({ method, url, ...(payload ? { payload } : {}) });
    expect(res.statusCode, res.body).toBe(400);
    expect(res.json().error).toBe('FLEET_ERR_VALIDATION');
    expect(res.json().message).toContain(msg);
  });

  it('needs a token', async () => {
    expect((await server.anonInject({ method: 'GET', url: '/v1/fleet/shape' })).statusCode).toBe(401);
  });
});
