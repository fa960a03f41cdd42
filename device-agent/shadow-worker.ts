// A ModelRuntime whose sessions live in a worker thread (device-agent/shadow-thread.mjs) with its own
// onnxruntime-web instance: what holds a shadow candidate off the caller's path (issue 17). The thread is
// started at the first load and ended when its last session is released, so a device holding no shadow
// pays nothing for it. The bytes are copied into the thread, which checks their SHA-256 again before it
// builds the session. If the thread dies, every call waiting on it and every later run fails with an
// error marked as not the model's (model-runtime.ts): the shadow runner counts those as dropped inputs,
// not as candidate errors.
import { Worker } from 'node:worker_threads';
import type { Feeds, Outputs } from '../runtime/onnx-session.ts';
import { DEVICE_MS, markNotAModelError, type LoadedModel, type ModelRuntime } from './model-runtime.ts';

/** what device-agent/shadow-thread.mjs accepts and answers */
type ThreadRequest =
  | { op: 'load'; id: number; bytes: Uint8Array; sha256: string; sessionConfig: Record<string, string> }
  | { op: 'run'; id: number; session: number; feeds: Feeds }
  | { op: 'release'; id: number; session: number };
type ThreadReply = { id: number; ok: true; session?: number; inputNames?: string[]; outputs?: unknown; ms?: number } | { id: number; ok: false; error: string; notModel?: boolean };

/**
 * The sample ring: inputs the main thread hands to the shadow thread through shared memory, so that a
 * sampled call neither allocates a copy nor schedules anything on the caller's thread, and the main
 * thread posts nothing after it (with the queue, a setImmediate, a postMessage and the pump ran there
 * after every sampled call). `ctl[0]`: inputs written (main), `ctl[1]`: inputs taken (thread; its slot
 * is free again once the thread has copied it out), `ctl[2]`: 1 while the thread sleeps, `ctl[3]`: models
 * running on the caller's thread now (the thread starts a run while it is 0, waiting up to a few ms for
 * it). While inputs come the thread looks every 2 ms on its own; after 100 ms without one it sleeps on ctl[0]
 * (Atomics.waitAsync) and the next input wakes it (Atomics.notify). Per slot, `meta` holds the session,
 * the tensor count and per tensor its input index, type code, dims and place in the slot's data;
 * `deadline` the time (Date.now) after which the thread drops it unrun. The thread answers like a run,
 * with id -(sequence + 1). The same layout is read in shadow-thread.mjs.
 */
export const RING = { SLOT_BYTES: 16 * 1024, MAX_TENSORS: 4, MAX_DIMS: 6, PER_TENSOR: 11, META: 2 + 4 * 11 } as const;
const TYPE_CODES = ['float32', 'int32', 'int64', 'uint8', 'int8', 'bool'] as const;
interface Ring {
  ctl: Int32Array; meta: Int32Array; deadline: Float64Array; data: Uint8Array; f32: Float32Array; slots: number; written: number;
  /** the answer's callback per input not yet answered, at sequence % (2 x slots): no Map entry or promise per input */
  done: (((err: unknown, out?: Outputs) => void) | undefined)[];
}

function typeCode(type: string | undefined, d: Feeds[string]['data']): number {
  const natural = d instanceof Float32Array ? 'float32' : d instanceof Int32Array ? 'int32' : d instanceof BigInt64Array ? 'int64' : d instanceof Int8Array ? 'int8' : d instanceof Uint8Array ? (type === 'bool' ? 'bool' : 'uint8') : null;
  if (!natural || (type !== undefined && type !== natural)) return -1;
  return TYPE_CODES.indexOf(natural);
}
type Pending = { resolve: (r: ThreadReply & { ok: true }) => void; reject: (e: Error) => void };

/**
 * The thread is plain JavaScript (shadow-thread.mjs), beside this file in the sources and in dist/, and
 * beside the bundle (lib/agent.mjs) in the packaged agent: no TypeScript loader in the thread.
 */
