// What devices say over MQTT, validated and stored. Invalid payloads are dropped with a log line and
// counted; they never reach SQLite and never throw into the broker.
import type { FastifyBaseLogger } from 'fastify';
import type { z } from 'zod';
import { Presence, Status, Telemetry } from '../../shared/messages.ts';
import { isTelemetry } from '../../shared/fast-telemetry.ts';
import { isStatus } from '../../shared/fast-status.ts';
import { parseTopic, topics, type TopicKind } from '../../shared/topics.ts';
import type { Db } from '../db/database.ts';
import type { FleetBus } from '../mqtt/broker.ts';
import { TelemetryWriter } from './telemetry-writer.ts';

export interface IngestCounters {
  accepted: Record<string, number>; dropped: Record<string, number>; duplicates: Record<string, number>;
  /** messages kept for another try because the database was locked (each try counts) */
  retried: Record<string, number>;
}

export class DeviceIngest {
  readonly counters: IngestCounters = { accepted: {}, dropped: {}, duplicates: {}, retried: {} };
  readonly telemetry: TelemetryWriter;
  private readonly listeners = new Set<(kind: TopicKind, deviceId: string, msg: unknown) => void>();

  constructor(private readonly db: Db, private readonly log: FastifyBaseLogger, opts: { telemetryWriter?: 'thread' | 'main' } = {}) {
    this.sql = prepareStatements(db);
    this.telemetry = new TelemetryWriter(db, {
      thread: opts.telemetryWriter,
      onError: (err) => this.log.error({ err, event: 'telemetry_writer_failed' }, 'telemetry writer failed'),
    });
    // listeners hear a window after the commit that stored it, and only the first time
    this.telemetry.outcomes = (windows, outcomes) => windows.forEach((t, i) => {
      if (outcomes[i] === 'stored') this.heard('telemetry', t.deviceId, t);
      else if (outcomes[i] === 'duplicate') this.counters.duplicates.telemetry = (this.counters.duplicates.telemetry ?? 0) + 1;
      else {
        this.counters.dropped.telemetry = (this.counters.dropped.telemetry ?? 0) + 1;
        this.log.error({ deviceId: t.deviceId, seq: t.seq, event: 'telemetry_store_failed' }, 'telemetry window not stored');
      }
    });
  }

  async start(bus: FleetBus): Promise<void> {
    await bus.subscribe(topics.all('presence'), (t, p) => this.handle('presence', t, p, Presence, (m) => this.onPresence(m)));
    await bus.subscribe(topics.all('status'), (t, p) => this.queueStatus(t, p));
    await bus.subscribe(topics.all('telemetry'), (t, p) => this.queueTelemetry(t, p));
  }

