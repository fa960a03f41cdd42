// External brokers only: a desired state the device has not acted on is published again. A guard: a
// clustered broker may accept (PUBACK) a desired state and still not deliver it while a node fails (the
// loss test/e2e/nats-failover.test.ts first showed was the agent's unchecked resubscription, fixed in
// device-agent/subscribe-check.ts; this stays as defence in depth). So every
// intervalMs, each online device whose reports name no director sequence at or above its stored desired
// one, and that was already in that state at the previous look, gets the same stored bytes again
// (retained). The agent ignores a signed assignment it already has (same signature), so this is safe;
// with the embedded broker, which delivers from the server's own process, it is off.
import type { FastifyBaseLogger } from 'fastify';
import type { Db } from '../db/database.ts';
import type { FleetBus } from '../mqtt/broker.ts';
import { topics } from '../../shared/topics.ts';

export class DesiredResync {
  private timer: NodeJS.Timeout | null = null;
  private waiting = new Map<string, number>(); // device -> desired seq seen unacted at the last look
  private running = false;
  /** desired states published again so far */
  resent = 0;
  private readonly behind;

  constructor(private readonly db: Db, private readonly bus: FleetBus, private readonly log: FastifyBaseLogger, private readonly maxPerTick = 2000) {
    this.behind = db.prepare(`SELECT d.device_id, d.desired_seq, d.desired_json FROM devices d
      WHERE d.online = 1 AND d.desired_json IS NOT NULL AND d.desired_seq > 0
        AND NOT EXISTS (SELECT 1 FROM status_events e WHERE e.device_id = d.device_id AND e.director_seq >= d.desired_seq)
      LIMIT ?`);
  }

  start(intervalMs: number): void {
    if (intervalMs <= 0) return;
    this.timer = setInterval(() => void this.tick(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** one look: resend what was behind at the previous look and still is; remember the rest */
  async tick(): Promise<number> {
    if (this.running) return 0;
    this.running = true;
    try {
      const rows = this.behind.all(this.maxPerTick) as { device_id: string; desired_seq: number; desired_json: string }[];
      const next = new Map<string, number>();
      const again = rows.filter((r) => this.waiting.get(r.device_id) === r.desired_seq);
      for (const r of rows) next.set(r.device_id, r.desired_seq);
      this.waiting = next;
      for (const r of again) await this.bus.publish(topics.desired(r.device_id), r.desired_json, { qos: 1, retain: true });
      if (again.length) this.log.warn({ event: 'desired_resent', devices: again.length }, 'desired states not acted on were published again');
      this.resent += again.length;
      return again.length;
    } catch (err) {
      this.log.error({ err, event: 'desired_resync_failed' }, 'desired resync failed');
      return 0;
    } finally {
      this.running = false;
    }
  }
}
