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
type ThreadReply = { id: number; ok: true; session?: number; outputs?: unknown; ms?: number } | { id: number; ok: false; error: string };
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

export class ThreadRuntime implements ModelRuntime {
  private worker: Worker | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private sessions = 0;
  /** why the current thread died, once it has */
  private dead: Error | null = null;

  constructor(private readonly spawn: () => Worker = spawnShadowThread) {}

  /** true while a thread is running (tests and the bench read it) */
  get running(): boolean { return this.worker !== null; }

  /** the thread's id, for resource figures (null when none runs) */
  get threadId(): number | null { return this.worker?.threadId ?? null; }

  private start(): Worker {
    if (this.worker) return this.worker;
    const w = this.spawn();
    this.worker = w;
    this.dead = null;
    w.unref(); // an agent that forgets to stop must not be kept alive by its shadow thread
    w.on('message', (r: ThreadReply) => {
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      if (r.ok) p.resolve(r);
      else p.reject(new Error(r.error));
    });
    const die = (err: Error) => {
      if (this.worker !== w) return;
      this.worker = null;
      this.dead = markNotAModelError(err);
      for (const p of this.pending.values()) p.reject(this.dead);
      this.pending.clear();
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
    try {
      session = (await this.call(w, { op: 'load', id: this.nextId++, bytes, sha256: key.sha256, sessionConfig: key.sessionConfig }, [bytes.buffer as ArrayBuffer])).session!;
    } catch (err) {
      await this.releaseOne();
      throw err;
    }
    let released = false;
    return {
      run: async (feeds: Feeds, opts?: { transfer?: boolean }): Promise<Outputs> => {
        const r = await this.call(w, { op: 'run', id: this.nextId++, session, feeds }, opts?.transfer ? ownedBuffers(feeds) : []);
        const out = r.outputs as Outputs;
        // the run's own time in the thread (DEVICE_MS: the time the model took where it ran)
        (out as { [DEVICE_MS]?: number })[DEVICE_MS] = r.ms;
        return out;
      },
      release: async () => {
        if (released) return;
        released = true;
        if (this.worker === w) await this.call(w, { op: 'release', id: this.nextId++, session }).catch(() => {});
        await this.releaseOne();
      },
    };
  }

  /** the last session gone: the thread (and its WASM memory) goes too */
  private async releaseOne(): Promise<void> {
    if (--this.sessions > 0 || !this.worker) return;
    const w = this.worker;
    this.worker = null;
    this.dead = markNotAModelError(new Error('the shadow thread was stopped'));
    for (const p of this.pending.values()) p.reject(this.dead);
    this.pending.clear();
    await w.terminate();
  }
}
