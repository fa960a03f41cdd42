// Devices that run several models (issue 19): one signed assignment names a set; the agent installs all of
// it or none, switches it with one state write, serves each model by name (infer(modelId, feeds), the
// local endpoint), keeps the sessions of models a new set does not change, and reverts the whole set when
// any of its models fails (health check before the switch, probation after). Real broker, real server,
// real onnxruntime-web sessions, real signatures.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UnknownModel, type FleetAgent } from '../../device-agent/agent.ts';
import { startLocalHttp } from '../../device-agent/local-http.ts';
import { OrtRuntime, type LoadedModel, type ModelRuntime } from '../../device-agent/model-runtime.ts';
import { AgentState } from '../../device-agent/state-store.ts';
import { signDocument } from '../../shared/envelope.ts';
import { encodeTensor } from '../../shared/tensor-codec.ts';
import { createSession, runSession, type Feeds } from '../../runtime/onnx-session.ts';
import { pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { FaultRuntime } from './fault-runtime.ts';
import { manifestOf, startAgent } from './fixture.ts';

const IDS = ['mel', 'emb', 'kws'] as const;
const WIDTH = { mel: 8, emb: 6, kws: 4 } as const;
const feedsOf = (id: (typeof IDS)[number]): Feeds => ({ x: { data: Float32Array.from({ length: WIDTH[id] }, (_, i) => Math.sin(i + 1) * 0.7), dims: [1, WIDTH[id]] } });
const modelOf = (id: (typeof IDS)[number], seed: number) => tinyClassifier(seed, { inputs: WIDTH[id], classes: 3 });

async function bare(bytes: Uint8Array, feeds: Feeds): Promise<number[]> {
  const s = await createSession(bytes);
  try { return Array.from((await runSession(s, feeds)).probs.data as Float32Array); } finally { await s.release(); }
}

/** the real runtime, counting loads per artifact (a model kept by a new set must not be loaded again) */
class CountingRuntime implements ModelRuntime {
  readonly loads = new Map<string, number>();
  constructor(private readonly inner: ModelRuntime = new OrtRuntime()) {}
  load(artifact: Uint8Array, key: { sha256: string; sessionConfig: Record<string, string> }): Promise<LoadedModel> {
    this.loads.set(key.sha256, (this.loads.get(key.sha256) ?? 0) + 1);
    return this.inner.load(artifact, key);
  }
}

interface Pushed { manifestSha256: string; version: number; artifactSha256: string; bytes: Uint8Array }

describe('multi-model devices', () => {
  let server: TestServer;
  const agents: FleetAgent[] = [];
  const push = async (id: string, bytes: Uint8Array): Promise<Pushed> => {
    const b = await pushBundle(server, id, bytes);
    return { manifestSha256: b.manifestSha256, version: b.version, artifactSha256: b.manifest.artifact.sha256, bytes };
  };
  const pushSet = async (seed: number) => Promise.all(IDS.map((id, i) => push(id, modelOf(id, seed * 10 + i))));
  const setShas = (set: Pushed[]) => set.map((p) => p.manifestSha256);
  const served = (a: FleetAgent) => a.activeSet.map((m) => m.manifestSha256);
  const diskSet = (a: FleetAgent) => {
    const s = AgentState.parse(JSON.parse(readFileSync(join(a.config.dataDir, 'state.json'), 'utf8')));
    const r = s.slots[s.active!]!;
    return [r.manifestSha256, ...(r.extra ?? []).map((m) => m.manifestSha256)];
  };

  beforeAll(async () => { server = await startTestServer(); }, 60_000);
  afterAll(async () => {
    for (const a of agents) await a.stop();
    await server?.close();
  });

  it('installs a set as one, serves each model by name (agent and local endpoint), outputs equal bare sessions', async () => {
    const set = await pushSet(1);
    const agent = await startAgent(server, 'multi-1');
    agents.push(agent);
    const done = agent.waitForStatus((s) => s.manifestSha256 === set[0].manifestSha256 && s.state === 'active', 30_000);
    await server.app.fleet.director.assignSet(setShas(set), [agent.deviceId]);
    const status = await done;
    expect(status.activeSet?.map((m) => m.modelId)).toEqual([...IDS]);
    expect(served(agent)).toEqual(setShas(set));
    expect(diskSet(agent)).toEqual(setShas(set));
    for (const [i, id] of IDS.entries()) {
      const out = Array.from((await agent.infer(id, feedsOf(id))).probs.data as Float32Array);
      expect(out).toEqual(await bare(set[i].bytes, feedsOf(id)));
    }
    // infer(feeds) without a name is the primary model, as on a single-model device
    expect(Array.from((await agent.infer(feedsOf('mel'))).probs.data as Float32Array)).toEqual(await bare(set[0].bytes, feedsOf('mel')));
    await expect(agent.infer('nope', feedsOf('mel'))).rejects.toBeInstanceOf(UnknownModel);

    const http = await startLocalHttp(agent, 0);
    try {
      const post = (path: string, feeds: Feeds) => fetch(`http://127.0.0.1:${http.port}${path}`, {
        method: 'POST', body: JSON.stringify({ inputs: Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, { dims: t.dims, data: Array.from(t.data as Float32Array) }])) }),
      });
      const r = await post('/v1/models/emb/infer', feedsOf('emb'));
      expect(r.status).toBe(200);
      const body = await r.json() as { model: { modelId: string }; outputs: { probs: { data: number[] } } };
      expect(body.model.modelId).toBe('emb');
      expect(Float32Array.from(body.outputs.probs.data)).toEqual(Float32Array.from(await bare(set[1].bytes, feedsOf('emb'))));
      const unknown = await post('/v1/models/nope/infer', feedsOf('mel'));
      expect(unknown.status).toBe(404);
      expect((await unknown.json() as { error: string }).error).toBe('UNKNOWN_MODEL');
      // the input check is per model: kws takes 4 values, not 8
      const wrong = await post('/v1/models/kws/infer', feedsOf('mel'));
      expect(wrong.status).toBe(400);
      const legacy = await post('/v1/infer', feedsOf('mel'));
      expect(legacy.status).toBe(200);
      const st = await (await fetch(`http://127.0.0.1:${http.port}/v1/status`)).json() as { models: { modelId: string }[] };
      expect(st.models.map((m) => m.modelId)).toEqual([...IDS]);
    } finally {
      await http.close();
    }
  }, 90_000);

  it('updating one model loads only that one; calls to the others never fail meanwhile', async () => {
    const runtime = new CountingRuntime();
    const set = await pushSet(2);
    const agent = await startAgent(server, 'multi-2', {}, { runtime });
    agents.push(agent);
    const first = agent.waitForStatus((s) => s.manifestSha256 === set[0].manifestSha256 && s.state === 'active', 30_000);
    await server.app.fleet.director.assignSet(setShas(set), [agent.deviceId]);
    await first;
    const newEmb = await push('emb', modelOf('emb', 999));
    let running = true;
    const counts = { mel: 0, kws: 0, failed: 0 };
    const loop = async (id: 'mel' | 'kws') => {
      while (running) {
        try { await agent.infer(id, feedsOf(id)); counts[id]++; } catch { counts.failed++; }
        await new Promise((r) => setImmediate(r));
      }
    };
    const loops = [loop('mel'), loop('kws')];
    const melBefore = counts.mel;
    try {
      const next = [set[0], newEmb, set[2]];
      const done = agent.waitForStatus((s) => s.state === 'active' && s.activeSet?.[1]?.manifestSha256 === newEmb.manifestSha256, 30_000);
      await server.app.fleet.director.assignSet(setShas(next), [agent.deviceId]);
      await done;
      expect(served(agent)).toEqual(setShas(next));
      expect(diskSet(agent)).toEqual(setShas(next));
    } finally {
      running = false;
      await Promise.all(loops);
    }
    expect(counts.failed).toBe(0);
    expect(counts.mel - melBefore).toBeGreaterThan(0);
    // each artifact loaded once: mel and kws kept their sessions, only the new emb was loaded
    expect(Object.fromEntries(runtime.loads)).toEqual({ [set[0].artifactSha256]: 1, [set[1].artifactSha256]: 1, [set[2].artifactSha256]: 1, [newEmb.artifactSha256]: 1 });
    expect(Array.from((await agent.infer('emb', feedsOf('emb'))).probs.data as Float32Array)).toEqual(await bare(newEmb.bytes, feedsOf('emb')));
  }, 90_000);

  it('a set whose second model fails its health check leaves the device on the old set, all three models', async () => {
    const set = await pushSet(3);
    const agent = await startAgent(server, 'multi-3');
    agents.push(agent);
    const first = agent.waitForStatus((s) => s.manifestSha256 === set[0].manifestSha256 && s.state === 'active', 30_000);
    await server.app.fleet.director.assignSet(setShas(set), [agent.deviceId]);
    await first;
    const next = await pushSet(4);
    // the new embedding model's manifest, signed by the real targets key, with golden outputs its artifact does not give
    const bad = manifestOf(server, next[1].manifestSha256);
    const v = bad.healthCheck.vectors[0];
    const wrong = new Float32Array(3).fill(0.5);
    v.outputs.probs = encodeTensor('float32', [1, 3], wrong);
    const badEnv = signDocument(bad, server.app.fleet.keys.signerFor('targets'));
    const primary = server.app.fleet.director.bundleEnvelope(next[0].manifestSha256);
    const kws = server.app.fleet.director.bundleEnvelope(next[2].manifestSha256);
    const failed = agent.waitForStatus((s) => s.manifestSha256 === next[0].manifestSha256 && ['failed', 'rejected', 'active'].includes(s.state), 30_000);
    await server.app.fleet.director.assignEnvelope(primary.envelope, primary.manifest, [agent.deviceId], undefined, { set: {
      extras: [{ envelope: badEnv, manifest: bad }, { envelope: kws.envelope, manifest: kws.manifest }],
    } });
    const s = await failed;
    expect(s.state).toBe('failed');
    expect(s.reason).toBe('HEALTH_CHECK_FAILED');
    expect(s.detail).toMatch(/^emb v\d+: /);
    expect(served(agent)).toEqual(setShas(set));
    expect(diskSet(agent)).toEqual(setShas(set));
    const state = AgentState.parse(JSON.parse(readFileSync(join(agent.config.dataDir, 'state.json'), 'utf8')));
    // the floors did not move for any model of the refused set
    expect(IDS.map((id) => state.trust.versionFloors[id])).toEqual(set.map((p) => p.version));
    for (const [i, id] of IDS.entries()) expect(Array.from((await agent.infer(id, feedsOf(id))).probs.data as Float32Array)).toEqual(await bare(set[i].bytes, feedsOf(id)));
  }, 90_000);

  it('a probation failure of one model reverts the whole set', async () => {
    const runtime = new FaultRuntime();
    const set = await pushSet(5);
    const agent = await startAgent(server, 'multi-4', { probationInferences: 30, probationSeconds: 0, probationMaxErrorRate: 0.1 }, runtime.deps());
    agents.push(agent);
    const first = agent.waitForStatus((s) => s.manifestSha256 === set[0].manifestSha256 && s.state === 'active', 30_000);
    await server.app.fleet.director.assignSet(setShas(set), [agent.deviceId]);
    await first;
    for (let i = 0; i < 40 && agent.onProbation; i++) await agent.infer('mel', feedsOf('mel'));
    expect(agent.onProbation).toBe(false);
    const next = await pushSet(6);
    runtime.faults.set(next[2].artifactSha256, { kind: 'error' }); // kws v-next passes its health check, then fails every call
    const switched = agent.waitForStatus((s) => s.manifestSha256 === next[0].manifestSha256 && s.state === 'active', 30_000);
    await server.app.fleet.director.assignSet(setShas(next), [agent.deviceId], { name: 'wakeword', version: 2 });
    expect((await switched).release).toEqual({ name: 'wakeword', version: 2 });
    expect(agent.release).toEqual({ name: 'wakeword', version: 2 });
    const reverted = agent.waitForStatus((s) => s.manifestSha256 === next[0].manifestSha256 && s.state === 'reverted', 30_000);
    let kwsFailures = 0;
    for (let i = 0; i < 40 && agent.onProbation; i++) {
      await agent.infer('mel', feedsOf('mel'));
      await agent.infer('kws', feedsOf('kws')).catch(() => { kwsFailures++; });
    }
    const r = await reverted;
    expect(r.reason).toBe('PROBATION_FAILED');
    expect(kwsFailures).toBeGreaterThan(0);
    expect(served(agent)).toEqual(setShas(set));
    expect(diskSet(agent)).toEqual(setShas(set));
    expect(agent.release).toBeNull();
    await expect(agent.infer('kws', feedsOf('kws'))).resolves.toBeTruthy();
  }, 90_000);

  it('revoking the key that signed a set re-signs every manifest of it; the device moves to the re-signed set as one', async () => {
    const set = await pushSet(8);
    const agent = await startAgent(server, 'multi-5');
    agents.push(agent);
    const first = agent.waitForStatus((s) => s.manifestSha256 === set[0].manifestSha256 && s.state === 'active', 30_000);
    await server.app.fleet.director.assignSet(setShas(set), [agent.deviceId], { name: 'rel', version: 1 });
    await first;
    const k1 = server.app.fleet.keys.signerFor('targets').keyId;
    const rot = await server.app.inject({ method: 'POST', url: '/v1/keys/rotate' });
    expect(rot.statusCode, rot.body).toBe(201);
    const moved = agent.waitForStatus((s) => s.state === 'active' && !!s.activeSet && s.activeSet.every((m, i) => m.manifestSha256 !== set[i].manifestSha256), 60_000);
    const rev = await server.app.inject({ method: 'POST', url: `/v1/keys/${k1}/revoke` });
    expect(rev.statusCode, rev.body).toBe(200);
    const resigned = rev.json().resignedBundles as { fromManifestSha256: string; manifestSha256: string; modelId: string }[];
    const want = set.map((p) => resigned.find((r) => r.fromManifestSha256 === p.manifestSha256)?.manifestSha256);
    expect(want.every((w) => typeof w === 'string')).toBe(true);
    const s = await moved;
    expect(s.activeSet?.map((m) => m.manifestSha256)).toEqual(want);
    expect(s.release).toEqual({ name: 'rel', version: 1 });
    expect(served(agent)).toEqual(want);
  }, 120_000);
});
