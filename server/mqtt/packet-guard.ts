// aedes has no maximum packet size (aedes #831): it buffers a whole PUBLISH, however large, before any
// hook sees it. This guard reads the MQTT fixed header of every inbound packet as the bytes arrive and
// closes the connection as soon as a packet declares a Remaining Length over the limit, or a length
// field longer than 4 bytes [MQTT-2.2.3], before the body is buffered. The header arithmetic is shared
// with the agent (shared/mqtt-packet-size.ts); this file only wires it to a broker socket.
import type { Socket } from 'node:net';
import { PacketSizeGuard } from '../../shared/mqtt-packet-size.ts';

/** aedes pulls bytes with socket.read(); check them on the way out and cut the connection on a violation. */
export function guardSocket(socket: Socket, maxPacketBytes: number, onViolation: (why: string) => void): void {
  const guard = new PacketSizeGuard(maxPacketBytes);
  const read = socket.read.bind(socket);
  socket.read = ((size?: number) => {
    const chunk = read(size) as Buffer | string | null;
    if (chunk === null || socket.destroyed) return chunk;
    const why = guard.feed(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    if (why) {
      onViolation(why);
      socket.destroy();
      return null;
    }
    return chunk;
  }) as typeof socket.read;
}
