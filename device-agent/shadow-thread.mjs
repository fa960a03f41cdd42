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
// {op: 'release', id, session}; out: {id, ok: true, session?, outputs?, ms?} | {id, ok: false, error}.
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
    return { id: m.id, ok: true, session: n };
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

parentPort.on('message', (m) => {
  handle(m).then(
    (reply) => parentPort.postMessage(reply),
    (err) => parentPort.postMessage({ id: m.id, ok: false, error: err?.message ?? String(err) }),
  );
});
