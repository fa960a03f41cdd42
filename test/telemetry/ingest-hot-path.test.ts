// What issue 13's ingest work remembers or delays must change no decision: the broker's per-client memory
// of allowed topics never lets an oversized payload or another device's topic through, and the writer
// thread's group commit gathers windows only after a loaded transaction, each add still settling at the
// commit that stored its window.
import { afterEach, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { openDatabase, type Db } from '../../server/db/database.ts';
import { TelemetryWriter } from '../../server/devices/telemetry-writer.ts';
import { topics } from '../../shared/topics.ts';
import { enrollDevices, startTestServer, tempDir, type TestServer } from '../helpers/harness.ts';
import { T0, sha, win } from './windows.ts';

const A = sha('a');
let server: TestServer | null = null;
let dir: string | null = null;
let db: Db | null = null;
let writers: TelemetryWriter[] = [];

afterEach(async () => {
  await Promise.all(writers.map((w) => w.close())); writers = [];
  await server?.close(); server = null;
  db?.close(); db = null;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = null;
});

const closesWithin = (c: MqttClient, ms: number) => new Promise<boolean>((resolve) => {
  const timer = setTimeout(() => resolve(false), ms);
  c.once('close', () => { clearTimeout(timer); resolve(true); });
});

describe('the broker remembers allowed topics per connection', () => {
  it('after a topic was allowed, an oversized payload on it and another device\'s topic are still refused; nothing of theirs is stored', async () => {
    server = await startTestServer({ config: { maxMqttPayloadBytes: 4096 } });
    const secrets = await enrollDevices(server, ['hot-1', 'hot-2']);
    const { db: main, ingest } = server.app.fleet;
    const rows = (device: string) => main.prepare('SELECT COUNT(*) FROM telemetry WHERE device_id = ?').pluck().get(device) as number;
    const connect = (id: string) => mqtt.connectAsync(server!.mqttUrl, { clientId: id, username: id, password: secrets.get(id), protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000 });
    const window = (device: string, seq: number, pad = 0) => {
      const w = win({ deviceId: device, seq, minute: seq, manifest: A, start: Date.now() - 3600_000, ...(pad ? { x: Array(pad).fill(1) } : {}) });
      return JSON.stringify(w);
    };

    // allowed twice on the same connection (the second from memory), then 5 KB on the same topic
    const c1 = await connect('hot-1');
    await c1.publishAsync(topics.telemetry('hot-1'), window('hot-1', 1), { qos: 1 });
    await c1.publishAsync(topics.telemetry('hot-1'), window('hot-1', 2), { qos: 1 });
    const big = window('hot-1', 3, 2500);
    expect(Buffer.byteLength(big)).toBeGreaterThan(4096);
    const closed1 = closesWithin(c1, 5000);
    c1.publish(topics.telemetry('hot-1'), big, { qos: 1 });
    expect(await closed1).toBe(true);

    // a new connection of the same device starts with nothing remembered; its own topic first, then hot-2's
    const c2 = await connect('hot-1');
    await c2.publishAsync(topics.telemetry('hot-1'), window('hot-1', 4), { qos: 1 });
    const closed2 = closesWithin(c2, 5000);
    c2.publish(topics.telemetry('hot-2'), window('hot-2', 1), { qos: 1 });
    expect(await closed2).toBe(true);

    await ingest.telemetry.flush();
    expect(main.prepare('SELECT seq FROM telemetry WHERE device_id = ? ORDER BY seq').pluck().all('hot-1')).toEqual([1, 2, 4]);
    expect(rows('hot-2')).toBe(0);
    await c1.endAsync(true);
    await c2.endAsync(true);
  });
});

describe('group commit in the writer thread', () => {
  function open(): Db {
    dir = tempDir('fleet-gather-');
    db = openDatabase(join(dir, 'fleet.db'));
    const ins = db.prepare("INSERT INTO devices (device_id, hardware, first_seen, last_seen) VALUES (?, 'cam-a', 'x', 'x')");
    for (let d = 0; d < 100; d++) ins.run(`g${d}`);
    return db;
  }
  const rows = (d: Db) => d.prepare('SELECT COUNT(*) FROM telemetry').pluck().get() as number;
  const nextTurn = () => new Promise<void>((r) => setImmediate(r));

  it('after a loaded transaction, windows posted in separate turns share the next transaction; each add settles after its commit', async () => {
    const d = open();
    // a long gather, so the test does not depend on how fast this machine posts ten batches
    const w = new TelemetryWriter(d, { now: () => T0 + 3600_000, gatherMs: 3000 });
    writers.push(w);
    await w.started();
    // 100 windows in one turn: one transaction, at least LOADED_TRANSACTION (64) windows
    await Promise.all(Array.from({ length: 100 }, (_, i) => w.add(win({ deviceId: `g${i}`, seq: 1, minute: 0, manifest: A }))));
    expect([w.transactions, rows(d)]).toEqual([1, 100]);
    // ten windows, each posted in a turn of its own (ten batches)
    const seen: number[] = [];
    const adds: Promise<void>[] = [];
    for (let i = 0; i < 10; i++) {
      adds.push(w.add(win({ deviceId: `g${i}`, seq: 2, minute: 1, manifest: A })).then(() => { seen.push(rows(d)); }));
      w['send']();
      await nextTurn();
    }
    await Promise.all(adds);
    expect(w.transactions).toBe(2);
    expect(seen).toEqual(Array(10).fill(110));
    expect([w.stored, w.duplicates, w.failed]).toEqual([110, 0, 0]);
  });

  it('after a small transaction a lone window is stored at once, not after the gather time', async () => {
    const d = open();
    const w = new TelemetryWriter(d, { now: () => T0 + 3600_000, gatherMs: 60_000 });
    writers.push(w);
    await w.started();
    await w.add(win({ deviceId: 'g1', seq: 1, minute: 0, manifest: A }));
    const t0 = performance.now();
    await w.add(win({ deviceId: 'g1', seq: 2, minute: 1, manifest: A }));
    expect(performance.now() - t0).toBeLessThan(30_000);
    expect([w.transactions, rows(d)]).toEqual([2, 2]);
  });
});
