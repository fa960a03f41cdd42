// The embedded aedes broker on TCP, or TLS when given a certificate (MQTTS, nothing plain then), with the fleet ACL and payload limits, and a small bus interface
// the rest of the server uses (so an external broker can replace it without touching callers).
import { indexedMemoryPersistence } from './retained-index.ts';
import { Aedes, type AedesPublishPacket, type AuthenticateError } from 'aedes';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import type { FastifyBaseLogger } from 'fastify';
import { DeviceId } from '../../shared/ids.ts';
import type { DeviceCredentials } from '../auth/device-credentials.ts';
import { DEVICE_TOKEN_PREFIX } from '../../shared/device-token.ts';
import { RateLimiter, type RateLimit } from '../auth/rate-limit.ts';
import { mayPublish, mayPublishOn, maySubscribe, type AclDecision } from './acl.ts';
import { guardSocket } from './packet-guard.ts';
import { topicMatches } from './topic-match.ts';

export interface FleetBus {
  publish(topic: string, payload: string | Buffer, opts: { qos: 0 | 1; retain: boolean }): Promise<void>;
  /**
   * handler gets every message on topics matching the filter; it must not throw. A handler that returns a
   * promise holds the message's acknowledgement (PUBACK to the device) until the promise settles: what it
   * stores is stored before the device may forget it.
   */
  subscribe(filter: string, handler: (topic: string, payload: Buffer) => void | Promise<void>): Promise<void>;
}

/**
 * Keeps a broker's own device authentication in step with the server's credentials, for an external
 * broker that enforces them itself (mosquitto's dynamic security plugin: server/mqtt/dynsec.ts; a NATS
 * cluster's generated users: server/mqtt/nats-auth.ts). The embedded broker has none: it asks the
 * server's credentials on every CONNECT.
 */
export interface DeviceAccessSync {
  /** can devices with a key pair (signed, single-use tokens) connect? A broker that checks passwords only cannot verify them */
  readonly acceptsKeyPairs: boolean;
  /** a device got a bearer secret (enrollment, or an admin issued or rotated it): it may connect with it from now on, any older one no longer; true if the broker knew the device before (its old session, if any, was dropped) */
  secretIssued(deviceId: string, secret: string): Promise<boolean>;
  /** many devices at once (an enrollment batch): as secretIssued for each, in as few round trips as the broker allows */
  secretsIssued?(devices: { deviceId: string; secret: string }[]): Promise<void>;
  /** the device's credential was revoked: the broker forgets it and drops its connection; true if the broker knew it */
  revoked(deviceId: string): Promise<boolean>;
  /** why this device id cannot be a device on this broker (it names the server's own broker user), or undefined */
  reservedDeviceId?(deviceId: string): string | undefined;
  close?(): Promise<void>;
}

/** What the server holds of its broker, embedded or external (server/mqtt/external-bus.ts). */
export interface FleetBroker extends FleetBus {
  readonly kind: 'embedded' | 'external';
  /** the embedded broker's MQTT port; 0 for an external broker */
  readonly port: number;
  /** devices connected (external: devices whose retained presence says online) */
  connectedClients(): number;
  /** drop a device's connection at once (its credential was revoked); true if it was connected */
  disconnect(clientId: string): boolean;
  /** set for an external broker that enforces device credentials itself */
  readonly deviceAccess?: DeviceAccessSync;
  close(): Promise<void>;
}

export interface EmbeddedBroker extends FleetBroker {
  readonly kind: 'embedded';
  readonly aedes: Aedes;
}

export interface BrokerOptions {
  host: string;
  port: number;
  maxPayloadBytes: number;
  log: FastifyBaseLogger;
  brokerId?: string;
  /** device credentials; every CONNECT must carry username = client id = device id and, as password, a token signed by the device's key (or its legacy secret) */
  credentials: Pick<DeviceCredentials, 'verify' | 'verifyToken' | 'enrolledEver'>;
  /** development only: a device that never held a credential (none active or revoked) may connect without one */
  allowUnenrolled?: boolean;
  /** publishes per device; over it the device is disconnected */
  rateLimit?: RateLimit;
  /** whole inbound MQTT packets (default: maxPayloadBytes + 8 KiB for headers and topic) */
  maxPacketBytes?: number;
  /** serve MQTT over TLS (MQTTS) with this PEM key and certificate chain; the port then speaks TLS only */
  tls?: { key: string; cert: string };
}

const refuseConnect = (returnCode: 2 | 4 | 5, message: string): AuthenticateError => Object.assign(new Error(message), { returnCode }) as AuthenticateError;

