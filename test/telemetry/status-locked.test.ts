// A status batch that finds the database locked past the busy timeout is kept, not dropped: its
// messages get no PUBACK until they are stored, and each is stored once. (Before, the batch was applied
// one by one, each waiting the whole busy timeout, and the failures were dropped and acknowledged: the
// device believed a status stored that never was.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import type { Status } from '../../shared/messages.ts';
import { topics } from '../../shared/topics.ts';
import { writeGate } from '../../server/db/database.ts';
import { spawnModuleWorker } from '../../server/worker-boot.ts';
import { enrollDevices, startTestServer, type TestServer } from '../helpers/harness.ts';

describe('status batches while another connection holds the write lock', () => {
  let server: TestServer;
  beforeAll(async () => { server = await startTestServer(); }, 60_000);
  afterAll(async () => { await server?.close(); });

  it('are acknowledged only once stored, every status stored once, none dropped', async () => {
    const { db, ingest } = server.app.fleet;
    const ids = ['lock-1', 'lock-2', 'lock-3'];
    const secrets = await enrollDevices(server, ids);
    const clients = await Promise.all(ids.map((id) => mqtt.connectAsync(server.mqttUrl, { clientId: id, username: id, password: secrets.get(id)!, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000 })));
    const counted0 = ingest.statusBatches.statuses;
    const busyTimeout = db.pragma('busy_timeout', { simple: true }) as number;
    db.pragma('busy_timeout = 200'); // the lock below outlasts it several times over
    const holder = spawnModuleWorker(import.meta.url, '../helpers/busy-writer-thread.ts', { file: db.name, ms: 0, honour: false, gate: writeGate(db), holdMs: 1500 });
    try {
      let released = 0;
      const started = new Promise<void>((resolve, reject) => {
        holder.on('message', (m: { type: string }) => { if (m.type === 'started') resolve(); if (m.type === 'done') released = performance.now(); });
        holder.on('error', reject);
      });
      await started;
      const status = (id: string, seq: number): Status => ({ deviceId: id, seq, ts: new Date().toISOString(), state: 'rejected', reason: 'BAD_SIGNATURE', active: null, agentVersion: '1.0.0' });
      const acked: number[] = [];
      await Promise.all(clients.flatMap((c, i) => [1, 2].map(async (seq) => {
        await c.publishAsync(topics.status(ids[i]), JSON.stringify(status(ids[i], seq)), { qos: 1 });
        acked.push(performance.now());
      })));
      // every PUBACK came after the lock was released (the statuses waited for storage, none was acknowledged unstored)
      expect(released).toBeGreaterThan(0);
      expect(acked).toHaveLength(6);
      expect(acked.every((t) => t >= released)).toBe(true);
      const rows = db.prepare(`SELECT device_id AS d, seq FROM status_events WHERE device_id IN ('lock-1','lock-2','lock-3') ORDER BY device_id, seq`).all();
      expect(rows).toEqual(ids.flatMap((d) => [{ d, seq: 1 }, { d, seq: 2 }]));
      expect(ingest.counters.dropped.status ?? 0).toBe(0);
      expect(ingest.counters.retried.status ?? 0).toBeGreaterThanOrEqual(6);
      // the bench's statuses per batch counts each status once, when its batch is applied (not per try)
      expect(ingest.statusBatches.statuses - counted0).toBe(6);
    } finally {
      db.pragma(`busy_timeout = ${busyTimeout}`);
      await holder.terminate();
      await Promise.all(clients.map((c) => c.endAsync(true)));
    }
  }, 60_000);
});
