// Proof of shadow mode in a campaign (issue 17), with real agents, broker, SQLite and onnxruntime:
// - a candidate that disagrees with the active model on 10% of one hardware group's live inputs (and is
//   bit for bit the active model everywhere else, golden inputs included) is halted in shadow: the event
//   names the group and its agreement figure, the other group's figures are exact (agreement 1, no
//   noise), no device ever answers with the candidate, and it is unloaded everywhere;
// - a good candidate passes its shadow gate and is promoted with no second download: the server counts
//   exactly one artifact request per device (the shadow's).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IncomingMessage } from 'node:http';
import type { FleetAgent } from '../../device-agent/agent.ts';
import { OrtRuntime } from '../../device-agent/model-runtime.ts';
import { trappedClassifier } from '../../firmware-sim/sample-models.ts';
import type { Feeds } from '../../runtime/onnx-session.ts';
import type { Status } from '../../shared/messages.ts';
import { seededRandom } from '../../server/bundles/golden-vectors.ts';
import { createCampaign, events, getCampaign, waitForCampaign } from '../helpers/campaigns.ts';
import { assign, pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { waitFor } from '../helpers/wait.ts';
import { outcome, startAgent } from '../agent/fixture.ts';

const SEED = 81;
const TO_CLASS = 0;

function argmax(a: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}

describe('a campaign wave in shadow first', () => {
  let server: TestServer;
  const agents: FleetAgent[] = [];
  const groups = ['cam-a', 'cam-a', 'cam-b', 'cam-b'];
  /** trap inputs (x[7] in [0.95, 1)) on which the active model does not pick TO_CLASS, and its answer on each */
  const traps: { feeds: Feeds; answer: number }[] = [];
  const served = new Map<string, number>();
  const onRequest = (req: IncomingMessage) => {
    const m = /^\/v1\/artifacts\/([0-9a-f]{64})/.exec(req.url ?? '');
    if (m && req.method === 'GET') served.set(m[1], (served.get(m[1]) ?? 0) + 1);
  };
  let active = '';
  /** statuses of any device naming a manifest as active (must never be a halted candidate) */
  const activeReports: Status[] = [];

  beforeAll(async () => {
    server = await startTestServer({ config: { rolloutTickMs: 50 } });
    server.app.server.on('request', onRequest);
    const rt = new OrtRuntime();
    const m = await rt.load(tinyClassifier(SEED), { sessionConfig: {} });
    const rand = seededRandom(4242);
    while (traps.length < 50) {
      const x = Float32Array.from({ length: 8 }, (_, i) => (i === 7 ? 0.95 + rand() * 0.05 : rand()));
      const feeds = { x: { data: x, dims: [1, 8] } };
      const answer = argmax((await m.run(feeds)).probs.data as Float32Array);
      if (answer !== TO_CLASS) traps.push({ feeds, answer });
    }
    await m.release();
    const v1 = await pushBundle(server, 'shadowcam', tinyClassifier(SEED));
    active = v1.manifestSha256;
    for (const [i, hardware] of groups.entries()) {
      const agent = await startAgent(server, `shcam-${i}`, { hardware, telemetryWindowMs: 200 });
      agent.on('status', (s: Status) => { if (s.state === 'active' || s.state === 'probation_passed') activeReports.push(s); });
      agents.push(agent);
    }
    const done = agents.map((a) => outcome(a, active));
    await assign(server, active, agents.map((a) => a.deviceId));
    for (const d of done) expect((await d).state).toBe('active');
  }, 90_000);

  afterAll(async () => {
    for (const a of agents) await a.stop();
    server?.app.server.off('request', onRequest);
    await server?.close();
  });

  /**
   * Device code calling infer() on its group's live inputs until stopped: cam-a never sees x[7] >= 0.9;
   * every 10th cam-b input is a trap input. Counts answers that are not the active model's on a trap input.
   */
  function workload() {
    let running = true;
    const tally = { calls: 0, trapCalls: 0, wrongOnTrap: 0 };
    const loops = agents.map(async (agent, k) => {
      const rand = seededRandom(1000 + k);
      for (let i = 0; running; i++) {
        const trap = groups[k] === 'cam-b' && i % 10 === 9 ? traps[(i / 10 | 0) % traps.length] : null;
        const feeds = trap?.feeds ?? { x: { data: Float32Array.from({ length: 8 }, (_, j) => rand() * (j === 7 ? 0.9 : 1)), dims: [1, 8] } };
        const out = await agent.infer(feeds);
        tally.calls++;
        if (trap) { tally.trapCalls++; if (argmax(out.probs.data as Float32Array) !== trap.answer) tally.wrongOnTrap++; }
        await new Promise((r) => setTimeout(r, 2)); // device code between calls: the runtime is idle now and then
      }
    });
    return { tally, stop: async () => { running = false; await Promise.all(loops); } };
  }

  it('a candidate wrong on 10% of one group\'s inputs is halted in shadow, naming the group; nobody ever served it; unloaded everywhere', async () => {
    const bad = await pushBundle(server, 'shadowcam', trappedClassifier(SEED, { threshold: 0.9, toClass: TO_CLASS }));
    const w = workload();
    let id = '';
    try {
      const created = await createCampaign(server, {
        manifestSha256: bad.manifestSha256, target: { deviceIds: agents.map((a) => a.deviceId) },
        waves: [{ percent: 100, minDevices: 1, soakSeconds: 0, minReporting: 0, shadow: { minSamples: 400, minDevices: 4, soakSeconds: 0, sampleRate: 1 } }],
        // wall-clock time of a sub-millisecond model on a loaded shared host is noise: the latency gate is
        // table-tested (shadow-gate.test.ts); these campaigns are about what the candidate answers
        gates: { shadow: { maxLatencyRatio: 50 } },
      });
      expect(created.status).toBe(201);
      id = created.body.campaignId as string;
      await waitForCampaign(server, id, ['halted', 'completed', 'reverting', 'reverted'], 60_000);
      expect((await getCampaign(server, id)).status).toBe('halted');
      await waitFor(() => agents.every((a) => a.shadowCandidate === null), 20_000, 'the candidate unloaded on every device');

      const ev = await events(server, id);
      const failed = ev.find((e) => e.type === 'shadow_gate_failed');
      expect(failed, JSON.stringify(ev.map((e) => e.type))).toBeDefined();
      const d = failed!.detail as { failures: string[]; samples: number; groups: { hardware: string; devices: number; figures: { samples: number; agreement: number; outputs: { probs: { sqnrDb: number | null; maxAbsError: number } } } }[] };
      expect(d.samples).toBeGreaterThanOrEqual(400);
      // the figures come from the shadow windows the server stored (once per device and seq)
      const stored = server.app.fleet.db.prepare('SELECT COUNT(*) AS n, COUNT(DISTINCT device_id || \':\' || seq) AS u, SUM(samples) AS s FROM shadow_windows WHERE manifest_sha256 = ?').get(bad.manifestSha256) as { n: number; u: number; s: number };
      expect(stored.n).toBe(stored.u);
      expect(stored.s).toBeGreaterThanOrEqual(d.samples);
      expect(d.failures.length).toBe(1);
      expect(d.failures[0]).toMatch(/^hardware cam-b: probs: top-1 agreement 0\.\d{4} is below the minimum 0\.99/);
      const [a, b] = [d.groups.find((g) => g.hardware === 'cam-a')!, d.groups.find((g) => g.hardware === 'cam-b')!];
      expect(a.devices).toBe(2);
      expect(b.devices).toBe(2);
      // cam-a never sees the trap: bit for bit the active model's outputs
      expect(a.figures.agreement).toBe(1);
      expect(a.figures.outputs.probs.sqnrDb).toBeNull();
      expect(a.figures.outputs.probs.maxAbsError).toBe(0);
      // cam-b: one input in ten is a trap the candidate answers differently (some sampled inputs may be dropped)
      expect(b.figures.agreement).toBeGreaterThan(0.85);
      expect(b.figures.agreement).toBeLessThan(0.95);
      expect(ev.find((e) => e.type === 'shadow_unloaded')?.detail).toMatchObject({ devices: 4, reason: 'shadow gate failed' });
      // the campaign view shows the same wave per hardware group (figures from windows received since; at least the gate's)
      const sv = (await getCampaign(server, id) as unknown as { shadow: { wave: number; state: string; groups: { hardware: string; devices: number; samples: number; agreement: number }[] }[] }).shadow;
      expect(sv.map((x) => [x.wave, x.state])).toEqual([[1, 'failed']]);
      expect(sv[0].groups.map((g) => [g.hardware, g.devices])).toEqual([['cam-a', 2], ['cam-b', 2]]);
      expect(sv[0].groups[0].agreement).toBe(1);
      expect(sv[0].groups[1].agreement).toBeLessThan(0.95);

      // nobody answered with the candidate: no device reported it active, every trap input got the active model's answer
      expect(activeReports.filter((s) => s.manifestSha256 === bad.manifestSha256 || s.active?.manifestSha256 === bad.manifestSha256)).toEqual([]);
      expect(agents.map((x) => x.active?.manifestSha256)).toEqual([active, active, active, active]);
      expect((await getCampaign(server, id)).deviceList.map((x) => x.state)).toEqual(['pending', 'pending', 'pending', 'pending']);
      expect(w.tally.trapCalls).toBeGreaterThan(0);
      expect(w.tally.wrongOnTrap).toBe(0);
    } finally {
      await w.stop();
      // abort: the devices are free for the next campaign
      if (id) expect((await server.app.inject({ method: 'POST', url: `/v1/campaigns/${id}/abort`, headers: { 'x-fleet-actor': 'alice' } })).statusCode).toBe(200);
    }
  }, 120_000);

  it('a good candidate passes its shadow gate and is promoted with no second download (counted at the server)', async () => {
    const good = await pushBundle(server, 'shadowcam', trappedClassifier(SEED, { threshold: 2, toClass: TO_CLASS })); // the trap never fires
    const w = workload();
    try {
      const created = await createCampaign(server, {
        manifestSha256: good.manifestSha256, target: { deviceIds: agents.map((a) => a.deviceId) },
        waves: [{ percent: 100, minDevices: 1, soakSeconds: 0, minReporting: 0, shadow: { minSamples: 400, minDevices: 4, soakSeconds: 0, sampleRate: 1 } }],
        // wall-clock time of a sub-millisecond model on a loaded shared host is noise: the latency gates are
        // table-tested (shadow-gate.test.ts, decide tests); these campaigns are about what the candidate
        // answers. After the shadow passes, the wave's own gate judges the promoted model: a p99 of 2.4 ms
        // against 0.34 ms on a loaded CI host halted it once, so latency differences under 100 ms do not count here.
        gates: { minLatencyDeltaMs: 100, shadow: { maxLatencyRatio: 50 } },
      });
      expect(created.status).toBe(201);
      const id = created.body.campaignId as string;
      await waitForCampaign(server, id, ['completed', 'halted', 'reverting', 'reverted'], 60_000);
      const ev = await events(server, id);
      expect((await getCampaign(server, id)).status, JSON.stringify(ev.filter((e) => e.type.includes('failed')))).toBe('completed');
      const passed = ev.find((e) => e.type === 'shadow_gate_passed')!.detail as { failures: string[]; devices: number; figures: { agreement: number } };
      expect(passed.failures).toEqual([]);
      expect(passed.devices).toBe(4);
      expect(passed.figures.agreement).toBe(1);
      await waitFor(() => agents.every((a) => a.active?.manifestSha256 === good.manifestSha256), 20_000, 'every device on the promoted candidate');
      expect(agents.map((a) => a.shadowCandidate)).toEqual([null, null, null, null]);
      // one request per device, made while loading the shadow: the promotion staged it from the slot
      expect(served.get(good.manifest.artifact.sha256)).toBe(4);
      expect(w.tally.wrongOnTrap).toBe(0);
    } finally {
      await w.stop();
    }
  }, 120_000);
});
