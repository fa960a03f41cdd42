// The delta builder's thread (delta-store.ts): one job at a time, bytes in, delta bytes out. Building a
// delta costs about a microsecond per byte; here it never holds the server's event loop (the embedded
// broker, the API) while a large pair is diffed.
import { parentPort } from 'node:worker_threads';
import { buildDelta } from './delta-builder.ts';

export interface DeltaJob { id: number; base: Uint8Array; target: Uint8Array }
export type DeltaJobResult =
  | { id: number; ok: true; delta: Uint8Array; kind: string }
  | { id: number; ok: false; error: string };

parentPort!.on('message', (job: DeltaJob) => {
  let out: DeltaJobResult;
  try {
    const { delta, stats } = buildDelta(job.base, job.target);
    // a view on a shared or larger buffer is copied: only a buffer of its own is transferred
    const own = delta.byteOffset === 0 && delta.buffer.byteLength === delta.byteLength && !(delta.buffer instanceof SharedArrayBuffer) ? delta : delta.slice();
    out = { id: job.id, ok: true, delta: own, kind: stats.kind };
  } catch (err) {
    out = { id: job.id, ok: false, error: (err as Error).message };
  }
  parentPort!.postMessage(out, out.ok ? [out.delta.buffer as ArrayBuffer] : []);
});
