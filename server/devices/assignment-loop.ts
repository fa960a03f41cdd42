// Closes the loop on plain assignments (POST /v1/assignments): follows each device's reports and
// re-assigns (new sequence number, bounded attempts) or marks the assignment failed, as
// nextAssignmentStep decides. The state is one row per device in SQLite, shown by GET /v1/devices/:id.
import type { FastifyBaseLogger } from 'fastify';
import type { Status } from '../../shared/messages.ts';
import type { Db } from '../db/database.ts';
import type { DeviceIngest } from './device-ingest.ts';
import type { Director } from './director.ts';
import { nextAssignmentStep, type PlainAssignment } from './assignment-retry.ts';

export const DEFAULT_ASSIGNMENT_ATTEMPTS = 3;

interface Row { device_id: string; manifest_sha256: string; seq: number; attempts: number; state: PlainAssignment['state']; reason: string | null; updated_at: string }

export class AssignmentLoop {
  private off: (() => void) | null = null;
  private readonly sql;

  constructor(private readonly db: Db, private readonly director: Director, private readonly log: FastifyBaseLogger, private readonly maxAttempts = DEFAULT_ASSIGNMENT_ATTEMPTS) {
    this.sql = {
      get: db.prepare('SELECT * FROM plain_assignments WHERE device_id = ?'),
      put: db.prepare(`INSERT INTO plain_assignments (device_id, manifest_sha256, seq, attempts, state, reason, updated_at) VALUES (?, ?, ?, ?, 'assigned', NULL, ?)
        ON CONFLICT(device_id) DO UPDATE SET manifest_sha256 = excluded.manifest_sha256, seq = excluded.seq, attempts = excluded.attempts, state = 'assigned', reason = NULL, updated_at = excluded.updated_at`),
      settle: db.prepare('UPDATE plain_assignments SET state = ?, reason = ?, updated_at = ? WHERE device_id = ? AND seq = ?'),
    };
  }

  start(ingest: DeviceIngest): void {
    this.off = ingest.onMessage((kind, deviceId, msg) => { if (kind === 'status') void this.onStatus(deviceId, msg as Status); });
  }

  stop(): void {
    this.off?.();
    this.off = null;
  }

  /** Assign as an operator does; the loop follows these devices from here. */
  async assign(manifestSha256: string, deviceIds: string[], attempts = 1): Promise<{ deviceId: string; seq: number }[]> {
    const now = new Date().toISOString();
    // recorded in the director's transaction: followed from the moment it is signed
    return this.director.assign(manifestSha256, deviceIds, (assigned) => { for (const a of assigned) this.sql.put.run(a.deviceId, manifestSha256, a.seq, attempts, now); });
  }

  /** The device's plain assignment, for GET /v1/devices/:id (null if it never had one). */
  view(deviceId: string, desiredSeq: number) {
    const r = this.sql.get.get(deviceId) as Row | undefined;
    if (!r) return null;
    // a later assignment (a campaign, a key change) took over from this one
    const state = r.state === 'assigned' && desiredSeq > r.seq ? 'superseded' : r.state;
    return { manifestSha256: r.manifest_sha256, seq: r.seq, attempts: r.attempts, maxAttempts: this.maxAttempts, state, reason: r.reason, updatedAt: r.updated_at };
  }

  private async onStatus(deviceId: string, s: Status): Promise<void> {
    const r = this.sql.get.get(deviceId) as Row | undefined;
    const step = nextAssignmentStep(r ? { manifestSha256: r.manifest_sha256, seq: r.seq, attempts: r.attempts, state: r.state } : null, s, this.maxAttempts);
    if (step.kind === 'ignore' || !r) return;
    const now = new Date().toISOString();
    if (step.kind === 'done') { this.sql.settle.run('done', null, now, deviceId, r.seq); return; }
    if (step.kind === 'fail') {
      this.sql.settle.run('failed', step.reason, now, deviceId, r.seq);
      this.log.warn({ deviceId, event: 'assignment_failed', reason: step.reason, attempts: r.attempts }, 'plain assignment failed');
      return;
    }
    this.log.info({ deviceId, event: 'assignment_retry', reason: step.reason, attempt: step.attempt }, 're-assigning');
    try {
      await this.assign(r.manifest_sha256, [deviceId], step.attempt);
    } catch (err) {
      this.sql.settle.run('failed', step.reason, now, deviceId, r.seq);
      this.log.warn({ deviceId, event: 'assignment_retry_failed', err: (err as Error).message }, 're-assign failed');
    }
  }
}