export function spawnShadowThread(): Worker {
  // execArgv: []: the thread needs none of the agent's flags (tsx's --import would load a TypeScript loader into it)
  return new Worker(new URL('./shadow-thread.mjs', import.meta.url), { execArgv: [] });
}

/**
 * Inputs from this size on are moved to the thread (transferred), smaller ones cloned: measured on a
 * cold cache, a transfer costs ~8 µs more than cloning 256 bytes, while cloning grows with the bytes.
 */
const TRANSFER_FROM_BYTES = 16 * 1024;

/** The buffers of typed arrays that own their whole buffer (the shadow runner's copies), when big enough to be worth moving. */
function ownedBuffers(feeds: Feeds): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  let bytes = 0;
  for (const name in feeds) {
    const d = feeds[name].data;
    if (!Array.isArray(d) && d.buffer instanceof ArrayBuffer && d.byteOffset === 0 && d.byteLength === d.buffer.byteLength && !out.includes(d.buffer)) { out.push(d.buffer); bytes += d.byteLength; }
  }
  return bytes >= TRANSFER_FROM_BYTES ? out : [];
}

/** a run's outputs, with the run's own time in the thread (DEVICE_MS: the time the model took where it ran) */
function outputsOf(reply: ThreadReply & { ok: true }): Outputs {
  const out = reply.outputs as Outputs;
  (out as { [DEVICE_MS]?: number })[DEVICE_MS] = reply.ms;
  return out;
}

/** a refused call's error (not the model's when the thread says so) */
function replyError(reply: ThreadReply & { ok: false }): Error {
  return reply.notModel ? markNotAModelError(new Error(reply.error)) : new Error(reply.error);
}

/** how many dry submits warm the caller's path (enough for V8 11 to compile it with its default budgets; checked with --trace-opt) */
const WARM_RUNS = 3000;
const WARM_ARRAYS = {
  float32: (n: number) => new Float32Array(n), int32: (n: number) => new Int32Array(n), int64: (n: number) => new BigInt64Array(n),
  uint8: (n: number) => new Uint8Array(n), int8: (n: number) => new Int8Array(n),
} as const;

export class ThreadRuntime implements ModelRuntime {
  private worker: Worker | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private sessions = 0;
  /** why the current thread died, once it has */
  private dead: Error | null = null;

  private ring: Ring | null = null;
  private readonly ringSlots: number;

  /** `ringSlots`: inputs that may wait in the sample ring (config shadow.queue); 0: no ring, every input goes through run() */
  constructor(private readonly spawn: () => Worker = spawnShadowThread, opts: { ringSlots?: number } = {}) {
    this.ringSlots = opts.ringSlots ?? 0;
  }

  /** true while a thread is running (tests and the bench read it) */
  get running(): boolean { return this.worker !== null; }

  /** the ring's counters (tests read them): inputs handed over, inputs the thread took, the caller's model runs now */
  get ringCounts(): { written: number; taken: number; callerRuns: number } | null {
    const r = this.ring;
    return r ? { written: r.written, taken: Atomics.load(r.ctl, 1), callerRuns: Atomics.load(r.ctl, 3) } : null;
  }

  /** the thread's id, for resource figures (null when none runs) */
  get threadId(): number | null { return this.worker?.threadId ?? null; }

  private start(): Worker {
    if (this.worker) return this.worker;
    const w = this.spawn();
    this.worker = w;
    this.dead = null;
    w.unref(); // an agent that forgets to stop must not be kept alive by its shadow thread
    w.on('message', (r: ThreadReply) => {
      if (r.id < 0) { this.answered(r); return; }
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      if (r.ok) p.resolve(r);
      else p.reject(replyError(r));
    });
    this.ring = null;
    if (this.ringSlots > 0) {
      const n = this.ringSlots;
      const ring: Ring = {
        ctl: new Int32Array(new SharedArrayBuffer(16)), meta: new Int32Array(new SharedArrayBuffer(4 * RING.META * n)),
        deadline: new Float64Array(new SharedArrayBuffer(8 * n)), data: new Uint8Array(new SharedArrayBuffer(RING.SLOT_BYTES * n)), f32: new Float32Array(0), slots: n, written: 0,
        done: new Array(2 * n).fill(undefined),
      };
      ring.f32 = new Float32Array(ring.data.buffer); // float32 inputs are copied without a view made per call
      w.postMessage({ op: 'ring', ctl: ring.ctl.buffer, meta: ring.meta.buffer, deadline: ring.deadline.buffer, data: ring.data.buffer, slots: n });
      this.ring = ring;
    }
    const die = (err: Error) => {
      if (this.worker !== w) return;
      this.worker = null;
      this.dead = markNotAModelError(err);
      this.failAll(this.dead);
    };
    w.on('error', die);
    w.on('exit', (code) => die(new Error(`the shadow thread exited (code ${code})`)));
    return w;
  }

