// Which delta to offer a device that holds artifact A and is assigned B: made once per pair (the ONNX-aware
// delta, or the generic one for what is not ONNX: delta-builder.ts), kept as a blob served by the artifact
// route like any other, and offered only if smaller than deltaMaxFraction of B. A pair not worth a delta
// is remembered too (delta_sha256 NULL), so it is not built again for every device.
import type { Db } from '../db/database.ts';
import type { BlobStore } from './blob-store.ts';
import { buildDelta } from './delta-builder.ts';

export interface DeltaOffer { baseSha256: string; sha256: string; length: number }

interface Row { delta_sha256: string | null; delta_length: number; target_length: number }

/**
 * Making a delta costs about a microsecond of CPU per byte on the server's one thread. Larger artifacts
 * get deltas only when their bundle is pushed (prepareFor), never while a wave is being assigned.
 */
export const ON_DEMAND_MAX_BYTES = 4 * 1024 * 1024;
/** no deltas at all for larger artifacts (a 10 MB pair of unrelated models takes several seconds) */
export const BUILD_MAX_BYTES = 32 * 1024 * 1024;
/** how many earlier versions of the model a push makes deltas from */
const PREPARE_VERSIONS = 3;

export class DeltaStore {
  private activeStmt: ReturnType<Db['prepare']> | null = null;
  constructor(private readonly db: Db, private readonly blobs: BlobStore, private readonly maxFraction: number) {}

  /**
   * When a bundle is pushed: make the deltas to its artifact from the artifacts of the model's last
   * PREPARE_VERSIONS versions (what devices most likely run), whatever their size.
   */
  prepareFor(modelId: string, targetSha256: string): void {
    if (this.maxFraction <= 0) return;
    const bases = this.db.prepare(`SELECT artifact_sha256 AS a, MAX(version) AS v FROM bundles WHERE model_id = ? AND artifact_sha256 != ?
      GROUP BY artifact_sha256 ORDER BY v DESC LIMIT ?`).all(modelId, targetSha256, PREPARE_VERSIONS) as { a: string }[];
    for (const b of bases) this.offer(b.a, targetSha256, true);
  }

  /**
   * The delta base -> target to offer, or null (deltas off, no such blobs, or not small enough). One not
   * made yet is made now only if the target is at most ON_DEMAND_MAX_BYTES (or `build` says so).
   */
  offer(baseSha256: string, targetSha256: string, build = false): DeltaOffer | null {
    if (this.maxFraction <= 0 || baseSha256 === targetSha256) return null;
    let row = this.db.prepare('SELECT delta_sha256, delta_length, target_length FROM artifact_deltas WHERE base_sha256 = ? AND target_sha256 = ?').get(baseSha256, targetSha256) as Row | undefined;
    // a pair found not worth it under a lower fraction than today's is made again
    if (row && !row.delta_sha256 && row.delta_length < this.maxFraction * row.target_length) {
      this.db.prepare('DELETE FROM artifact_deltas WHERE base_sha256 = ? AND target_sha256 = ?').run(baseSha256, targetSha256);
      row = undefined;
    }
    if (!row) {
      if (!this.blobs.has(baseSha256) || !this.blobs.has(targetSha256)) return null;
      const size = this.blobs.size(targetSha256);
      if ((!build && size > ON_DEMAND_MAX_BYTES) || size > BUILD_MAX_BYTES) return null;
      const target = this.blobs.get(targetSha256);
      const { delta, stats } = buildDelta(this.blobs.get(baseSha256), target);
      const worth = delta.byteLength < this.maxFraction * target.byteLength;
      const now = new Date().toISOString();
      const stored = worth ? this.blobs.put(delta) : null;
      this.db.transaction(() => {
        if (stored) this.db.prepare('INSERT OR IGNORE INTO artifacts (sha256, length, created_at) VALUES (?, ?, ?)').run(stored.sha256, stored.length, now);
        this.db.prepare(`INSERT OR IGNORE INTO artifact_deltas (base_sha256, target_sha256, delta_sha256, delta_length, target_length, kind, created_at)
          VALUES (?, ?, ?, ?, ?, ?, ?)`).run(baseSha256, targetSha256, stored?.sha256 ?? null, delta.byteLength, target.byteLength, stats.kind, now);
      })();
      row = { delta_sha256: stored?.sha256 ?? null, delta_length: delta.byteLength, target_length: target.byteLength };
    }
    // the fraction may have been lowered since the pair was made
    if (!row.delta_sha256) return null;
    if (row.delta_length >= this.maxFraction * row.target_length) return null;
    return { baseSha256, sha256: row.delta_sha256, length: row.delta_length };
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
}
