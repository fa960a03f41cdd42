// aedes has no maximum packet size (aedes #831): it buffers a whole PUBLISH, however large, before any
// hook sees it. This guard reads the MQTT fixed header of every inbound packet as the bytes arrive and
// closes the connection as soon as a packet declares a Remaining Length over the limit, or a length
// field longer than 4 bytes [MQTT-2.2.3], before the body is buffered.
import type { Socket } from 'node:net';

export class PacketSizeGuard {
  private state: 'type' | 'len' | 'body' = 'type';
  private len = 0;
  private mult = 1;
  private lenBytes = 0;
  private remaining = 0;

  constructor(private readonly maxPacketBytes: number) {}

  /** Returns null while the stream is acceptable, else why it is not. */
  feed(buf: Uint8Array): string | null {
    let i = 0;
    while (i < buf.length) {
      if (this.state === 'body') {
        const skip = Math.min(this.remaining, buf.length - i);
        this.remaining -= skip;
        i += skip;
        if (this.remaining === 0) this.state = 'type';
      } else if (this.state === 'type') {
        this.state = 'len';
        this.len = 0; this.mult = 1; this.lenBytes = 0;
        i++;
      } else {
        const b = buf[i++];
        this.len += (b & 0x7f) * this.mult;
        this.mult *= 128;
        if (++this.lenBytes > 4) return 'malformed remaining length';
        if (b & 0x80) continue;
        if (this.len > this.maxPacketBytes) return `packet of ${this.len} bytes is over the ${this.maxPacketBytes}-byte limit`;
        this.remaining = this.len;
        this.state = this.len > 0 ? 'body' : 'type';
      }
    }
    return null;
  }
}

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
