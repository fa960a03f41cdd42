// The MQTT fixed header, read as bytes arrive, to refuse a packet by its announced size before its body
// is buffered. Pure: it only counts bytes; the server's broker socket and the agent's client stream
// each cut their own connection when it answers with a reason. Neither aedes (#831) nor mqtt.js has a
// maximum incoming packet size, and MQTT 3.1.1 cannot ask the peer for one: the receiver must enforce it.
//   Fixed header [MQTT-2.2]: one byte of type and flags, then the Remaining Length, 1 to 4 bytes of
//   7 bits each, least significant first, high bit = more bytes follow [MQTT-2.2.3]; then that many bytes.

export class PacketSizeGuard {
  private state: 'type' | 'len' | 'body' = 'type';
  private len = 0;
  private mult = 1;
  private lenBytes = 0;
  private remaining = 0;

  /** maxRemainingLength: the largest Remaining Length (variable header + payload) accepted */
  constructor(private readonly maxRemainingLength: number) {}

  /** Feed the next bytes of the stream. Returns null while the stream is acceptable, else why it is not. */
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
        if (this.len > this.maxRemainingLength) return `packet of ${this.len} bytes is over the ${this.maxRemainingLength}-byte limit`;
        this.remaining = this.len;
        this.state = this.len > 0 ? 'body' : 'type';
      }
    }
    return null;
  }
}
