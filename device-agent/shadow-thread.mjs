// The shadow candidate's own thread (issue 17, device-agent/shadow-worker.ts): a worker_threads Worker
// with its own onnxruntime-web instance (its own WASM memory and queue, one WASM thread), so a shadow run
// never holds the WASM queue the caller's infer() goes through. Plain JavaScript on purpose: it runs as
// is from the sources, from dist/ and beside the packaged agent's bundle, with no TypeScript loader in
// the thread (tsx registered in a worker added ~20 MB and took seconds to end). It does what
// runtime/onnx-session.ts does for the main thread (one WASM thread, one call at a time, tensors from
// typed arrays or plain arrays) for the few calls it needs.
// It trusts nothing it is sent: the bytes of a load are hashed again here and must match the SHA-256 the
// main thread verified against the signed manifest.
// Messages in: {op: 'load', id, bytes, sha256, sessionConfig} | {op: 'run', id, session, feeds} |
// {op: 'release', id, session} | {op: 'ring', ctl, meta, deadline, data, slots}; out: {id, ok: true,
// session?, inputNames?, outputs?, ms?} | {id, ok: false, error, notModel?}. The ring (shadow-worker.ts
// RING says its layout) brings sampled inputs through shared memory; each is answered like a run, with
// id -(sequence + 1).
import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import * as ort from 'onnxruntime-web';

ort.env.wasm.numThreads = 1;
ort.env.logLevel = 'error';

const sessions = new Map();
let nextSession = 1;
/** one call into the WASM instance at a time, in arrival order (runtime/onnx-session.ts WasmQueue says why) */
let tail = Promise.resolve();
const serial = (fn) => { const r = tail.then(fn); tail = r.catch(() => {}); return r; };

/** the same keys as runtime/onnx-session.ts sessionConfigEntries: a bare key is a 'session.' entry */
function configEntries(config) {
  const out = {};
  for (const [k, v] of Object.entries(config ?? {})) out[k.includes('.') ? k : `session.${k}`] = v;
  return out;
}

function toTensor(t) {
  const type = t.type ?? 'float32';
  if (!Array.isArray(t.data)) return new ort.Tensor(type, t.data, t.dims);
  if (type === 'float32') return new ort.Tensor('float32', Float32Array.from(t.data), t.dims);
  if (type === 'int64') return new ort.Tensor('int64', BigInt64Array.from(t.data.map(BigInt)), t.dims);
  if (type === 'int32') return new ort.Tensor('int32', Int32Array.from(t.data), t.dims);
  if (type === 'bool') return new ort.Tensor('bool', Uint8Array.from(t.data), t.dims);
  throw new Error(`unsupported tensor type ${type} for array data`);
}

async function handle(m) {
  if (m.op === 'load') {
    const got = createHash('sha256').update(m.bytes).digest('hex');
    if (got !== m.sha256) return { id: m.id, ok: false, error: `the bytes sent to the shadow thread hash to ${got}, not the verified ${m.sha256}` };
    const session = await serial(() => ort.InferenceSession.create(m.bytes, {
      executionProviders: ['wasm'], graphOptimizationLevel: 'all', extra: configEntries(m.sessionConfig),
    }));
    const n = nextSession++;
    sessions.set(n, session);
    return { id: m.id, ok: true, session: n, inputNames: [...session.inputNames] };
  }
  const session = sessions.get(m.session);
  if (!session) return { id: m.id, ok: false, error: `no session ${m.session} in the shadow thread` };
  if (m.op === 'release') {
    sessions.delete(m.session);
    await serial(() => session.release());
    return { id: m.id, ok: true };
  }
  const feeds = {};
  for (const [name, t] of Object.entries(m.feeds)) feeds[name] = toTensor(t);
  // timed here, around the run alone: the latency ratio compares model time, not the message hops
  const t0 = performance.now();
  const out = await serial(() => session.run(feeds));
  const ms = performance.now() - t0;
  const outputs = {};
  for (const [name, t] of Object.entries(out)) outputs[name] = { data: t.data, dims: [...t.dims], type: t.type };
  return { id: m.id, ok: true, outputs, ms };
}

// the layout of shadow-worker.ts RING
const SLOT_BYTES = 16 * 1024;
const PER_TENSOR = 11;
const META = 2 + 4 * PER_TENSOR;
const TYPES = ['float32', 'int32', 'int64', 'uint8', 'int8', 'bool'];
const ARRAYS = { float32: Float32Array, int32: Int32Array, int64: BigInt64Array, uint8: Uint8Array, int8: Int8Array, bool: Uint8Array };
let ring = null;

