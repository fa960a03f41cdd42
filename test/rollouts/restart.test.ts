// A campaign survives a server restart in the middle of a wave and completes without updating any
// device twice.
import { afterAll, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import type { SimulatedFleet } from '../../firmware-sim/fleet.ts';
import type { Status } from '../../shared/messages.ts';
import { assign, pushBundle, startFleet, startTestServer, tempDir, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { createCampaign, FAST_WAVES, getCampaign, whyStopped, tinyInputs, tinyReference, waitForCampaign } from '../helpers/campaigns.ts';

const N = 200;
let server: TestServer;
let fleet: SimulatedFleet;
const dir = tempDir('fleet-restart-');

afterAll(async () => {
  await fleet?.stop();
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

it('carries a campaign on across a server restart mid-wave, updating each device once', async () => {
  server = await startTestServer({ dir });
  // The server is down for a few seconds: with the product's 30 s reconnect ceiling (up to 60 s with
  // jitter) a device that backed off a few times could still be offline when the wait below ends, which
  // says nothing about what this test is about (campaign state surviving a restart); 2 s keeps it short.
  // 1 s telemetry windows, not 250 ms: a quarter of the offline fsyncs (see below), and the gates still
  // get their figures within a second or two.
  // v1 and v2 run alike: devices report a modelled 2 ms per inference (device time), so the campaign's
  // latency gate judges the models, not the host (on a CI host busy with the kill trials, host time read
  // 1.51x for the same kind of model and the gate halted the campaign in wave 2).
  fleet = await startFleet(server, {
    count: N, hardware: (i) => (i % 2 ? 'cam-a' : 'cam-b'), telemetryWindowMs: 1000, agentOverrides: { reconnectMaxMs: 2000 },
    faults: () => ({ latency: { baseMs: 2 } }), // (the bundles' health-check budget is 5 s, as in campaigns.test.ts: the test is not about it)
  });
  const v1 = await pushBundle(server, 'tiny', tinyClassifier(1), { quantize: 'none', reference: tinyReference(), healthCheck: { latencyBudgetMs: 5000 } });
  await assign(server, v1.manifestSha256, fleet.agents.map((a) => a.deviceId));
  await fleet.waitAll((_s, a) => a.active?.manifestSha256 === v1.manifestSha256, 60_000);
  fleet.startWorkload({ ratePerSecond: 5, inputs: tinyInputs });

  const v2 = await pushBundle(server, 'tiny', tinyClassifier(2), { quantize: 'none', reference: tinyReference(), healthCheck: { latencyBudgetMs: 5000 } });
  const installs = new Map<string, number>();
  for (const a of fleet.agents) {
    a.on('status', (s: Status) => {
      if (s.state === 'downloading' && s.manifestSha256 === v2.manifestSha256) installs.set(a.deviceId, (installs.get(a.deviceId) ?? 0) + 1);
    });
  }
  const waves = FAST_WAVES.map((w, i) => (i === 2 ? { ...w, soakSeconds: 4 } : w));
  const c = await createCampaign(server, { manifestSha256: v2.manifestSha256, waves });
  expect(c.status).toBe(201);

  // wait until wave 3 (50%) is installed and soaking, then stop the server
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { deviceList: _omit, ...v } = await getCampaign(server, c.body.campaignId);
    if (v.wave === 3 && v.devices.updated === N / 2) break;
    if (Date.now() > deadline || v.status !== 'running') throw new Error(`never reached wave 3: ${JSON.stringify(v)} ${await whyStopped(server, c.body.campaignId)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const ports = { httpPort: Number(new URL(server.baseUrl).port), mqttPort: Number(new URL(server.mqttUrl).port) };
  await server.app.close();
  await new Promise((r) => setTimeout(r, 500));
  expect(fleet.agents.filter((a) => a.active?.manifestSha256 === v2.manifestSha256)).toHaveLength(N / 2);

  server = await startTestServer({ dir, ...ports });
  // Some devices take tens of seconds to come back after the restart. Measured (MQTT events per device):
  // their CONNECT reaches the restarted broker at once, the CONNACK comes 3-10 s later or not within the
  // agent's 10 s connect timeout (then again). The cause is the simulation's density, not the broker: each
  // offline agent writes every telemetry window to its durable outbox with two synchronous fsyncs, and 200
  // agents with 250 ms windows in the server's own process make hundreds of fsyncs a second on one event
  // loop (60 agents: all reconnected in 12.5 s with them, 5.2 s without, 2.9 s with 60 s windows). A real
  // device does two fsyncs per (60 s) window. The claim here is that the campaign completes with each
  // device updated once; restart-points.test.ts restarts mid-download and mid-wave-advance.
  const done = await waitForCampaign(server, c.body.campaignId, ['completed', 'reverted', 'halted'], 150_000);
  expect(done.status, await whyStopped(server, c.body.campaignId)).toBe('completed');
  expect(done.devices).toEqual({ updated: N });
  await fleet.waitAll((_s, a) => a.active?.manifestSha256 === v2.manifestSha256, 30_000);
  expect(installs.size).toBe(N);
  expect([...installs.values()].every((n) => n === 1)).toBe(true);
  const ev = (await server.app.inject({ method: 'GET', url: `/v1/campaigns/${c.body.campaignId}/events` })).json().events as { type: string }[];
  expect(ev.filter((e) => e.type === 'wave_started')).toHaveLength(4);
  // assigned once each: one attempt, and the desired state the device holds is the one the campaign recorded
  const rows = server.app.fleet.db.prepare('SELECT cd.attempts AS a, cd.assigned_seq AS seq, d.desired_seq AS desired FROM campaign_devices cd JOIN devices d ON d.device_id = cd.device_id WHERE cd.campaign_id = ?').all(c.body.campaignId) as { a: number; seq: number; desired: number }[];
  expect(rows).toHaveLength(N);
  expect(rows.filter((r) => r.a !== 1 || r.seq !== r.desired)).toEqual([]);
}, 300_000);
