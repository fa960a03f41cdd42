// A campaign across two server restarts at the points where a lost step would strand devices: while the
// first wave is fetching the artifact (every fetch cut half-way when the server dies), and while the
// engine advances to the next wave (its desired states signed and committed, none published yet). Each
// device is assigned once, fetches exactly what it needs (the cut devices resume with a Range request),
// installs once, and the campaign completes.
import { afterAll, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import type { SimulatedFleet } from '../../firmware-sim/fleet.ts';
import type { Status } from '../../shared/messages.ts';
import { topics } from '../../shared/topics.ts';
import { assign, pushBundle, startFleet, startTestServer, tempDir, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { createCampaign, events, getCampaign, tinyInputs, tinyReference, waitForCampaign, whyStopped } from '../helpers/campaigns.ts';
import { waitFor } from '../helpers/wait.ts';

const N = 30;
const WAVE1 = 6; // 20% of 30
const WAVES = [
  { percent: 20, minDevices: WAVE1, soakSeconds: 0.5, minReporting: 3, minInferences: 20 },
  { percent: 100, soakSeconds: 0.5, minReporting: 3, minInferences: 20 },
];
let server: TestServer;
let fleet: SimulatedFleet;
const dir = tempDir('fleet-restart-points-');

afterAll(async () => {
  await fleet?.stop();
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A promise and its resolver. */
function gate(): { open: () => void; opened: Promise<void> } {
  let open = () => {};
  const opened = new Promise<void>((r) => { open = r; });
  return { open, opened };
}

it('restarted mid-download and mid-wave-advance: every device assigned once, installed once, the cut downloads resumed', async () => {
  // The simulated network between devices and server, for the candidate's artifact only: a device's first
  // fetch delivers half the bytes and then breaks when the server dies; fetches after that wait until the
  // server is back (a device's retry while it is down would only fail on a closed port). Counted: the
  // requests that reached the server, and the Range each one asked for.
  let candidateArtifact = '';
  const serverDown = gate();
  const serverUp = gate();
  const fetched = new Map<string, (string | null)[]>();
  const cutMidway = new Set<string>();
  let serverGone = false;
  const deviceFetch = (deviceId: string): typeof fetch => async (input, init) => {
    const url = String(input instanceof Request ? input.url : input);
    if (!candidateArtifact || !url.includes(candidateArtifact)) return fetch(input, init);
    const first = !fetched.has(deviceId);
    if (!first) await serverUp.opened;
    const range = new Headers(init?.headers).get('range');
    // a request refused at the door (the HTTP port not yet listening) never reached the server
    const res = await fetch(input, init);
    fetched.set(deviceId, [...(fetched.get(deviceId) ?? []), range]);
    if (!first || serverGone || !res.body) return res;
    const bytes = new Uint8Array(await res.arrayBuffer());
    const half = bytes.subarray(0, bytes.length >> 1);
    return new Response(new ReadableStream<Uint8Array>({
      async start(c) {
        c.enqueue(half);
        cutMidway.add(deviceId);
        await serverDown.opened;
        c.error(new Error('connection reset: the server went away'));
      },
    }), { status: res.status, headers: res.headers });
  };

  server = await startTestServer({ dir });
  const ids = Array.from({ length: N }, (_, i) => `sim-${String(i).padStart(5, '0')}`);
  fleet = await startFleet(server, {
    count: N, telemetryWindowMs: 250,
    // v1 and v2 run alike: devices report a modelled 2 ms per inference (device time), so the campaign's
    // latency gate judges the models, not how busy the host is (a loaded CI host once read 1.51x)
    faults: () => ({ latency: { baseMs: 2 } }), // (the bundles' health-check budget is 5 s, as in campaigns.test.ts: the test is not about it)
    // a per-attempt download timeout longer than a restart on a loaded machine: the attempt waiting for the
    // server must not be abandoned and counted as a failure
    agentOverrides: { reconnectMaxMs: 2000, download: { retries: 3, backoffMs: 100, timeoutMs: 120_000 } },
    agentDeps: (i) => ({ fetch: deviceFetch(ids[i]) }),
  });
  const v1 = await pushBundle(server, 'tiny', tinyClassifier(1), { quantize: 'none', reference: tinyReference(), healthCheck: { latencyBudgetMs: 5000 } });
  await assign(server, v1.manifestSha256, ids);
  await fleet.waitAll((_s, a) => a.active?.manifestSha256 === v1.manifestSha256, 90_000);
  fleet.startWorkload({ ratePerSecond: 5, inputs: tinyInputs });

  const v2 = await pushBundle(server, 'tiny', tinyClassifier(2), { quantize: 'none', reference: tinyReference(), healthCheck: { latencyBudgetMs: 5000 } });
  candidateArtifact = v2.manifest.artifact.sha256;
  const installs = new Map<string, number>();
  for (const a of fleet.agents) {
    a.on('status', (s: Status) => {
      if (s.state === 'downloading' && s.manifestSha256 === v2.manifestSha256) installs.set(a.deviceId, (installs.get(a.deviceId) ?? 0) + 1);
    });
  }
  await new Promise((r) => setTimeout(r, 1000)); // telemetry on v1 for the gates
  const c = await createCampaign(server, { manifestSha256: v2.manifestSha256, waves: WAVES });
  expect(c.status).toBe(201);
  const id = c.body.campaignId as string;
  const ports = { httpPort: Number(new URL(server.baseUrl).port), mqttPort: Number(new URL(server.mqttUrl).port) };

  // ---- restart 1: the first wave is half-way through its downloads --------------------------------
  await waitFor(() => cutMidway.size === WAVE1, 60_000, `the ${WAVE1} devices of wave 1 mid-download`);
  const wave1 = new Set(cutMidway);
  await server.app.close();
  serverGone = true;
  serverDown.open();
  server = await startTestServer({ dir, ...ports });

  // ---- restart 2: the engine advances to wave 2, its desired states are committed, none published ----
  const held: string[] = [];
  const advanced = gate();
  const broker = server.app.fleet.broker;
  const publish = broker.publish.bind(broker);
  broker.publish = async (topic, payload, o) => {
    const deviceId = ids.find((d) => topic === topics.desired(d));
    if (deviceId && !wave1.has(deviceId) && String(payload).includes(v2.manifestSha256)) {
      held.push(deviceId); // lost with the server
      advanced.open();
      return;
    }
    return publish(topic, payload, o);
  };
  serverUp.open();
  await advanced.opened;
  await server.app.close();
  expect(new Set(held).size).toBe(N - WAVE1);
  // what the stopped server had committed: the next wave's rows assigned, each with its signed seq
  server = await startTestServer({ dir, ...ports });
  const rows = (await getCampaign(server, id)).deviceList;
  expect(rows.filter((r) => r.state === 'assigned' || r.state === 'updated')).toHaveLength(N);

  const done = await waitForCampaign(server, id, ['completed', 'reverted', 'halted'], 150_000);
  expect(done.status, await whyStopped(server, id)).toBe('completed');
  expect(done.devices).toEqual({ updated: N });
  await fleet.waitAll((_s, a) => a.active?.manifestSha256 === v2.manifestSha256, 60_000);

  // every device: assigned once (one attempt, the seq it holds is the one the campaign recorded), one install
  const view = (await getCampaign(server, id)).deviceList;
  expect(view.map((d) => d.attempts)).toEqual(Array(N).fill(1));
  const db = server.app.fleet.db;
  const seqs = db.prepare('SELECT cd.device_id AS d, cd.assigned_seq AS a, dv.desired_seq AS s FROM campaign_devices cd JOIN devices dv ON dv.device_id = cd.device_id WHERE cd.campaign_id = ?').all(id) as { d: string; a: number; s: number }[];
  expect(seqs.filter((r) => r.a !== r.s)).toEqual([]);
  expect(installs.size).toBe(N);
  expect([...installs.values()].every((n) => n === 1)).toBe(true);
  // fetches that reached the server: wave 1 twice (the cut one, then the rest from where it broke off),
  // wave 2 once
  const half = `bytes=${v2.manifest.artifact.length >> 1}-`;
  for (const d of ids) expect([d, fetched.get(d)]).toEqual([d, wave1.has(d) ? [null, half] : [null]]);
  // the server stored one 'active' report about v2 per device
  const active = db.prepare("SELECT device_id AS d, COUNT(*) AS n FROM status_events WHERE state = 'active' AND manifest_sha256 = ? GROUP BY device_id").all(v2.manifestSha256) as { d: string; n: number }[];
  expect(active).toHaveLength(N);
  expect(active.every((r) => r.n === 1)).toBe(true);
  expect((await events(server, id)).filter((e) => e.type === 'wave_started')).toHaveLength(2);
}, 420_000);
