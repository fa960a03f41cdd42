// brokerPublishConnections (issue 15): the server publishes desired states over several connections to
// an external broker (a NATS cluster stores one retained publish per connection at a time). Shown on a
// real mosquitto: the publishes are spread over every connection, and each topic always goes over the
// same one, so when a device's desired state is published three times back to back, the retained
// message left on the broker is the last one for every device.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import pino from 'pino';
import { startExternalBroker, type ExternalBroker } from '../../server/mqtt/external-bus.ts';
import { DynsecControl } from '../../server/mqtt/dynsec.ts';
import { topics } from '../../shared/topics.ts';
import { startMosquitto, type Mosquitto } from '../helpers/mosquitto.ts';

let mosquitto: Mosquitto;
let bus: ExternalBroker | null = null;

beforeAll(async () => { mosquitto = await startMosquitto(); }, 60_000);
afterAll(async () => {
  await bus?.close();
  await mosquitto?.stop();
}, 30_000);

describe('publishing over several connections', () => {
  it('4 connections: 300 publishes spread over all 4, each device\'s last desired state is the one retained', async () => {
    bus = await startExternalBroker({
      urls: [mosquitto.url], username: mosquitto.adminUser, password: mosquitto.adminPassword, clientId: 'fleet-server-pc',
      log: pino({ level: 'silent' }), publishConnections: 4,
    }, (client) => new DynsecControl(client, pino({ level: 'silent' })));
    // as the server does at start: the fleet-server role (publish desired states, read fleet/v1/#) for its user
    await (bus.deviceAccess as DynsecControl).init(mosquitto.adminUser, () => new Set());
    expect(bus.publishClients).toHaveLength(4);
    await Promise.all(bus.publishClients.map((c) => (c.connected ? Promise.resolve() : new Promise((r) => c.once('connect', r)))));
    const sent = bus.publishClients.map(() => 0);
    const topicsOf = bus.publishClients.map(() => new Set<string>());
    bus.publishClients.forEach((c, i) => c.on('packetsend', (p) => {
      if (p.cmd === 'publish') { sent[i]++; topicsOf[i].add(p.topic); }
    }));
    const ids = Array.from({ length: 100 }, (_, i) => `pc-${i}`);
    // three versions per device, not awaited in between: only per-topic order keeps v3 last
    await Promise.all(ids.flatMap((id) => [1, 2, 3].map((v) => bus!.publish(topics.desired(id), Buffer.from(JSON.stringify({ id, v })), { qos: 1, retain: true }))));
    expect(sent.reduce((a, b) => a + b, 0)).toBe(300);
    expect(sent.every((n) => n > 0), JSON.stringify(sent)).toBe(true);
    // no topic went over two connections
    const seen = new Map<string, number>();
    topicsOf.forEach((set, i) => set.forEach((t) => { expect(seen.get(t), t).toBeUndefined(); seen.set(t, i); }));
    expect(seen.size).toBe(100);

    const reader = mqtt.connect(mosquitto.url, { username: mosquitto.adminUser, password: mosquitto.adminPassword, clientId: 'pc-reader', clean: true, reconnectPeriod: 0 });
    try {
      const retained = new Map<string, number>();
      reader.on('message', (_t, payload, packet) => {
        if (!packet.retain) return;
        const m = JSON.parse(payload.toString()) as { id: string; v: number };
        retained.set(m.id, m.v);
      });
      await new Promise<void>((resolve, reject) => { reader.once('connect', () => resolve()); reader.once('error', reject); });
      await reader.subscribeAsync(topics.all('desired'), { qos: 1 });
      const until = Date.now() + 20_000;
      while (retained.size < 100 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      expect(retained.size).toBe(100);
      expect([...retained.values()].filter((v) => v !== 3)).toEqual([]);
    } finally {
      await reader.endAsync(true);
    }
  }, 60_000);
});
