// The agent's MQTT connection with every incoming packet bounded at the stream. mqtt.js buffers a whole
// packet before anyone sees it, up to MQTT's 256 MiB, and MQTT 3.1.1 cannot ask the broker for less: a
// hostile or broken broker could make the device hold hundreds of MB. Here each chunk the socket reads
// passes the shared fixed-header guard before it enters the stream's buffer; a header that announces a
// Remaining Length over the limit (or a malformed length) cuts the connection at once, and mqtt.js
// reconnects with the agent's backoff. At most one socket read (<= 64 KiB) of the packet is ever held.
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Duplex } from 'node:stream';
import { PacketSizeGuard } from '../shared/mqtt-packet-size.ts';

/**
 * mqtt.connect(url, opts), with each connection's incoming packets limited to maxIncomingPacketBytes.
 * url may list several brokers separated by commas: the first is tried first, and each reconnect goes
 * to the next one in the list (then round again), so a device fails over from a dead node to a live one.
 */
export function connectBounded(url: string, maxIncomingPacketBytes: number, onViolation: (why: string) => void, opts: IClientOptions): MqttClient {
  const urls = url.split(',').map((u) => u.trim()).filter(Boolean);
  // mqtt.js moves through `servers` one entry per connection attempt
  const servers = urls.length > 1 ? { servers: urls.map(serverEntry) } : {};
  // mqtt.connect picks the transport (tcp, tls, ws) from the URL; wrap what it builds, on every reconnect
  const client = mqtt.connect(urls[0], { ...opts, ...servers, manualConnect: true });
  const internal = client as unknown as { streamBuilder: (c: MqttClient) => Duplex };
  const build = internal.streamBuilder;
  internal.streamBuilder = (c) => boundIncoming(build(c), maxIncomingPacketBytes, onViolation);
  client.options.manualConnect = false; // end() reads it: with it set, an ended client could reconnect
  client.connect();
  return client;
}

function serverEntry(url: string): { host: string; port: number; protocol: 'mqtt' | 'mqtts' } {
  const u = new URL(url);
  const protocol = u.protocol === 'mqtts:' ? 'mqtts' : 'mqtt';
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port: u.port ? Number(u.port) : protocol === 'mqtts' ? 8883 : 1883, protocol };
}

/**
 * Check every chunk a readable side pushes (net.Socket, TLSSocket and the ws stream all deliver reads
 * through push) before it is buffered; on a violation destroy the stream and drop the chunk.
 */
export function boundIncoming<S extends Duplex>(stream: S, maxRemainingLength: number, onViolation: (why: string) => void): S {
  const guard = new PacketSizeGuard(maxRemainingLength);
  const push = stream.push.bind(stream);
  stream.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
    if (chunk !== null && chunk !== undefined && !stream.destroyed) {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk, encoding) : (chunk as Uint8Array);
      const why = guard.feed(bytes);
      if (why) {
        onViolation(why);
        stream.destroy();
        return false;
      }
    }
    return push(chunk, encoding);
  };
  return stream;
}