  private call(w: Worker, req: ThreadRequest, transfer: ArrayBuffer[] = []): Promise<ThreadReply & { ok: true }> {
    if (this.worker !== w) return Promise.reject(this.dead ?? markNotAModelError(new Error('the shadow thread is gone')));
    return new Promise((resolve, reject) => {
      this.pending.set(req.id, { resolve, reject });
      w.postMessage(req, transfer);
    });
  }

  async load(artifact: Uint8Array, key: { sha256: string; sessionConfig: Record<string, string> }): Promise<LoadedModel> {
    const w = this.start();
    this.sessions++;
    const bytes = artifact.slice(); // a copy the thread owns (the caller's may be a view into a pooled buffer)
    let session: number;
    let inputNames: string[];
    try {
      const r = await this.call(w, { op: 'load', id: this.nextId++, bytes, sha256: key.sha256, sessionConfig: key.sessionConfig }, [bytes.buffer as ArrayBuffer]);
      session = r.session!;
      inputNames = r.inputNames ?? [];
    } catch (err) {
      await this.releaseOne();
      throw err;
    }
    let released = false;
    return {
      run: async (feeds: Feeds, opts?: { transfer?: boolean }): Promise<Outputs> => {
        return outputsOf(await this.call(w, { op: 'run', id: this.nextId++, session, feeds }, opts?.transfer ? ownedBuffers(feeds) : []));
      },
      submit: (feeds, maxWaitMs, done) => (released ? 'unsupported' : this.submit(w, session, inputNames, feeds, maxWaitMs, done, false)),
      warm: (inputs) => { if (!released) this.warm(w, session, inputNames, inputs); },
      release: async () => {
        if (released) return;
        released = true;
        if (this.worker === w) await this.call(w, { op: 'release', id: this.nextId++, session }).catch(() => {});
        await this.releaseOne();
      },
    };
  }

