// The telemetry writer thread: windows are stored by a worker_thread on its own SQLite connection,
// each add() settles only once its window is committed, a thread that dies loses nothing and stores
// nothing twice, and through the real broker each window is stored once and heard after its commit.
import { afterEach, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import mqtt from 'mqtt';
import { openDatabase, type Db } from '../../server/db/database.ts';
import { TelemetryWriter } from '../../server/devices/telemetry-writer.ts';
import { topics } from '../../shared/topics.ts';
import { enrollDevices, startTestServer, tempDir, type TestServer } from '../helpers/harness.ts';
import { waitFor } from '../helpers/wait.ts';
import { T0, sha, win } from './windows.ts';

const A = sha('a');
let dir: string | null = null;
let db: Db | null = null;
let writers: TelemetryWriter[] = [];
let server: TestServer | null = null;

function open(file = 'fleet.db'): Db {
  dir = tempDir('fleet-writer-');
  db = openDatabase(file === ':memory:' ? file : join(dir, file));
  const ins = db.prepare("INSERT INTO devices (device_id, hardware, first_seen, last_seen) VALUES (?, ?, 'x', 'x')");
  for (let d = 0; d < 10; d++) ins.run(`d${d}`, 'cam-a');
  return db;
}
function writer(d: Db, opts: ConstructorParameters<typeof TelemetryWriter>[1] = {}): TelemetryWriter {
  const w = new TelemetryWriter(d, { now: () => T0 + 3600_000, ...opts });
  writers.push(w);
  return w;
}
const rows = (d: Db) => d.prepare('SELECT COUNT(*) FROM telemetry').pluck().get() as number;
const rolledUp = (d: Db) => d.prepare('SELECT COALESCE(SUM(windows), 0) FROM telemetry_device_hour').pluck().get() as number;

afterEach(async () => {
  await Promise.all(writers.map((w) => w.close())); writers = [];
  await server?.close(); server = null;
  db?.close(); db = null;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = null;
});

describe('telemetry writer thread', () => {
  it('stores on its own thread; each add settles after its commit, a resent window counts once', async () => {
    const d = open();
    const w = writer(d);
    expect(w.thread).toBe('thread');
    const seen: number[] = [];
    const adds = [1, 2, 3].map((seq) => w.add(win({ deviceId: 'd1', seq, minute: seq, manifest: A })).then(() => { seen.push(rows(d)); }));
    await Promise.all(adds);
    // the three went in one batch (same turn): when any of them settles, all three rows are readable on the main connection
    expect(seen).toEqual([3, 3, 3]);
    await w.add(win({ deviceId: 'd1', seq: 2, minute: 2, manifest: A })); // resent
    expect(rows(d)).toBe(3);
    expect([w.stored, w.duplicates, w.failed]).toEqual([3, 1, 0]);
    expect(rolledUp(d)).toBe(3);
  });

  it('a writer thread that dies with batches unanswered is replaced; every window is stored once, rollups count each once', async () => {
    const d = open();
    const errors: string[] = [];
    const w = writer(d, { maxBatch: 50, onError: (e) => errors.push(e.message) });
    await w.started();
    const adds: Promise<void>[] = [];
    for (let i = 0; i < 300; i++) adds.push(w.add(win({ deviceId: `d${i % 10}`, seq: Math.floor(i / 10), minute: Math.floor(i / 10) % 60, manifest: A })));
    // six batches of 50 were posted; kill the thread before it answers them all
    await (w as unknown as { worker: Worker }).worker.terminate();
    await Promise.all(adds);
    expect(errors).toEqual(['telemetry writer thread exited with code 1']);
    expect(rows(d)).toBe(300);
    expect(rolledUp(d)).toBe(300);
    // windows the dead thread had committed come back as already stored: none is lost, none counted twice
    expect(w.stored + w.duplicates).toBe(300);
    expect(w.failed).toBe(0);
    // the new thread goes on storing
    await w.add(win({ deviceId: 'd0', seq: 1000, minute: 0, manifest: A }));
    expect(rows(d)).toBe(301);
  });

  it('a main-connection transaction that reads, then writes while the writer thread has a batch to commit, neither fails nor loses a row', async () => {
    const d = open();
    const w = writer(d);
    await w.started();
    await w.add(win({ deviceId: 'd1', seq: 1, minute: 0, manifest: A })); // the thread is up and has written once
    const pending = w.add(win({ deviceId: 'd1', seq: 2, minute: 1, manifest: A }));
    const before = d.transaction(() => {
      const n = rows(d); // a read first: a deferred transaction would take its snapshot here
      w['send'](); // posted only now (not before the transaction began: the thread could commit first): it tries to commit while the main thread sits in its transaction
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300); // the thread has 300 ms to try to commit
      d.prepare("UPDATE devices SET tags_json = '[\"x\"]' WHERE device_id = 'd1'").run(); // then a write
      return n;
    })();
    await pending;
    expect(before).toBe(1);
    expect(rows(d)).toBe(2);
    expect(d.prepare("SELECT tags_json FROM devices WHERE device_id = 'd1'").pluck().get()).toBe('["x"]');
  });

  it('an in-memory database is written on the main thread by the same store', async () => {
    const d = open(':memory:');
    const w = writer(d);
    expect(w.thread).toBe('main');
    await Promise.all([w.add(win({ deviceId: 'd1', seq: 1, minute: 0, manifest: A })), w.add(win({ deviceId: 'd1', seq: 1, minute: 0, manifest: A }))]);
    expect([rows(d), w.stored, w.duplicates, rolledUp(d)]).toEqual([1, 1, 1, 1]);
  });
});

