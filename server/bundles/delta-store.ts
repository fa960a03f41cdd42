// Which delta to offer a device that holds artifact A and is assigned B: made once per pair (the ONNX-aware
// delta, or the generic one for what is not ONNX: delta-builder.ts), kept as a blob served by the artifact
// route like any other, and offered only if smaller than deltaMaxFraction of B. A pair not worth a delta
// is remembered too (delta_sha256 NULL), so it is not built again for every device.
// Deltas are built in a thread of their own (delta-thread.ts): a push of a large model, or a wave assigned
// while a pair is made, never holds the server's event loop (the embedded broker, the API) for the
// seconds a diff can take. One build per pair at a time: whoever asks for a pair being made waits for it.
import type { Worker } from 'node:worker_threads';
import type { Db } from '../db/database.ts';
import { spawnModuleWorker } from '../worker-boot.ts';
import type { BlobStore } from './blob-store.ts';
import type { DeltaJob, DeltaJobResult } from './delta-thread.ts';

export interface DeltaOffer { baseSha256: string; sha256: string; length: number }

interface Row { delta_sha256: string | null; delta_length: number; target_length: number }

/**
 * The largest artifact a delta is made for while a wave is assigned (the assignment waits for it: about a
 * microsecond per byte, in the builder's thread). Larger ones get deltas when their bundle is pushed.
 */
export const ON_DEMAND_MAX_BYTES = 4 * 1024 * 1024;
/** no deltas at all for larger artifacts (a 10 MB pair of unrelated models takes several seconds) */
export const BUILD_MAX_BYTES = 32 * 1024 * 1024;
/** how many earlier versions of the model a push makes deltas from */
const PREPARE_VERSIONS = 3;

export class DeltaStore {
  private activeStmt: ReturnType<Db['prepare']> | null = null;
  private worker: Worker | null = null;
  private nextJob = 1;
  private readonly jobs = new Map<number, { resolve: (r: DeltaJobResult) => void }>();
  /** pairs being made, by `base:target` */
  private readonly building = new Map<string, Promise<void>>();
  private closed = false;

  constructor(private readonly db: Db, private readonly blobs: BlobStore, private readonly maxFraction: number,
    private readonly log: (msg: string) => void = () => {}) {}

  /**
   * When a bundle is pushed: start making the deltas to its artifact from the artifacts of the model's last
   * PREPARE_VERSIONS versions (what devices most likely run), whatever their size. Returns at once; an
   * assignment that needs one of these pairs waits for it (offer), `idle()` waits for all.
   */
  prepareFor(modelId: string, targetSha256: string): void {
    if (this.maxFraction <= 0) return;
    const bases = this.db.prepare(`SELECT artifact_sha256 AS a, MAX(version) AS v FROM bundles WHERE model_id = ? AND artifact_sha256 != ?
      GROUP BY artifact_sha256 ORDER BY v DESC LIMIT ?`).all(modelId, targetSha256, PREPARE_VERSIONS) as { a: string }[];
    for (const b of bases) {
      this.offer(b.a, targetSha256, true).catch((err: Error) => this.log(`delta ${b.a.slice(0, 12)} -> ${targetSha256.slice(0, 12)} not made: ${err.message}`));
    }
  }

  /**
   * The delta base -> target to offer, or null (deltas off, no such blobs, or not small enough). One not
   * made yet is made now only if the target is at most ON_DEMAND_MAX_BYTES (or `build` says so); one
   * being made (a push started it) is waited for.
   */
  async offer(baseSha256: string, targetSha256: string, build = false): Promise<DeltaOffer | null> {
    if (this.maxFraction <= 0 || baseSha256 === targetSha256) return null;
    const key = `${baseSha256}:${targetSha256}`;
    const pending = this.building.get(key);
    if (pending) await pending;
    let row = this.row(baseSha256, targetSha256);
    // a pair found not worth it under a lower fraction than today's is made again
    if (row && !row.delta_sha256 && row.delta_length < this.maxFraction * row.target_length) {
      this.db.prepare('DELETE FROM artifact_deltas WHERE base_sha256 = ? AND target_sha256 = ?').run(baseSha256, targetSha256);
      row = undefined;
    }
    if (!row) {
      if (this.closed || !this.blobs.has(baseSha256) || !this.blobs.has(targetSha256)) return null;
      const size = this.blobs.size(targetSha256);
      if ((!build && size > ON_DEMAND_MAX_BYTES) || size > BUILD_MAX_BYTES) return null;
      let made = this.building.get(key);
      if (!made) {
        made = this.make(baseSha256, targetSha256).finally(() => this.building.delete(key));
        this.building.set(key, made);
      }
      await made;
      row = this.row(baseSha256, targetSha256);
      if (!row) return null;
    }
    // the fraction may have been lowered since the pair was made
    if (!row.delta_sha256) return null;
    if (row.delta_length >= this.maxFraction * row.target_length) return null;
    return { baseSha256, sha256: row.delta_sha256, length: row.delta_length };
  }

