// The shadow candidate in its own thread (issue 17, device-agent/shadow-worker.ts): its runs never enter
// the caller's WASM queue (counted: the main thread's queue sees exactly the caller's calls while the
// candidate compared every input), the thread hashes the bytes it is sent again, its outputs are the
// main runtime's to the bit, it ends with its last session, and a dead thread fails calls as "not the
// model's" (counted as dropped inputs, not candidate errors); sampled inputs reach it through a ring in
// shared memory that answers like a run.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Worker } from 'node:worker_threads';
import type { FleetAgent } from '../../device-agent/agent.ts';
import { isNotAModelError, OrtRuntime } from '../../device-agent/model-runtime.ts';
import { spawnShadowThread, ThreadRuntime } from '../../device-agent/shadow-worker.ts';
import { runtimeQueueStats, type Feeds, type Outputs } from '../../runtime/onnx-session.ts';
import { sha256Hex } from '../../shared/crypto.ts';
import type { Status } from '../../shared/messages.ts';
import { seededRandom } from '../../server/bundles/golden-vectors.ts';
import { assign, pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { waitFor } from '../helpers/wait.ts';
import { outcome, startAgent } from './fixture.ts';

const inputsFor = (n: number, seed: number): Feeds[] => {
  const rand = seededRandom(seed);
  return Array.from({ length: n }, () => ({ x: { data: Float32Array.from({ length: 8 }, () => rand()), dims: [1, 8] } }));
};

describe('shadow thread runtime', () => {
  it('checks the hash of the bytes it is sent, answers exactly like the main runtime, ends with its last session', async () => {
    const bytes = tinyClassifier(71);
    const rt = new ThreadRuntime();
    await expect(rt.load(bytes, { sha256: sha256Hex(tinyClassifier(72)), sessionConfig: {} })).rejects.toThrow(/hash to [0-9a-f]{64}, not the verified/);
    expect(rt.running).toBe(false); // the refused load was its only session
    const model = await rt.load(bytes, { sha256: sha256Hex(bytes), sessionConfig: {} });
    expect(rt.running).toBe(true);
    const main = await new OrtRuntime().load(bytes, { sessionConfig: {} });
    const before = runtimeQueueStats().completed;
    const threadOut: number[][] = [];
    for (const f of inputsFor(20, 3)) threadOut.push([...((await model.run(f)).probs.data as Float32Array)]);
    expect(runtimeQueueStats().completed).toBe(before); // 20 runs, none of them in this thread's WASM queue
    for (const [i, f] of inputsFor(20, 3).entries()) expect([...((await main.run(f)).probs.data as Float32Array)]).toEqual(threadOut[i]);
    await main.release();
    await model.release();
    expect(rt.running).toBe(false);
  }, 30_000);

  it('the sample ring: inputs handed over in shared memory answer exactly like run(); what it cannot carry is refused as unsupported; an input past its wait is dropped as not the model\'s error', async () => {
    const bytes = tinyClassifier(74);
    const rt = new ThreadRuntime(undefined, { ringSlots: 4 });
    const model = await rt.load(bytes, { sha256: sha256Hex(bytes), sessionConfig: {} });
    const inputs = inputsFor(20, 5);
    const viaRing: number[][] = [];
    const viaSubmit = (f: Feeds, maxWaitMs: number) => new Promise<Outputs>((resolve, reject) => {
      const r = model.submit!(f, maxWaitMs, (err, out) => (out ? resolve(out) : reject(err)));
      if (r !== 'queued') reject(new Error(`the ring refused a plain input: ${r}`));
    });
    for (const f of inputs) {
      const answer = viaSubmit(f, 60_000);
      (f.x.data as Float32Array).fill(0); // the caller may reuse its buffer at once: the ring holds its own copy
      viaRing.push([...((await answer).probs.data as Float32Array)]);
    }
    for (const [i, f] of inputsFor(20, 5).entries()) expect([...((await model.run(f)).probs.data as Float32Array)]).toEqual(viaRing[i]);
    // number arrays, an input name the model does not have, a type that is not the array's, more than a slot holds
    const never = () => { throw new Error('an input the ring refused was answered'); };
    expect(model.submit!({ x: { data: Array.from({ length: 8 }, () => 0.5), dims: [1, 8] } }, 1000, never)).toBe('unsupported');
    expect(model.submit!({ y: { data: new Float32Array(8), dims: [1, 8] } }, 1000, never)).toBe('unsupported');
    expect(model.submit!({ x: { data: new Float32Array(8), dims: [1, 8], type: 'int32' } }, 1000, never)).toBe('unsupported');
    expect(model.submit!({ x: { data: new Float32Array(5000), dims: [1, 5000] } }, 1000, never)).toBe('unsupported');
    // a wait already over when the thread takes it (a negative budget): dropped unrun, not the model's error
    const err = await viaSubmit(inputsFor(1, 6)[0], -1000).catch((e: unknown) => e);
    expect(isNotAModelError(err)).toBe(true);
    expect((err as Error).message).toMatch(/waited longer than shadow.maxWaitMs/);
    await model.release();
    expect(rt.running).toBe(false);
  }, 30_000);

  it('ring answers go to their own inputs when the thread runs ahead of the caller; warm() hands nothing over; a caller mid-run delays the thread but never starves it', async () => {
    const bytes = tinyClassifier(75);
    const slots = 4;
    const rt = new ThreadRuntime(undefined, { ringSlots: slots });
    const model = await rt.load(bytes, { sha256: sha256Hex(bytes), sessionConfig: {} });
    // warm-up: 3,000 dry submits at load time write the free slot and hand nothing to the thread
    model.warm!([{ name: 'x', type: 'float32', shape: ['batch', 8] }]);
    expect(rt.ringCounts).toEqual({ written: 0, taken: 0, callerRuns: 0 });
    // The thread runs ahead: this thread never yields (answers wait in its message queue) while the thread
    // takes two rounds of `slots` inputs; the ring has room again, but the first round's answers are not
    // handled yet, so the next input is refused ('full') instead of taking over an unanswered callback.
    const inputs = inputsFor(2 * slots + 1, 11);
    const answers: Promise<Outputs>[] = [];
    const offer = (f: Feeds) => {
      let settle!: { resolve: (o: Outputs) => void; reject: (e: unknown) => void };
      const p = new Promise<Outputs>((resolve, reject) => { settle = { resolve, reject }; });
      const r = model.submit!(f, 60_000, (err, out) => (out ? settle.resolve(out) : settle.reject(err)));
      if (r === 'queued') answers.push(p);
      return r;
    };
    const sleeper = new Int32Array(new SharedArrayBuffer(4));
    const spinUntilTaken = (n: number) => { // blocks this thread (no event loop turn) until the thread took n inputs
      const until = Date.now() + 10_000;
      while (rt.ringCounts!.taken < n && Date.now() < until) Atomics.wait(sleeper, 0, 0, 1);
      Atomics.wait(sleeper, 0, 0, 50); // and ran them: their answers are posted, not yet handled here
      expect(rt.ringCounts!.taken).toBe(n);
    };
    for (let k = 0; k < slots; k++) expect(offer(inputs[k])).toBe('queued');
    spinUntilTaken(slots);
    for (let k = slots; k < 2 * slots; k++) expect(offer(inputs[k])).toBe('queued');
    spinUntilTaken(2 * slots);
    expect(offer(inputs[2 * slots])).toBe('full');
    const got = await Promise.all(answers);
    expect(got.length).toBe(2 * slots);
    for (const [i, out] of got.entries()) expect([...(out.probs.data as Float32Array)]).toEqual([...((await model.run(inputs[i])).probs.data as Float32Array)]);
    expect(offer(inputs[2 * slots])).toBe('queued'); // answers handled: room again
    await answers[2 * slots];
    // the caller's runs are counted while they last; an input offered mid-run is still answered (the thread waits at most a few ms)
    const token = rt.enterCall();
    expect(rt.ringCounts!.callerRuns).toBe(1);
    const late = await new Promise<Outputs>((resolve, reject) => { expect(model.submit!(inputs[0], 60_000, (err, out) => (out ? resolve(out) : reject(err)))).toBe('queued'); });
    expect([...(late.probs.data as Float32Array)]).toEqual([...(got[0].probs.data as Float32Array)]);
    rt.leaveCall(token);
    expect(rt.ringCounts!.callerRuns).toBe(0);
    await model.release();
    expect(rt.running).toBe(false);
  }, 30_000);

  it('a thread that dies fails waiting and later runs as not the model\'s error', async () => {
    let worker: Worker | null = null;
    const rt = new ThreadRuntime(() => (worker = spawnShadowThread()));
    const bytes = tinyClassifier(73);
    const model = await rt.load(bytes, { sha256: sha256Hex(bytes), sessionConfig: {} });
    await model.run(inputsFor(1, 1)[0]);
    await worker!.terminate();
    const err = await model.run(inputsFor(1, 2)[0]).catch((e: unknown) => e);
    expect(isNotAModelError(err)).toBe(true);
    expect(rt.running).toBe(false);
    await model.release();
  }, 30_000);
});

describe('shadow in a thread on a device', () => {
  let server: TestServer;
  const agents: FleetAgent[] = [];
  beforeAll(async () => { server = await startTestServer(); }, 60_000);
  afterAll(async () => {
    for (const a of agents) await a.stop();
    await server?.close();
  });

  it('compares every input while the caller\'s WASM queue runs only the caller\'s calls', async () => {
    const active = await pushBundle(server, 'shadow-th', tinyClassifier(81));
    const cand = await pushBundle(server, 'shadow-th', tinyClassifier(82));
    const agent = await startAgent(server, 'shadow-th-1', { telemetryWindowMs: 200, shadow: { queue: 64, maxWaitMs: 60_000 } });
    agents.push(agent);
    const done = outcome(agent, active.manifestSha256);
    await assign(server, active.manifestSha256, [agent.deviceId]);
    expect((await done).state).toBe('active');
    const loaded = agent.waitForStatus((s: Status) => s.manifestSha256 === cand.manifestSha256 && ['shadow_loaded', 'shadow_failed'].includes(s.state), 20_000);
    await server.app.fleet.director.assign(active.manifestSha256, [agent.deviceId], undefined, { shadow: { manifestSha256: cand.manifestSha256, sampleRate: 1 } });
    expect((await loaded).state).toBe('shadow_loaded');
    expect(agent.shadowInThread).toBe(true);

    const inputs = inputsFor(30, 9);
    const queueBefore = runtimeQueueStats().completed;
    const countsBefore = agent.shadowCounts!;
    for (const f of inputs) await agent.infer(f); // back to back: inline, half of these would wait for a shadow run
    await waitFor(() => agent.shadowCounts!.compared - countsBefore.compared === 30, 20_000, '30 inputs compared');
    expect(runtimeQueueStats().completed - queueBefore).toBe(30); // the caller's 30 runs, and no candidate run
    expect(agent.shadowCounts!.dropped - countsBefore.dropped).toBe(0);
    expect(agent.shadowCounts!.errors - countsBefore.errors).toBe(0);

    // the device view shows the shadow it holds, and its figures from the telemetry it sent
    const view = async () => (await server.app.inject({ method: 'GET', url: `/v1/devices/${agent.deviceId}` })).json().shadow;
    await waitFor(async () => (await view())?.samples === 30, 20_000, 'the device view counts 30 compared inputs');
    const v = await view();
    expect(v).toMatchObject({ modelId: 'shadow-th', version: cand.version, manifestSha256: cand.manifestSha256, sampleRate: 1, state: 'loaded', reason: null, samples: 30, errors: 0, dropped: 0 });
    expect(Date.parse(v.since)).toBeGreaterThan(0);
    expect(v.agreement).toBeGreaterThanOrEqual(0);
    expect(v.agreement).toBeLessThanOrEqual(1);
    expect(v.latencyRatio).toBeGreaterThan(0);
  }, 60_000);
});
