// A device forgets a QoS 1 message when its PUBACK arrives (status outbox, telemetry outbox), so the
// embedded broker must not acknowledge before the server has stored it. aedes 1.2 itself writes the PUBACK
// before delivering to any subscriber; server/mqtt/broker.ts runs the server's handlers first.
import { afterEach, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { topics } from '../../shared/topics.ts';
import { enrollDevices, startTestServer, type TestServer } from '../helpers/harness.ts';
import { waitFor } from '../helpers/wait.ts';
import { win, sha } from './windows.ts';

let server: TestServer | null = null;
afterEach(async () => { await server?.close(); server = null; });

const settledWithin = <T>(p: Promise<T>, ms: number) => Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);

describe('PUBACK after the server stored the message (embedded broker)', () => {
  it('a handler that has not finished holds the PUBACK; it runs once per message; QoS 0 is not held', async () => {
    server = await startTestServer();
    const secrets = await enrollDevices(server, ['ack-1']);
    const client = await mqtt.connectAsync(server.mqttUrl, { clientId: 'ack-1', username: 'ack-1', password: secrets.get('ack-1'), protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000 });
    try {
      let release!: () => void;
      const gate = new Promise<void>((r) => { release = r; });
      const seen: string[] = [];
      // a second handler on the status topics, like the ingest's own: the PUBACK waits for every handler
      await server.app.fleet.broker.subscribe(topics.all('status'), (_t, p) => { seen.push(p.toString()); return gate; });
      const acked = client.publishAsync(topics.status('ack-1'), 'held', { qos: 1 });
      // delivered to the handler (waited for: on a loaded host delivery alone can take longer than a fixed wait), then held
      await waitFor(() => seen.length > 0, 10_000, 'the held status at the handler');
      expect(await settledWithin(acked, 1500)).toBe(false);
      expect(seen).toEqual(['held']);
      release();
      expect(await settledWithin(acked, 5000)).toBe(true);
      // QoS 0 has no PUBACK: its handlers run on delivery, once
      await client.publishAsync(topics.status('ack-1'), 'fire-and-forget', { qos: 0 });
      await waitFor(() => seen.length >= 2, 10_000, 'the QoS 0 status at the handler');
      await new Promise((r) => setTimeout(r, 200)); // and not a second time
      expect(seen).toEqual(['held', 'fire-and-forget']);
    } finally {
      await client.endAsync(true);
    }
  });

  it('each telemetry window is committed by the time its PUBACK arrives', async () => {
    server = await startTestServer();
    const secrets = await enrollDevices(server, ['ack-2']);
    const client = await mqtt.connectAsync(server.mqttUrl, { clientId: 'ack-2', username: 'ack-2', password: secrets.get('ack-2'), protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000 });
    try {
      const { db, ingest } = server.app.fleet;
      expect(ingest.telemetry.thread).toBe('thread');
      const stored = (seq: number) => db.prepare('SELECT COUNT(*) FROM telemetry WHERE device_id = ? AND seq = ?').pluck().get('ack-2', seq) as number;
      const atAck: number[] = [];
      for (let seq = 1; seq <= 20; seq++) {
        await client.publishAsync(topics.telemetry('ack-2'), JSON.stringify(win({ deviceId: 'ack-2', seq, minute: seq, manifest: sha('a'), start: Date.now() - 3600_000 })), { qos: 1 });
        atAck.push(stored(seq));
      }
      expect(atAck).toEqual(Array(20).fill(1));
      expect(ingest.telemetry.stored).toBe(20);
    } finally {
      await client.endAsync(true);
    }
  });
});
