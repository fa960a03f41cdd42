// One place that knows how onnxruntime-web is loaded in Node: WASM backend, single thread
// (devices and the simulator share cores; worker threads would only add contention).
// Server and agent both import it; it imports neither (test/unit/import-rules.test.ts). Its settings
// are applied on first use, not at import time, so importing it has no side effects.
import * as ort from 'onnxruntime-web';

let configured = false;
/** Applies the runtime settings once, before the first session is made. */
export function configureRuntime(): void {
  if (configured) return;
  configured = true;
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = 'error';
}

export { ort };

export type TensorData = Float32Array | Int32Array | BigInt64Array | Uint8Array | Int8Array;
export interface NamedTensor { data: TensorData | number[]; dims: number[]; type?: ort.Tensor.Type }
export type Feeds = Record<string, NamedTensor>;
export type Outputs = Record<string, { data: TensorData; dims: readonly number[]; type: string }>;

export interface SessionOptions {
  /** extra onnxruntime session config entries (for example 'session.disable_quant_qdq'). */
  config?: Record<string, string>;
}

/**
 * Every call into the WASM module, one at a time, in call order. onnxruntime-web (1.30) keeps one WASM
 * instance per process, with one C stack shared by every session, and its `run()` saves the stack pointer,
 * allocates its argument arrays on that stack, then awaits several times before it restores the pointer.
 * Two runs started in the same macrotask (a timer that makes 100 devices infer at once) interleave at
 * those awaits; when the first one started finishes first, it restores the pointer above the second's
 * arrays and the second then restores to its own, lower mark: 64 bytes of stack leak per overlapped
 * run. After ~82,000 overlapped runs the 5 MB stack has walked into the heap and every later call fails
 * ("Aborted()", "table index is out of bounds"). test/sim/shared-runtime-load.test.ts ran into it.
 * Runs started from separate macrotasks (HTTP requests to one agent) never overlap, but nothing in ORT
 * guarantees that, so the agent goes through this queue as well.
 */
class WasmQueue {
  private tail: Promise<unknown> = Promise.resolve();
  /** calls waiting for their turn, and the one running (the simulator's inference backlog) */
  waiting = 0;
  running = 0;
  completed = 0;

  enqueue<T>(fn: () => Promise<T>): Promise<T> {
    this.waiting++;
    const result = this.tail.then(async () => {
      this.waiting--;
      this.running++;
      try {
        return await fn();
      } finally {
        this.running--;
        this.completed++;
      }
    });
    this.tail = result.catch(() => {});
    return result;
  }
}

const queue = new WasmQueue();

/** Calls into the WASM runtime waiting for their turn (backlog), running, and done so far in this process. */
export function runtimeQueueStats(): { waiting: number; running: number; completed: number } {
  return { waiting: queue.waiting, running: queue.running, completed: queue.completed };
}

export async function createSession(bytes: Uint8Array, opts: SessionOptions = {}): Promise<ort.InferenceSession> {
  configureRuntime();
  const session = await queue.enqueue(() => ort.InferenceSession.create(bytes, {
    executionProviders: ['wasm'],
    graphOptimizationLevel: 'all',
    extra: opts.config ? sessionConfigEntries(opts.config) as never : undefined,
  }));
  // release goes through the queue too: a session freed in the middle of another call's awaits is the same hazard
  const release = session.release.bind(session);
  session.release = () => queue.enqueue(release);
  return session;
}

/**
 * onnxruntime-web joins nested `extra` keys with '.', so `{ session: { 'session.x': '1' } }` would
 * become 'session.session.x', which ORT silently ignores. Pass full keys flat instead; a bare key
 * without a dot ('disable_quant_qdq') is taken as a 'session.' entry, since every ORT config key
 * has a dotted prefix.
 */
export function sessionConfigEntries(config: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(config)) out[key.includes('.') ? key : `session.${key}`] = value;
  return out;
}

export function toTensor(t: NamedTensor): ort.Tensor {
  const type = t.type ?? 'float32';
  if (Array.isArray(t.data)) {
    if (type === 'float32') return new ort.Tensor('float32', Float32Array.from(t.data), t.dims);
    if (type === 'int64') return new ort.Tensor('int64', BigInt64Array.from(t.data.map(BigInt)), t.dims);
    if (type === 'int32') return new ort.Tensor('int32', Int32Array.from(t.data), t.dims);
    if (type === 'bool') return new ort.Tensor('bool', Uint8Array.from(t.data), t.dims);
    throw new Error(`unsupported tensor type ${type} for array data`);
  }
  return new ort.Tensor(type as 'float32', t.data as Float32Array, t.dims);
}

export async function runSession(session: ort.InferenceSession, feeds: Feeds): Promise<Outputs> {
  const ortFeeds: Record<string, ort.Tensor> = {};
  for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = toTensor(t);
  const out = await queue.enqueue(() => session.run(ortFeeds));
  const result: Outputs = {};
  for (const [name, t] of Object.entries(out)) {
    result[name] = { data: t.data as TensorData, dims: t.dims, type: t.type };
  }
  return result;
}