  /** Called after a message is stored (the rollout engine and tests listen here). */
  onMessage(fn: (kind: TopicKind, deviceId: string, msg: unknown) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Apply queued statuses, store queued telemetry, and stop the telemetry writer thread. */
  async stop(): Promise<void> {
    this.flushStatuses();
    await this.telemetry.close();
  }

  // Telemetry is validated here and stored by the writer thread (telemetry-writer.ts). The handler's
  // promise settles at the commit that stored the window, and the broker holds the device's PUBACK until
  // then (server/mqtt/broker.ts runs the handlers before aedes acknowledges; the external bus acknowledges
  // after them), so a window the device forgets is a stored window. The writer gathers the windows of
  // many devices into one transaction; only one device's next window waits for its previous commit.
  private queueTelemetry(topic: string, payload: Buffer): Promise<void> | void {
    const text = payload.toString('utf8');
    const t = this.accept('telemetry', topic, text, Telemetry, isTelemetry);
    if (!t) return;
    return this.telemetry.add(t, text);
  }

  // Status messages are applied in batches, one transaction for all that arrived within a couple of
  // milliseconds (a rollout brings thousands a second; a transaction each cost more than the work in it).
  // Each message's PUBACK waits for the commit of its batch, so the device resends anything not stored;
  // listeners hear each stored message after the commit, in arrival order.
  private statusQueue: { status: Status; done: () => void }[] = [];
  private statusTimer: NodeJS.Timeout | null = null;
  private static readonly STATUS_BATCH = 256;
  // Issue 13: with 2 ms a rollout's statuses came about one per batch, and the two commits per batch cost
  // more than the rows in them; 10 ms gathers several per commit at a few ms more before each PUBACK.
  private static readonly STATUS_DELAY_MS = 10;
  /** a batch the database refused as locked is tried again after this long (its PUBACKs wait) */
  private static readonly STATUS_RETRY_MS = 50;
  /** status batches applied and the statuses in them (the bench reports statuses per batch) */
  readonly statusBatches = { batches: 0, statuses: 0 };

  private queueStatus(topic: string, payload: Buffer): Promise<void> | void {
    const status = this.accept('status', topic, payload.toString('utf8'), Status, isStatus);
    if (!status) return;
    return new Promise<void>((done) => {
      this.statusQueue.push({ status, done });
      if (this.statusQueue.length >= DeviceIngest.STATUS_BATCH) this.flushStatuses();
      else if (!this.statusTimer) this.statusTimer = setTimeout(() => this.flushStatuses(), DeviceIngest.STATUS_DELAY_MS);
    });
  }

  private flushStatuses(): void {
    if (this.statusTimer) { clearTimeout(this.statusTimer); this.statusTimer = null; }
    const batch = this.statusQueue;
    if (batch.length === 0) return;
    this.statusQueue = [];
    let stored: (boolean | null)[];
    try {
      stored = this.db.transaction(() => batch.map((b) => this.applyStatus(b.status)))();
    } catch (err) {
      if (isBusy(err)) {
        // the database stayed locked past the busy timeout: nothing of the batch was stored and nothing
        // is wrong with it. Keep every message (no PUBACK yet) and try the whole batch again shortly.
        this.log.warn({ err, event: 'status_batch_retry', statuses: batch.length }, 'database locked; status batch kept for a retry');
        this.counters.retried.status = (this.counters.retried.status ?? 0) + batch.length;
        this.statusQueue = batch.concat(this.statusQueue);
        if (!this.statusTimer) this.statusTimer = setTimeout(() => this.flushStatuses(), DeviceIngest.STATUS_RETRY_MS);
        return;
      }
      // one bad row must not lose the others: each on its own (a failure is logged and dropped)
      this.log.error({ err, event: 'status_batch_failed' }, 'status batch failed; applying one by one');
      stored = batch.map((b) => {
        try { return this.db.transaction(() => this.applyStatus(b.status))(); } catch (e) {
          this.log.error({ err: e, deviceId: b.status.deviceId, event: 'status_store_failed' }, 'status not stored');
          this.counters.dropped.status = (this.counters.dropped.status ?? 0) + 1;
          return null;
        }
      });
    }
    // a batch kept for a retry above is counted when it is applied
    this.statusBatches.batches++;
    this.statusBatches.statuses += batch.length;
    // listeners' own synchronous writes (the rollout engine's campaign rows) share one transaction too
    this.db.transaction(() => batch.forEach((b, i) => {
      if (stored[i] === true) this.heard('status', b.status.deviceId, b.status);
      else if (stored[i] === false) this.counters.duplicates.status = (this.counters.duplicates.status ?? 0) + 1;
    }))();
    for (const b of batch) b.done();
  }

  /** `store` returns false for a message it already had (a resend): listeners do not hear it twice. */
  private handle<S extends z.ZodType>(kind: TopicKind, topic: string, payload: Buffer, schema: S, store: (msg: z.infer<S>) => boolean | void, fast?: (x: unknown) => boolean): void {
    const msg = this.accept(kind, topic, payload.toString('utf8'), schema, fast);
    if (!msg) return;
    if (store(msg) === false) {
      this.counters.duplicates[kind] = (this.counters.duplicates[kind] ?? 0) + 1;
      return;
    }
    this.heard(kind, (msg as unknown as { deviceId: string }).deviceId, msg);
  }

  private heard(kind: TopicKind, deviceId: string, msg: unknown): void {
    this.counters.accepted[kind] = (this.counters.accepted[kind] ?? 0) + 1;
    for (const fn of this.listeners) {
      try {
        fn(kind, deviceId, msg);
      } catch (err) {
        this.log.error({ err, deviceId, kind, event: 'ingest_listener_failed' }, 'a listener failed on a stored message');
      }
    }
  }

  /** The message if it is on a fleet topic, is JSON, passes its schema and names the topic's device; otherwise dropped (counted, logged). */
  private accept<S extends z.ZodType>(kind: TopicKind, topic: string, text: string, schema: S, fast?: (x: unknown) => boolean): z.infer<S> | null {
    const where = parseTopic(topic);
    const drop = (why: string): null => {
      this.counters.dropped[kind] = (this.counters.dropped[kind] ?? 0) + 1;
      this.log.warn({ topic, event: 'mqtt_payload_dropped' }, why);
      return null;
    };
    if (!where) return drop('not a fleet topic');
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      return drop('payload is not JSON');
    }
    // the hot message's hand-written check first (it only ever accepts what the schema accepts); zod decides the rest
    const parsed = fast?.(raw) ? { success: true as const, data: raw as z.infer<S> } : schema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      return drop(`invalid ${kind}: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
    }
    const msg = parsed.data as unknown as { deviceId: string };
    if (msg.deviceId !== where.deviceId) return drop(`${kind} names device ${msg.deviceId} on ${where.deviceId}'s topic`);
    return parsed.data;
  }

  private readonly sql: ReturnType<typeof prepareStatements>;

  private ensureDevice(deviceId: string, ts: string): void {
    this.sql.ensure.run(deviceId, ts, ts);
  }

  private onPresence(p: Presence): void {
    const now = new Date().toISOString();
    if (p.hardware) this.telemetry.forgetHardware(p.deviceId);
    this.ensureDevice(p.deviceId, now);
    this.sql.presence.run(p.online ? 1 : 0, p.hardware ?? null, p.tags ? JSON.stringify(p.tags) : null, p.agentVersion ?? null,
      p.freshness ? (p.freshness.stale ? 1 : 0) : null, p.freshness ? 1 : 0, p.freshness?.freshUntil ?? null, p.deviceId);
  }

  /**
   * The server's assignment of this manifest to this device (model id and version), if it made one.
   * Issue 13: a rollout brings four or five statuses per device, each naming the same one or two
   * manifests. device_assignments rows are only ever inserted (never changed or deleted), so a row
   * found once is remembered (bounded); an absent one is looked up again every time, since the director
   * may assign it at any moment.
   */
  private readonly assignments = new Map<string, { model_id: string; version: number }>();
  private assignment(deviceId: string, manifestSha256: string): { model_id: string; version: number } | undefined {
    const key = `${deviceId} ${manifestSha256}`;
    const known = this.assignments.get(key);
    if (known) return known;
    const row = this.sql.assigned.get(deviceId, manifestSha256) as { model_id: string; version: number } | undefined;
    if (row) {
      if (this.assignments.size >= 50_000) this.assignments.clear(); // a bound: two or three entries per device of a rollout
      this.assignments.set(key, row);
    }
    return row;
  }

  /** Applied once per (deviceId, seq): a resent outcome changes nothing and reaches no listener. Runs inside the batch's transaction. */
  private applyStatus(s: Status): boolean {
    const now = new Date().toISOString();
    const ins = this.sql.event.run(s.deviceId, s.ts, s.state, s.reason ?? null, s.detail ?? null, s.directorSeq ?? null, s.manifestSha256 ?? null, now, s.seq ?? null);
    if (ins.changes === 0) {
      this.ensureDevice(s.deviceId, now); // a resend still says the device was heard from
      return false;
    }
    // A device's word about its active model is taken as fact only for a manifest the server assigned
    // to it, and then with the server's own model id and version; anything else is kept as a claim.
    const assigned = s.active ? this.assignment(s.deviceId, s.active.manifestSha256) : undefined;
    const claim = s.active && !assigned ? JSON.stringify(s.active) : null;
    // a multi-model device: every model of its set, each taken as fact only if it was assigned to it
    const set = assigned && s.activeSet ? s.activeSet.map((m) => {
      const a = this.assignment(s.deviceId, m.manifestSha256);
      return a ? { modelId: a.model_id, version: a.version, manifestSha256: m.manifestSha256 } : { ...m, unverified: true };
    }) : null;
    const args = [s.state, s.reason ?? null, s.detail ?? null, s.ts, assigned?.model_id ?? null, assigned?.version ?? null,
      assigned ? s.active!.manifestSha256 : null, claim, s.agentVersion, set ? JSON.stringify(set) : null,
      set && s.release ? JSON.stringify(s.release) : null, now, s.deviceId];
    // one write for a known device (last_seen set with the status: issue 13, a rollout brings four statuses
    // per device); a device heard from for the first time gets its row first
    if (this.sql.status.run(...args).changes === 0) {
      this.ensureDevice(s.deviceId, now);
      this.sql.status.run(...args);
    }
    return true;
  }
}

// Statements prepared once: a fleet sends tens of thousands of status messages in a rollout.
function prepareStatements(db: Db) {
  return {
    ensure: db.prepare('INSERT INTO devices (device_id, first_seen, last_seen) VALUES (?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET last_seen = excluded.last_seen'),
    presence: db.prepare(`UPDATE devices SET online = ?, hardware = COALESCE(?, hardware), tags_json = COALESCE(?, tags_json),
      agent_version = COALESCE(?, agent_version), freshness_stale = COALESCE(?, freshness_stale),
      fresh_until = CASE WHEN ? THEN ? ELSE fresh_until END WHERE device_id = ?`),
    status: db.prepare(`UPDATE devices SET last_state = ?, last_reason = ?, last_detail = ?, last_status_at = ?,
      active_model_id = ?, active_version = ?, active_manifest_sha256 = ?, claimed_active_json = ?, agent_version = ?,
      active_set_json = ?, active_release_json = ?, last_seen = ? WHERE device_id = ?`),
    assigned: db.prepare('SELECT model_id, version FROM device_assignments WHERE device_id = ? AND manifest_sha256 = ? LIMIT 1'),
    event: db.prepare(`INSERT OR IGNORE INTO status_events (device_id, ts, state, reason, detail, director_seq, manifest_sha256, received_at, seq)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
  };
}

/** SQLITE_BUSY and its extended codes: the lock was not free in time (the statement itself was fine) */
function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_BUSY');
}