/** One input out of its slot (copied out of shared memory, so the slot is free once this returns). */
function takeFromRing(r, slot) {
  const base = slot * META;
  const session = r.meta[base];
  const names = sessions.get(session)?.inputNames ?? [];
  const feeds = {};
  for (let i = 0; i < r.meta[base + 1]; i++) {
    const o = base + 2 + i * PER_TENSOR;
    const type = TYPES[r.meta[o + 1]];
    const dims = Array.from(r.meta.subarray(o + 3, o + 3 + r.meta[o + 2]));
    const bytes = r.data.slice(slot * SLOT_BYTES + r.meta[o + 9], slot * SLOT_BYTES + r.meta[o + 9] + r.meta[o + 10]);
    feeds[names[r.meta[o]]] = { type, dims, data: new ARRAYS[type](bytes.buffer) };
  }
  return { session, feeds, expired: Date.now() > r.deadline[slot] };
}

const POLL_MS = 2;
const SLEEP_AFTER_MS = 100;
/** how long a sampled input's run waits for the caller's thread to finish its model runs (ctl[3] back to 0) */
const CALLER_WAIT_MAX_MS = 2;
const CALLER_POLL_MS = 0.05;

/**
 * Before a candidate run: while the caller's thread is running a model (ctl[3] > 0), wait, looking every
 * 50 µs, at most CALLER_WAIT_MAX_MS. Measured on an idle 2-core machine: a candidate run started mid-call
 * made that call ~20% slower (bench/shadow-diag.ts `threadBusy`); starting between the caller's calls it
 * costs the caller nothing. A caller that never pauses still gets its inputs compared, a little later.
 */
function waitForCallerIdle(r) {
  if (Atomics.load(r.ctl, 3) <= 0) return;
  const until = performance.now() + CALLER_WAIT_MAX_MS;
  while (performance.now() < until) {
    const busy = Atomics.load(r.ctl, 3);
    if (busy <= 0) return;
    Atomics.wait(r.ctl, 3, busy, CALLER_POLL_MS);
  }
}

/**
 * Runs the ring's inputs one at a time, in order. While inputs come, it looks every POLL_MS, so the
 * main thread only writes (a wake-up sent from a call handed this thread the CPU in the middle of the
 * caller's call: sampled calls were 41-48% of the slowest 5% that way, 17-18% polling; bench/shadow.ts
 * alternating). After SLEEP_AFTER_MS without one it sleeps (ctl[2] = 1, Atomics.waitAsync) until the
 * main thread, seeing it asleep, wakes it (Atomics.notify): an idle device pays no timer.
 */
async function drainRing(r) {
  let taken = 0;
  let idleSince = Date.now();
  while (ring === r) {
    const written = Atomics.load(r.ctl, 0);
    if (((written - (taken | 0)) | 0) <= 0) {
      if (Date.now() - idleSince < SLEEP_AFTER_MS) { await new Promise((res) => setTimeout(res, POLL_MS)); continue; }
      Atomics.store(r.ctl, 2, 1);
      const w = Atomics.waitAsync(r.ctl, 0, written);
      if (w.async) await w.value;
      Atomics.store(r.ctl, 2, 0);
      idleSince = Date.now();
      continue;
    }
    idleSince = Date.now();
    const id = -(taken + 1);
    const m = takeFromRing(r, taken % r.slots);
    taken++;
    Atomics.store(r.ctl, 1, taken | 0);
    if (m.expired) { parentPort.postMessage({ id, ok: false, notModel: true, error: 'the sampled input waited longer than shadow.maxWaitMs' }); continue; }
    waitForCallerIdle(r);
    try {
      parentPort.postMessage(await handle({ op: 'run', id, session: m.session, feeds: m.feeds }));
    } catch (err) {
      parentPort.postMessage({ id, ok: false, error: err?.message ?? String(err) });
    }
  }
}

parentPort.on('message', (m) => {
  if (m.op === 'ring') {
    ring = { ctl: new Int32Array(m.ctl), meta: new Int32Array(m.meta), deadline: new Float64Array(m.deadline), data: new Uint8Array(m.data), slots: m.slots };
    void drainRing(ring);
    return;
  }
  handle(m).then(
    (reply) => parentPort.postMessage(reply),
    (err) => parentPort.postMessage({ id: m.id, ok: false, error: err?.message ?? String(err) }),
  );
});