export async function startEmbeddedBroker(opts: BrokerOptions): Promise<EmbeddedBroker> {
  const limiter = opts.rateLimit ? new RateLimiter(opts.rateLimit) : null;
  const maxPacketBytes = opts.maxPacketBytes ?? opts.maxPayloadBytes + 8 * 1024;
  type Handler = (topic: string, payload: Buffer) => void | Promise<void>;
  /** the server's own subscriptions, run before the PUBACK of a device's QoS 1/2 message (authorizePublish) */
  const handled: { filter: string; handler: Handler }[] = [];
  /** payloads whose handlers already ran before their PUBACK: their delivery skips them */
  const ranBeforeAck = new WeakSet<Buffer>();
  // Per connected client, the topics the ACL let it publish on (issue 13, ingest: mayPublishOn depends
  // on client id and topic only; the payload size is still checked on every message). A few short
  // strings per connection, gone with it. Handlers are matched per message (topicMatches allocates nothing).
  const allowedTopics = new WeakMap<object, Set<string>>();
  const topicDecision = (client: { id: string } | null, topic: string): AclDecision => {
    if (!client) return mayPublishOn(null, topic);
    const known = allowedTopics.get(client);
    if (known?.has(topic)) return { ok: true };
    const d = mayPublishOn(client.id, topic);
    // a device publishes on three topics: a few remembered per connection, refusals never
    if (d.ok) {
      if (!known) allowedTopics.set(client, new Set([topic]));
      else if (known.size < 8) known.add(topic);
    }
    return d;
  };
  /** a handler must not throw; a failure is logged and the message acknowledged (never settles as a rejection) */
  const callHandler = (handler: Handler, topic: string, payload: Buffer): Promise<void> | undefined => {
    try {
      const p = handler(topic, payload);
      return p ? p.catch((err: unknown) => { opts.log.error({ err, topic }, 'bus handler failed'); }) : undefined;
    } catch (err) {
      opts.log.error({ err, topic }, 'bus handler threw');
      return undefined;
    }
  };
  const aedes = await Aedes.createBroker({
    id: opts.brokerId ?? 'fleet-broker', // stable id (aedes #754)
    // retained messages by topic: a device's subscription is one lookup, not a scan of the fleet's
    persistence: indexedMemoryPersistence() as never,
    heartbeatInterval: 60_000,
    connectTimeout: 30_000,
    maxClientsIdLength: 64,
    authenticate(client, username, password, done) {
      // [MQTT-3.1.3-5] client ids are ours to define: here a client id is a device id, and the
      // credential must be that device's. A second CONNECT with a live device's id therefore takes the
      // session over only if it holds the device's secret (aedes #16, #153).
      if (!DeviceId.safeParse(client.id).success) return done(refuseConnect(2, 'client id is not a valid device id'), false);
      if (username === undefined && password === undefined) {
        if (opts.allowUnenrolled && !opts.credentials.enrolledEver(client.id)) return done(null, true);
        return done(refuseConnect(5, `${client.id}: no credential given`), false);
      }
      if (username !== client.id) return done(refuseConnect(4, `username must be the device id ${client.id}`), false);
      const pw = password?.toString('utf8');
      if (pw?.startsWith(DEVICE_TOKEN_PREFIX)) {
        // key-pair identity: a short-lived token naming this client id, signed by its registered key, used once
        const r = opts.credentials.verifyToken(pw, 'mqtt', client.id);
        if (!r.ok) {
          opts.log.warn({ clientId: client.id, reason: r.reason, event: 'mqtt_auth_refused' }, r.message);
          return done(refuseConnect(4, `${client.id}: device token refused (${r.reason})`), false);
        }
        return done(null, true);
      }
      if (!opts.credentials.verify(client.id, pw)) {
        opts.log.warn({ clientId: client.id, event: 'mqtt_auth_refused' }, 'bad or revoked device credential');
        return done(refuseConnect(4, `${client.id}: bad or revoked credential`), false);
      }
      done(null, true);
    },
    authorizePublish(client, packet, callback) {
      if (client && limiter && limiter.take(client.id) > 0) {
        opts.log.warn({ clientId: client.id, event: 'mqtt_rate_limited' }, 'publish rate over the limit: disconnecting');
        return callback(new Error(`${client.id} publishes faster than the limit`));
      }
      const bytes = packet.payload?.length ?? 0;
      // over the size limit: mayPublish words why; otherwise the topic's decision, remembered per client
      const decision = bytes > opts.maxPayloadBytes ? mayPublish(client ? client.id : null, packet.topic, bytes, opts.maxPayloadBytes)
        : topicDecision(client, packet.topic);
      if (!decision.ok) {
        opts.log.warn({ clientId: client?.id, topic: packet.topic, event: 'mqtt_publish_refused' }, decision.reason);
        return callback(new Error(decision.reason));
      }
      // aedes 1.2 writes a QoS 1 PUBACK before it delivers the message to any subscriber
      // (lib/handlers/publish.js), so a handler's promise could not hold it there. A device's QoS 1/2
      // message runs the server's handlers here instead, before aedes acknowledges it: the PUBACK waits
      // for what they store. The payload is marked so the delivery that follows does not run them again.
      if (client && packet.qos > 0) {
        const run: Handler[] = [];
        for (const h of handled) if (topicMatches(h.filter, packet.topic)) run.push(h.handler);
        if (run.length) {
          const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
          ranBeforeAck.add(packet.payload as Buffer);
          const pending: Promise<void>[] = [];
          for (const h of run) {
            const p = callHandler(h, packet.topic, payload);
            if (p) pending.push(p);
          }
          if (pending.length === 0) return process.nextTick(() => callback(null));
          // one handler (the usual case: telemetry, status): its own promise, no Promise.all around it
          return void (pending.length === 1 ? pending[0] : Promise.all(pending)).then(() => callback(null));
        }
      }
      callback(null);
    },
    authorizeSubscribe(client, sub, callback) {
      const decision = maySubscribe(client.id, sub.topic);
      if (!decision.ok) {
        opts.log.warn({ clientId: client.id, topic: sub.topic, event: 'mqtt_subscribe_refused' }, decision.reason);
        // negated: SUBACK 0x80 for this filter [MQTT-3.9.3-2], the connection stays (the client learns why it gets nothing)
        return callback(null, null);
      }
      callback(null, sub);
    },
  });
  aedes.on('clientError', (client, err) => opts.log.debug({ clientId: client?.id, err: err.message }, 'mqtt client error'));

  // every socket, not only the clients aedes knows: one still in CONNECT (authenticating), or still in
  // its TLS handshake, is in no list. 'connection' gives the TCP socket for both kinds of server.
  const sockets = new Set<Socket>();
  const handle = (socket: Socket) => {
    guardSocket(socket, maxPacketBytes, (why) => opts.log.warn({ remote: socket.remoteAddress, event: 'mqtt_packet_refused' }, why));
    socket.on('error', () => { /* a reset connection is not an error of ours */ });
    aedes.handle(socket);
  };
  const server: Server = opts.tls
    ? createTlsServer({ key: opts.tls.key, cert: opts.tls.cert, minVersion: 'TLSv1.2', handshakeTimeout: 30_000 }, handle)
    : createServer({ noDelay: true }, handle);
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.once('close', () => sockets.delete(socket));
  });
  // a plain MQTT client, a scanner or a client that distrusts our certificate: its connection ends here
  server.on('tlsClientError', (err: Error, socket: Socket) => opts.log.debug({ remote: socket.remoteAddress, err: err.message, event: 'mqtt_tls_refused' }, 'TLS handshake failed'));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  return {
    kind: 'embedded',
    port,
    aedes,
    connectedClients: () => aedes.connectedClients,
    disconnect(clientId) {
      const client = (aedes as unknown as { clients: Record<string, { close(): void } | undefined> }).clients[clientId];
      client?.close();
      return !!client;
    },
    publish(topic, payload, { qos, retain }) {
      return new Promise((resolve, reject) => {
        aedes.publish({ cmd: 'publish', topic, payload: typeof payload === 'string' ? Buffer.from(payload) : payload, qos, retain, dup: false }, (err) => (err ? reject(err) : resolve()));
      });
    },
    subscribe(filter, handler) {
      return new Promise((resolve) => {
        handled.push({ filter, handler });
        aedes.subscribe(filter, (packet: AedesPublishPacket, cb: () => void) => {
          // a device's QoS 1/2 message already ran its handlers before its PUBACK (authorizePublish)
          const pending = ranBeforeAck.has(packet.payload as Buffer) ? undefined
            : callHandler(handler, packet.topic, Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload));
          // never cb() synchronously: mqemitter releases the next queued message inside cb, so a
          // synchronous handler recursed once per queued message; a backlog of telemetry from 1,000 devices
          // overflowed the stack and killed the server (issue 21's soak). nextTick (or the handler's
          // promise) unwinds first, in the same order.
          if (pending) pending.then(() => cb());
          else process.nextTick(cb);
        }, resolve);
      });
    },
    async close() {
      for (const client of Object.values((aedes as unknown as { clients: Record<string, { close(): void }> }).clients)) client.close();
      // A connection left open would look alive to its device until keepalive runs out (up to 1.5 x 60 s
      // with mqtt.js defaults): cut them all, so devices reconnect (to a restarted server) at once.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
    },
  };
}