  /** resolves once no delta is being made (tests, benches, shutdown) */
  async idle(): Promise<void> {
    while (this.building.size) await Promise.allSettled([...this.building.values()]);
  }

  /** waits for the deltas being made, then ends the builder's thread */
  async close(): Promise<void> {
    this.closed = true;
    await this.idle();
    const w = this.worker;
    this.worker = null;
    if (w) await w.terminate();
  }

  /**
   * The artifact a device runs as far as the server knows it: the active manifest it reported, accepted
   * only because the server assigned that manifest to it (device ingest checks claims against
   * device_assignments; an unassigned claim is kept apart and never used here).
   */
  activeArtifact(deviceId: string): string | null {
    this.activeStmt ??= this.db.prepare(`SELECT b.artifact_sha256 FROM devices d JOIN bundles b ON b.manifest_sha256 = d.active_manifest_sha256
      WHERE d.device_id = ?`);
    const r = this.activeStmt.get(deviceId) as { artifact_sha256: string } | undefined;
    return r?.artifact_sha256 ?? null;
  }

  private row(baseSha256: string, targetSha256: string): Row | undefined {
    return this.db.prepare('SELECT delta_sha256, delta_length, target_length FROM artifact_deltas WHERE base_sha256 = ? AND target_sha256 = ?')
      .get(baseSha256, targetSha256) as Row | undefined;
  }

  /** builds the pair in the thread and records it (the blob if worth offering, the row either way) */
  private async make(baseSha256: string, targetSha256: string): Promise<void> {
    const base = this.blobs.get(baseSha256);
    const target = this.blobs.get(targetSha256);
    const r = await this.run({ base, target });
    if (!r.ok) throw new Error(r.error);
    const worth = r.delta.byteLength < this.maxFraction * target.byteLength;
    const now = new Date().toISOString();
    const stored = worth ? this.blobs.put(r.delta) : null;
    this.db.transaction(() => {
      if (stored) this.db.prepare('INSERT OR IGNORE INTO artifacts (sha256, length, created_at) VALUES (?, ?, ?)').run(stored.sha256, stored.length, now);
      this.db.prepare(`INSERT OR IGNORE INTO artifact_deltas (base_sha256, target_sha256, delta_sha256, delta_length, target_length, kind, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?)`).run(baseSha256, targetSha256, stored?.sha256 ?? null, r.delta.byteLength, target.byteLength, r.kind, now);
    })();
  }

  private run(job: Omit<DeltaJob, 'id'>): Promise<DeltaJobResult> {
    const w = this.thread();
    const id = this.nextJob++;
    return new Promise((resolve) => {
      this.jobs.set(id, { resolve });
      // copies (the blob store may hand out cached buffers the thread must not take away)
      w.postMessage({ id, base: job.base, target: job.target } satisfies DeltaJob);
    });
  }

  private thread(): Worker {
    if (this.worker) return this.worker;
    const w = spawnModuleWorker(import.meta.url, './delta-thread.ts');
    w.unref();
    const fail = (error: string) => {
      for (const [id, j] of this.jobs) j.resolve({ id, ok: false, error });
      this.jobs.clear();
      if (this.worker === w) this.worker = null; // the next job starts a new thread
    };
    w.on('message', (r: DeltaJobResult) => { const j = this.jobs.get(r.id); this.jobs.delete(r.id); j?.resolve(r); });
    w.on('error', (err) => fail(`the delta builder's thread failed: ${err.message}`));
    w.on('exit', (code) => { if (this.jobs.size) fail(`the delta builder's thread exited (code ${code})`); });
    this.worker = w;
    return w;
  }
}
