// How the agent turns verified bytes into something that runs. One onnxruntime-web session per load on
// a device; the simulator passes a shared, reference-counted runtime so thousands of simulated devices
// holding the same model share one session (memory stays bounded).
import { createSession, runSession, type Feeds, type Outputs } from '../runtime/onnx-session.ts';

/**
 * Simulated hardware only: a runtime that models a device's inference time puts it on the outputs under
 * this key, and the agent reports it instead of the host's wall time. A simulator process hosting
 * hundreds of devices would otherwise report its own event-loop lag as model latency (a 1.05x slower
 * model measured 2.8x). The shadow thread (shadow-worker.ts) sets it to the run's time inside the thread,
 * without the message hops. Other real runtimes never set it; symbols stay out of Object.entries and JSON.
 */
export const DEVICE_MS = Symbol('fleet.deviceMs');

export function deviceMsOf(out: Outputs): number | undefined {
  const ms = (out as { [DEVICE_MS]?: number })[DEVICE_MS];
  return typeof ms === 'number' && Number.isFinite(ms) && ms >= 0 ? ms : undefined;
}

/**
 * Simulated hardware only: a runtime wrapper marks an error with this when the failure is the simulator's
 * (its shared WASM runtime), not the simulated model's, and the agent then does not count it in telemetry
 * or probation. A simulator that invents model errors made a campaign revert a good model (issue 21).
 * Real runtimes never set it.
 */
export const NOT_A_MODEL_ERROR = Symbol('fleet.notAModelError');

export function markNotAModelError(err: unknown): Error {
  const e = err instanceof Error ? err : new Error(String(err));
  (e as { [NOT_A_MODEL_ERROR]?: true })[NOT_A_MODEL_ERROR] = true;
  return e;
}

export function isNotAModelError(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { [NOT_A_MODEL_ERROR]?: true })[NOT_A_MODEL_ERROR] === true;
}

export interface LoadedModel {
  /** `transfer`: the caller gives the feeds' typed arrays away (a runtime in another thread may take their buffers instead of copying) */
  run(feeds: Feeds, opts?: { transfer?: boolean }): Promise<Outputs>;
  /**
   * A runtime in another thread may take an input without the caller scheduling anything: copied at once
   * into shared memory ('queued'), run when that thread gets to it; `done` gets the outputs, or an error
   * (not the model's when the input waited over `maxWaitMs` or the thread died). 'full': no room (the
   * thread is behind); 'unsupported': use run(). `done` is never called unless 'queued' was returned.
   */
  submit?(feeds: Feeds, maxWaitMs: number, done: (err: unknown, out?: Outputs) => void): 'queued' | 'full' | 'unsupported';
  /** with submit: run its code on zeroed inputs of these shapes without handing any over (JIT warm-up at load) */
  warm?(inputs: readonly { name: string; type: string; shape: readonly (number | string | null)[] }[]): void;
  release(): Promise<void>;
}

export interface ModelRuntime {
  load(artifact: Uint8Array, key: { sha256: string; sessionConfig: Record<string, string> }): Promise<LoadedModel>;
}

export class OrtRuntime implements ModelRuntime {
  async load(artifact: Uint8Array, key: { sessionConfig: Record<string, string> }): Promise<LoadedModel> {
    const session = await createSession(artifact, { config: key.sessionConfig });
    return { run: (feeds) => runSession(session, feeds), release: () => session.release() };
  }
}

export class SharedOrtRuntime implements ModelRuntime {
  private readonly entries = new Map<string, { refs: number; ready: Promise<Awaited<ReturnType<typeof createSession>>> }>();

  async load(artifact: Uint8Array, key: { sha256: string; sessionConfig: Record<string, string> }): Promise<LoadedModel> {
    const id = `${key.sha256}:${JSON.stringify(key.sessionConfig)}`;
    let entry = this.entries.get(id);
    if (!entry) {
      entry = { refs: 0, ready: createSession(artifact, { config: key.sessionConfig }) };
      this.entries.set(id, entry);
      entry.ready.catch(() => this.entries.delete(id));
    }
    entry.refs++;
    let session;
    try {
      session = await entry.ready;
    } catch (err) {
      entry.refs--;
      throw err;
    }
    let released = false;
    return {
      run: (feeds) => runSession(session, feeds),
      release: async () => {
        if (released) return;
        released = true;
        if (--entry!.refs === 0 && this.entries.get(id) === entry) {
          this.entries.delete(id);
          await session.release();
        }
      },
    };
  }

  get sessions(): number {
    return this.entries.size;
  }
}
