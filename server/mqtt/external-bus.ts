// The server as a privileged client of an MQTT broker it did not start (mosquitto, a NATS cluster's
// MQTT listener, ...): the same FleetBus the embedded broker gives, over mqtt.js.
//
// Nothing lost: a fixed client id and a persistent session (clean: false), subscriptions at QoS 1, so
// the broker keeps what devices send while the server is away and delivers it on reconnect; each
// message's PUBACK is sent only once its handler settled (a status is stored before the broker may
// forget it). Nothing applied twice: a redelivered message reaches the same idempotent ingest (status
// and telemetry are applied once per device and sequence number). Desired states are published QoS 1,
// retained; a publish made while the link is down waits in mqtt.js's queue and is sent on reconnect,
// and when the broker comes back without our session (it lost its state) every stored desired state is
// published again (onSessionLost). Reconnects back off exponentially with jitter across the URL list.
//
// Presence: a broker we do not run tells us nothing about its clients in a portable way, so presence
// comes from the devices' own retained `presence` messages (online on connect, offline as last will).
// connectedClients() counts the devices whose latest presence says online.
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import type { FastifyBaseLogger } from 'fastify';
import { parseTopic, TOPIC_ROOT } from '../../shared/topics.ts';
import type { DeviceAccessSync, FleetBroker } from './broker.ts';
import { topicMatches } from './topic-match.ts';

export interface ExternalBrokerOptions {
  /** mqtt://, mqtts://, tcp:// or ssl:// URLs; tried in order, then round again */
  urls: string[];
  username?: string;
  password?: string;
  clientId: string;
  /** PEM CA the broker's certificate must chain to (mqtts://); without it Node's default store */
  ca?: string;
  log: FastifyBaseLogger;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** the broker answered CONNACK without our session: what it held (retained states, queued messages) may be gone */
  onSessionLost?: () => void | Promise<void>;
  random?: () => number;
  /**
   * a publish the broker has not acknowledged (PUBACK) after this long: the link is treated as broken
   * and reconnected, and mqtt.js sends the message again (MQTT 3.1.1 resends only on a new connection).
   * A guard for a clustered broker that loses an in-flight publish while a node fails.
   */
  publishAckTimeoutMs?: number;
  /** messages from devices over this are dropped before any handler sees them (some brokers, NATS 2.9's MQTT listener, do not limit payloads) */
  maxPayloadBytes?: number;
  /**
   * connections publishes go over (default 1: the session's own). The others are clean sessions
   * (client id `<clientId>-pub<i>`) that only publish; a topic always maps to the same connection, so
   * one device's desired states keep their order. A NATS cluster handles one retained QoS 1 publish per
   * connection at a time (it stores it in a replicated stream first): this is what makes a rollout to
   * thousands of devices take seconds there instead of minutes (docs/brokers.md).
   */
  publishConnections?: number;
}

export interface ExternalBroker extends FleetBroker {
  readonly kind: 'external';
  readonly client: MqttClient;
  /** resolves at the next CONNACK (at once when connected) */
  connected(): Promise<void>;
  /** times the link came up (1 after the first connect) */
  readonly connects: number;
  /** device messages dropped for being over maxPayloadBytes */
  readonly oversizeDropped: number;
  /** times the link was cut because a publish went unacknowledged */
  readonly ackTimeouts: number;
  /** the connections publishes go over (the session's own first; publishConnections of them) */
  readonly publishClients: readonly MqttClient[];
}

type Handler = (topic: string, payload: Buffer) => void | Promise<void>;

export { topicMatches };

export function parseBrokerUrl(url: string): { protocol: 'mqtt' | 'mqtts'; host: string; port: number } {
  let u: URL;
  try { u = new URL(url); } catch { throw new Error(`broker URL ${url} is not a URL`); }
  const protocol = u.protocol === 'mqtt:' || u.protocol === 'tcp:' ? 'mqtt' : u.protocol === 'mqtts:' || u.protocol === 'ssl:' ? 'mqtts' : null;
  if (!protocol) throw new Error(`broker URL ${url}: the scheme must be mqtt://, mqtts://, tcp:// or ssl://`);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  return { protocol, host, port: u.port ? Number(u.port) : protocol === 'mqtts' ? 8883 : 1883 };
}

