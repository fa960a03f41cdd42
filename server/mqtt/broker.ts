// The embedded aedes broker on TCP, with the fleet ACL and payload limits, and a small bus interface
// the rest of the server uses (so an external broker can replace it without touching callers).
import { Aedes, type AedesPublishPacket, type AuthenticateError } from 'aedes';
import { createServer, type AddressInfo, type Server } from 'node:net';
import type { FastifyBaseLogger } from 'fastify';
import { DeviceId } from '../../shared/ids.ts';
import { mayPublish, maySubscribe } from './acl.ts';

export interface FleetBus {
  publish(topic: string, payload: string | Buffer, opts: { qos: 0 | 1; retain: boolean }): Promise<void>;
  /** handler gets every message on topics matching the filter; it must not throw */
  subscribe(filter: string, handler: (topic: string, payload: Buffer) => void): Promise<void>;
}

export interface EmbeddedBroker extends FleetBus {
  readonly port: number;
  readonly aedes: Aedes;
  connectedClients(): number;
  close(): Promise<void>;
}

export interface BrokerOptions { host: string; port: number; maxPayloadBytes: number; log: FastifyBaseLogger; brokerId?: string }

export async function startEmbeddedBroker(opts: BrokerOptions): Promise<EmbeddedBroker> {
  const aedes = await Aedes.createBroker({
    id: opts.brokerId ?? 'fleet-broker', // stable id (aedes #754)
    heartbeatInterval: 60_000,
    connectTimeout: 30_000,
    maxClientsIdLength: 64,
    authenticate(client, _username, _password, done) {
      // Issue #7 adds device credentials; until then the client id must at least be a valid device id.
      if (!DeviceId.safeParse(client.id).success) {
        const err = new Error('client id is not a valid device id') as AuthenticateError;
        err.returnCode = 2; // identifier rejected
        return done(err, false);
      }
      done(null, true);
    },
    authorizePublish(client, packet, callback) {
      const decision = mayPublish(client ? client.id : null, packet.topic, packet.payload?.length ?? 0, opts.maxPayloadBytes);
      if (!decision.ok) {
        opts.log.warn({ clientId: client?.id, topic: packet.topic, event: 'mqtt_publish_refused' }, decision.reason);
        return callback(new Error(decision.reason));
      }
      callback(null);
    },
    authorizeSubscribe(client, sub, callback) {
      const decision = maySubscribe(client.id, sub.topic);
      if (!decision.ok) {
        opts.log.warn({ clientId: client.id, topic: sub.topic, event: 'mqtt_subscribe_refused' }, decision.reason);
        return callback(new Error(decision.reason));
      }
      callback(null, sub);
    },
  });
  aedes.on('clientError', (client, err) => opts.log.debug({ clientId: client?.id, err: err.message }, 'mqtt client error'));

  const server: Server = createServer({ noDelay: true }, (socket) => aedes.handle(socket));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  return {
    port,
    aedes,
    connectedClients: () => aedes.connectedClients,
    publish(topic, payload, { qos, retain }) {
      return new Promise((resolve, reject) => {
        aedes.publish({ cmd: 'publish', topic, payload: typeof payload === 'string' ? Buffer.from(payload) : payload, qos, retain, dup: false }, (err) => (err ? reject(err) : resolve()));
      });
    },
    subscribe(filter, handler) {
      return new Promise((resolve) => {
        aedes.subscribe(filter, (packet: AedesPublishPacket, cb: () => void) => {
          try {
            handler(packet.topic, Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload));
          } catch (err) {
            opts.log.error({ err, topic: packet.topic }, 'bus handler threw');
          }
          cb();
        }, resolve);
      });
    },
    async close() {
      for (const client of Object.values((aedes as unknown as { clients: Record<string, { close(): void }> }).clients)) client.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
    },
  };
}