  /** Into the ring, on the caller's path: checks, one copy into shared memory, a few stores (no promise, no Map entry, no scheduling); `done` gets the answer. */
  private submit(w: Worker, session: number, names: string[], feeds: Feeds, maxWaitMs: number, done: (err: unknown, out?: Outputs) => void, dry: boolean): 'queued' | 'full' | 'unsupported' {
    const r = this.ring;
    if (!r || this.worker !== w) return 'unsupported';
    // (the counters in shared memory are int32 and wrap; their difference does not)
    if ((((r.written | 0) - Atomics.load(r.ctl, 1)) | 0) >= r.slots) return 'full';
    const at = r.written % r.done.length;
    if (r.done[at] !== undefined) return 'full'; // answers not yet handled here (this thread was busy): the thread is behind too
    const slot = r.written % r.slots;
    const base = slot * RING.META;
    let count = 0;
    let off = 0;
    for (const name in feeds) {
      const t = feeds[name];
      const d = t.data;
      if (Array.isArray(d) || count === RING.MAX_TENSORS || t.dims.length > RING.MAX_DIMS || off + d.byteLength > RING.SLOT_BYTES) return 'unsupported';
      const index = names.indexOf(name);
      const code = typeCode(t.type, d);
      if (index < 0 || code < 0) return 'unsupported';
      const o = base + 2 + count * RING.PER_TENSOR;
      r.meta[o] = index; r.meta[o + 1] = code; r.meta[o + 2] = t.dims.length;
      for (let k = 0; k < t.dims.length; k++) r.meta[o + 3 + k] = t.dims[k];
      r.meta[o + 9] = off; r.meta[o + 10] = d.byteLength;
      if (d instanceof Float32Array) r.f32.set(d, (slot * RING.SLOT_BYTES + off) >> 2);
      else r.data.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), slot * RING.SLOT_BYTES + off);
      off += (d.byteLength + 7) & ~7;
      count++;
    }
    r.meta[base] = session;
    r.meta[base + 1] = count;
    r.deadline[slot] = Date.now() + maxWaitMs;
    if (dry) return 'queued'; // warm(): the slot was written but is not handed over (ctl[0] unchanged), so the thread never reads it
    r.done[at] = done;
    r.written++;
    Atomics.store(r.ctl, 0, r.written | 0);
    if (Atomics.load(r.ctl, 2) === 1) Atomics.notify(r.ctl, 0); // asleep (no input for a while): wake it; else it looks on its own
    return 'queued';
  }

  /**
   * JIT warm-up of the caller's path, once per load: `submit` runs on a tenth of the caller's calls, which
   * left it in V8's interpreter for the whole of a soak (bench/shadow-diag.ts: a sampled offer() 26 µs
   * interpreted, 14 µs compiled, on a 0.14 ms call). Here it runs WARM_RUNS times on zeroed inputs shaped
   * like the model's (its manifest's io.inputs, unknown dimensions 1), writing the free slot without
   * handing it over, so V8 compiles it before the first sampled call. About 2 ms at load.
   */
  private warm(w: Worker, session: number, names: string[], inputs: readonly { name: string; type: string; shape: readonly (number | string | null)[] }[]): void {
    const feeds: Feeds = {};
    for (const spec of inputs) {
      const make = WARM_ARRAYS[spec.type as keyof typeof WARM_ARRAYS];
      if (!make) return; // a type the ring does not carry: every input goes through run() anyway
      const dims = spec.shape.map((d) => (typeof d === 'number' && d > 0 ? d : 1));
      const n = dims.reduce((a, b) => a * b, 1);
      if (n * 8 > RING.SLOT_BYTES) return;
      feeds[spec.name] = { data: make(n), dims };
    }
    const none = () => {};
    for (let i = 0; i < WARM_RUNS; i++) if (this.submit(w, session, names, feeds, 0, none, true) !== 'queued') return;
  }

  /** every call and ring input still waiting for the thread fails with `err` */
  private failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    const r = this.ring;
    if (!r) return;
    for (let i = 0; i < r.done.length; i++) {
      const cb = r.done[i];
      r.done[i] = undefined;
      cb?.(err);
    }
  }

  /** a ring input's answer (id -(sequence + 1)) */
  private answered(reply: ThreadReply): void {
    const r = this.ring;
    if (!r) return;
    const at = (-reply.id - 1) % r.done.length;
    const cb = r.done[at];
    if (!cb) return;
    r.done[at] = undefined;
    if (reply.ok) cb(null, outputsOf(reply));
    else cb(replyError(reply));
  }

  /**
   * The caller's thread starts running a model (enterCall) or has finished (leaveCall): ctl[3] counts
   * them, and the shadow thread starts a sampled input's run only while it is 0 (up to a few ms), so a candidate run rarely
   * shares the machine with a caller's call (shadow-thread.mjs `waitForCallerIdle`).
   */
  enterCall(): Int32Array | null {
    const r = this.ring;
    if (!r) return null;
    Atomics.add(r.ctl, 3, 1);
    return r.ctl; // what leaveCall takes: the same ring's counter even if the thread was replaced meanwhile
  }

  leaveCall(ctl: Int32Array | null): void {
    if (ctl) Atomics.sub(ctl, 3, 1);
  }

  /** the last session gone: the thread (and its WASM memory) goes too */
  private async releaseOne(): Promise<void> {
    if (--this.sessions > 0 || !this.worker) return;
    const w = this.worker;
    this.worker = null;
    this.dead = markNotAModelError(new Error('the shadow thread was stopped'));
    this.failAll(this.dead);
    await w.terminate();
  }
}