export async function startExternalBroker(opts: ExternalBrokerOptions, deviceAccess?: (client: MqttClient) => DeviceAccessSync): Promise<ExternalBroker> {
  if (opts.urls.length === 0) throw new Error('external broker: give at least one URL');
  const servers = opts.urls.map(parseBrokerUrl);
  const minMs = opts.reconnectMinMs ?? 500;
  const maxMs = opts.reconnectMaxMs ?? 15_000;
  const random = opts.random ?? Math.random;
  const jittered = (ms: number) => Math.round(ms * (0.5 + random()));
  let backoff = minMs;
  const first = servers[0];
  const o: IClientOptions = {
    protocol: first.protocol, host: first.host, port: first.port,
    // mqtt.js moves to the next entry on each reconnect
    servers: servers.map((s) => ({ host: s.host, port: s.port, protocol: s.protocol })),
    clientId: opts.clientId,
    clean: false, // a persistent session: the broker queues QoS 1 messages for us while we are away
    protocolVersion: 4,
    keepalive: 30,
    connectTimeout: 10_000,
    reconnectPeriod: jittered(backoff),
    resubscribe: true,
    reconnectOnConnackError: true,
    ...(opts.username !== undefined ? { username: opts.username } : {}),
    ...(opts.password !== undefined ? { password: opts.password } : {}),
    ...(opts.ca ? { ca: opts.ca, rejectUnauthorized: true } : {}),
  };
  const client = mqtt.connect(o);

  const subs: { filter: string; handler: Handler }[] = [];
  const unacked = new Map<number, number>(); // publish number -> when it was sent
  let publishNo = 0;
  let ackTimeouts = 0;
  const ackTimeoutMs = opts.publishAckTimeoutMs ?? 10_000;
  const ackWatch = setInterval(() => {
    if (!client.connected || unacked.size === 0) return;
    const oldest = unacked.values().next().value as number;
    if (Date.now() - oldest < ackTimeoutMs) return;
    ackTimeouts++;
    opts.log.warn({ event: 'broker_ack_timeout', unacked: unacked.size, ackTimeoutMs }, 'the broker has not acknowledged a publish: reconnecting to send it again');
    for (const k of unacked.keys()) unacked.set(k, Date.now()); // a fresh period on the next connection
    client.stream.destroy();
  }, Math.min(2000, ackTimeoutMs));
  ackWatch.unref();
  const online = new Set<string>();
  let connects = 0;
  let oversizeDropped = 0;
  let streamGeneration = 0;
  let closing = false;
  let waiters: (() => void)[] = [];

  client.on('connect', (connack) => {
    connects++;
    streamGeneration++;
    for (const k of unacked.keys()) unacked.set(k, Date.now()); // mqtt.js sends them again now
    backoff = minMs;
    client.options.reconnectPeriod = jittered(backoff);
    opts.log.info({ event: 'broker_connected', sessionPresent: connack.sessionPresent, connects }, 'connected to the external broker');
    for (const w of waiters) w();
    waiters = [];
    // the first connect is followed by the server's own start-up republish; later ones only when the broker lost us
    if (connects > 1 && !connack.sessionPresent && opts.onSessionLost) {
      Promise.resolve(opts.onSessionLost()).catch((err: unknown) => opts.log.error({ err, event: 'broker_republish_failed' }, 'republishing after a lost session failed'));
    }
  });
  client.on('close', () => {
    if (closing) return;
    backoff = Math.min(backoff * 2, maxMs);
    client.options.reconnectPeriod = jittered(backoff);
    opts.log.warn({ event: 'broker_disconnected', nextAttemptMs: client.options.reconnectPeriod }, 'lost the external broker; reconnecting');
  });
  client.on('error', (err) => opts.log.warn({ err: err.message, event: 'broker_error' }, 'external broker error'));

  // Incoming messages: mqtt.js hands them over one at a time and sends the PUBACK from handleMessage's
  // callback, holding the next packet until then. A handler that waits for a batched commit would then
  // cap throughput at one message per batch delay, so the callback is released at once with an error
  // (mqtt.js then continues without a PUBACK) and the PUBACK is sent here when the handler settles, on
  // the same connection only: a message id of a dropped connection means nothing on the next one, and
  // the broker redelivers that message anyway.
  const internal = client as unknown as { _sendPacket(p: object, cb?: () => void): void };
  client.handleMessage = (packet: IPublishPacket, callback: (err?: Error) => void) => {
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    const topic = packet.topic;
    if (opts.maxPayloadBytes !== undefined && payload.length > opts.maxPayloadBytes && parseTopic(topic)) {
      oversizeDropped++;
      opts.log.warn({ topic, bytes: payload.length, event: 'mqtt_payload_dropped' }, `payload of ${payload.length} bytes is over the ${opts.maxPayloadBytes}-byte limit`);
      return callback(); // acknowledged: a resend would be just as large
    }
    notePresence(topic, payload);
    const pending: Promise<void>[] = [];
    for (const s of subs) {
      if (!topicMatches(s.filter, topic)) continue;
      try {
        const r = s.handler(topic, payload);
        if (r) pending.push(r);
      } catch (err) {
        opts.log.error({ err, topic }, 'bus handler threw');
      }
    }
    if (packet.qos === 0 || pending.length === 0) return callback();
    const generation = streamGeneration;
    const messageId = packet.messageId;
    callback(new Error('acknowledged later')); // releases the next packet without a PUBACK
    void Promise.allSettled(pending).then(() => {
      if (generation === streamGeneration && client.connected && messageId !== undefined) internal._sendPacket({ cmd: 'puback', messageId });
    });
  };

  function notePresence(topic: string, payload: Buffer): void {
    const where = parseTopic(topic);
    if (where?.kind !== 'presence') return;
    try {
      const p = JSON.parse(payload.toString('utf8')) as { online?: unknown };
      if (p.online === true) online.add(where.deviceId);
      else online.delete(where.deviceId);
    } catch { /* the ingest drops and counts it */ }
  }

  const connected = () => (client.connected ? Promise.resolve() : new Promise<void>((resolve) => waiters.push(resolve)));
  // the first connection within a bound: a wrong URL or credential is a start-up error, not a silent retry
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => {
      client.end(true);
      reject(new Error(`external broker: no connection to ${opts.urls.join(', ')} within 15 s (last error: ${lastError ?? 'none'})`));
    }, 15_000);
    let lastError: string | undefined;
    const onError = (err: Error) => { lastError = err.message; };
    client.on('error', onError);
    void connected().then(() => { clearTimeout(t); client.off('error', onError); resolve(); });
  });

  // extra publishing connections (publishConnections > 1); each with its own unacknowledged-publish guard
  const pool: MqttClient[] = [client];
  for (let i = 1; i < (opts.publishConnections ?? 1); i++) {
    // each starts at another URL: on a cluster the publishing load is spread over the nodes
    const rotated = servers.map((_s, j) => servers[(i + j) % servers.length]);
    const c = mqtt.connect({
      ...o, protocol: rotated[0].protocol, host: rotated[0].host, port: rotated[0].port,
      servers: rotated.map((s) => ({ host: s.host, port: s.port, protocol: s.protocol })),
      clientId: `${opts.clientId}-pub${i}`, clean: true, resubscribe: false, reconnectPeriod: jittered(minMs),
    });
    c.on('error', (err) => opts.log.warn({ err: err.message, event: 'broker_error', connection: i }, 'external broker error (publishing connection)'));
    c.on('close', () => { if (!closing) c.options.reconnectPeriod = jittered(Math.min(maxMs, minMs * 4)); });
    pool.push(c);
  }
  const poolUnacked = pool.map(() => new Map<number, number>());
  const poolWatch = pool.length > 1 ? setInterval(() => {
    for (let i = 1; i < pool.length; i++) {
      const c = pool[i];
      const pending = poolUnacked[i];
      if (!c.connected || pending.size === 0) continue;
      const oldest = pending.values().next().value as number;
      if (Date.now() - oldest < ackTimeoutMs) continue;
      ackTimeouts++;
      opts.log.warn({ event: 'broker_ack_timeout', unacked: pending.size, ackTimeoutMs, connection: i }, 'the broker has not acknowledged a publish: reconnecting to send it again');
      for (const k of pending.keys()) pending.set(k, Date.now());
      c.stream.destroy();
    }
  }, Math.min(2000, ackTimeoutMs)) : null;
  poolWatch?.unref();
  for (let i = 1; i < pool.length; i++) pool[i].on('connect', () => { for (const k of poolUnacked[i].keys()) poolUnacked[i].set(k, Date.now()); });
  /** the connection a topic's publishes go over: always the same one for a topic (FNV-1a of the topic) */
  const connectionFor = (topic: string): number => {
    if (pool.length === 1) return 0;
    let h = 0x811c9dc5;
    for (let k = 0; k < topic.length; k++) h = Math.imul(h ^ topic.charCodeAt(k), 0x01000193);
    return (h >>> 0) % pool.length;
  };

  const access = deviceAccess?.(client);
  return {
    kind: 'external',
    port: 0,
    client,
    get connects() { return connects; },
    get oversizeDropped() { return oversizeDropped; },
    get ackTimeouts() { return ackTimeouts; },
    publishClients: pool,
    connected,
    connectedClients: () => online.size,
    deviceAccess: access,
    disconnect: () => false, // a broker we do not run: a device's session ends through deviceAccess (revocation) or not at all
    publish(topic, payload, { qos, retain }) {
      // offline, mqtt.js queues it (in memory) and sends it on reconnect; the SQLite row is the durable copy
      const n = ++publishNo;
      const i = connectionFor(topic);
      const pending = i === 0 ? unacked : poolUnacked[i];
      if (qos === 1) pending.set(n, Date.now());
      return new Promise((resolve, reject) => pool[i].publish(topic, payload, { qos, retain }, (err) => {
        pending.delete(n);
        if (err) reject(err);
        else resolve();
      }));
    },
    subscribe(filter, handler) {
      subs.push({ filter, handler });
      return new Promise((resolve, reject) => client.subscribe(filter, { qos: 1 }, (err, granted) => {
        if (err) return reject(new Error(`external broker refused the subscription ${filter}: ${err.message}`));
        if (granted?.some((g) => g.qos === 128)) return reject(new Error(`external broker refused the subscription ${filter} (SUBACK 128): give the server's user read access to ${TOPIC_ROOT}/#`));
        resolve();
      }));
    },
    async close() {
      closing = true;
      clearInterval(ackWatch);
      if (poolWatch) clearInterval(poolWatch);
      await access?.close?.();
      await Promise.all(pool.map((c) => new Promise<void>((resolve) => c.end(false, {}, () => resolve()))));
    },
  };
}