describe('telemetry over MQTT', () => {
  it('windows published at QoS 1 are stored once each (a resent one is a duplicate), listeners hear a window after its commit, an invalid one is dropped', async () => {
    server = await startTestServer();
    const secrets = await enrollDevices(server, ['tele-1']);
    const client = await mqtt.connectAsync(server.mqttUrl, { clientId: 'tele-1', username: 'tele-1', password: secrets.get('tele-1'), protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000 });
    try {
      const { db: main, ingest } = server.app.fleet;
      const stored = (seq: number) => main.prepare('SELECT COUNT(*) FROM telemetry WHERE device_id = ? AND seq = ?').pluck().get('tele-1', seq) as number;
      const heardAt: [number, number][] = [];
      const off = ingest.onMessage((kind, _d, msg) => { if (kind === 'telemetry') { const seq = (msg as { seq: number }).seq; heardAt.push([seq, stored(seq)]); } });
      const window = (seq: number) => JSON.stringify(win({ deviceId: 'tele-1', seq, minute: seq % 60, manifest: A, start: Date.now() - 3600_000 }));
      for (let seq = 1; seq <= 20; seq++) await client.publishAsync(topics.telemetry('tele-1'), window(seq), { qos: 1 });
      await client.publishAsync(topics.telemetry('tele-1'), window(7), { qos: 1 }); // resent after a lost PUBACK
      const bad = { ...JSON.parse(window(21)), count: -1 };
      await client.publishAsync(topics.telemetry('tele-1'), JSON.stringify(bad), { qos: 1 });
      await waitFor(() => ingest.telemetry.stored + ingest.telemetry.duplicates === 21, 10_000, 'the writer answered all 21 windows');
      await ingest.telemetry.flush();
      off();
      expect(main.prepare('SELECT seq FROM telemetry WHERE device_id = ? ORDER BY seq').pluck().all('tele-1')).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      expect([ingest.telemetry.stored, ingest.telemetry.duplicates]).toEqual([20, 1]);
      expect([ingest.counters.accepted.telemetry, ingest.counters.duplicates.telemetry, ingest.counters.dropped.telemetry]).toEqual([20, 1, 1]);
      // each window was heard once, and its row was already readable on the main connection then
      expect(heardAt).toEqual(Array.from({ length: 20 }, (_, i) => [i + 1, 1]));
      expect(stored(21)).toBe(0);
    } finally {
      await client.endAsync(true);
    }
  });
});
