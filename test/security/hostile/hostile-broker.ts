// A hostile "broker" on 127.0.0.1: a raw TCP server that speaks just enough MQTT 3.1.1 to get a client
// subscribed (CONNACK to CONNECT, SUBACK to SUBSCRIBE, PUBACK to QoS 1 PUBLISH), then, when attacking, sends a PUBLISH whose fixed
// header announces `announce` bytes and streams filler after it (honouring backpressure) until the
// client hangs up or `streamCap` bytes are out. It never completes the packet. With `tls` it speaks
// MQTTS with a certificate the agent trusts (a broker that holds a valid certificate and still attacks).
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';

export interface Attack { startedAt: number; endedAt: number | null; bytesWritten: number; closedByClient: boolean }

export function encodeRemainingLength(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

export class HostileBroker {
  /** attacks still to make: each SUBSCRIBE while this is above 0 is answered with an oversized PUBLISH */
  attacksLeft = 0;
  readonly connections: { at: number; socket: Socket }[] = [];
  readonly attacks: Attack[] = [];
  readonly subscribes: number[] = [];
  private server: Server | null = null;
  private readonly kicked = new WeakSet<Socket>();

  constructor(private readonly opts: { announce: number; streamCap: number; topic: string; tls?: { key: string; cert: string } }) {}

  get port(): number { return (this.server!.address() as AddressInfo).port; }

  async start(): Promise<void> {
    this.server = this.opts.tls
      ? createTlsServer({ key: this.opts.tls.key, cert: this.opts.tls.cert }, (socket) => this.onConnection(socket))
      : createServer((socket) => this.onConnection(socket));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
  }

  /** Drop the current connections from the broker side (the client reconnects). */
  kick(): void {
    for (const c of this.connections) { this.kicked.add(c.socket); c.socket.destroy(); }
  }

  /** Send a complete PUBLISH of `size` payload bytes on the connections (a legitimate-sized packet). */
  publishWhole(size: number): void {
    for (const c of this.connections) if (!c.socket.destroyed) c.socket.write(Buffer.concat([this.publishHeader(size), Buffer.alloc(size, 0x20)]));
  }

  async close(): Promise<void> {
    this.kick();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private publishHeader(payloadBytes: number): Buffer {
    const topic = Buffer.from(this.opts.topic);
    const topicField = Buffer.concat([Buffer.from([topic.length >> 8, topic.length & 0xff]), topic]);
    return Buffer.concat([Buffer.from([0x30]), encodeRemainingLength(topicField.length + payloadBytes), topicField]);
  }

  private onConnection(socket: Socket): void {
    this.connections.push({ at: Date.now(), socket });
    socket.on('error', () => {});
    let pending = Buffer.alloc(0);
    socket.on('data', (d) => {
      pending = Buffer.concat([pending, d]);
      // split complete packets: type byte, Remaining Length, body
      for (;;) {
        if (pending.length < 2) return;
        let len = 0, mult = 1, i = 1;
        for (; i < pending.length && i <= 4; i++) {
          len += (pending[i] & 0x7f) * mult;
          mult *= 128;
          if (!(pending[i] & 0x80)) break;
        }
        if (i >= pending.length || pending.length < i + 1 + len) return;
        const type = pending[0] >> 4;
        const qos = (pending[0] >> 1) & 3;
        const body = pending.subarray(i + 1, i + 1 + len);
        pending = pending.subarray(i + 1 + len);
        if (type === 1) socket.write(Buffer.from([0x20, 0x02, 0x00, 0x00])); // CONNECT -> CONNACK accepted
        if (type === 8) { // SUBSCRIBE -> SUBACK granting QoS 1, then perhaps the attack
          let filters = 0;
          for (let at = 2; at + 2 <= body.length; at += 2 + ((body[at] << 8) | body[at + 1]) + 1) filters++;
          socket.write(Buffer.from([0x90, 2 + filters, body[0], body[1], ...Array(filters).fill(0x01)]));
          this.subscribes.push(Date.now());
          if (this.attacksLeft > 0) { this.attacksLeft--; this.attack(socket); }
        }
        if (type === 3 && qos === 1) { // PUBLISH QoS 1 -> PUBACK (mqtt.js holds 'connect' back until replayed ones are acknowledged)
          const at = 2 + ((body[0] << 8) | body[1]);
          socket.write(Buffer.from([0x40, 0x02, body[at], body[at + 1]]));
        }
        if (type === 12) socket.write(Buffer.from([0xd0, 0x00])); // PINGREQ -> PINGRESP
      }
    });
  }

  private attack(socket: Socket): void {
    const attack: Attack = { startedAt: Date.now(), endedAt: null, bytesWritten: 0, closedByClient: false };
    this.attacks.push(attack);
    const header = this.publishHeader(this.opts.announce);
    socket.write(header);
    attack.bytesWritten += header.length;
    const filler = Buffer.alloc(64 * 1024, 0x7b);
    const pump = () => {
      while (!socket.destroyed && attack.bytesWritten < this.opts.streamCap) {
        attack.bytesWritten += filler.length;
        if (!socket.write(filler)) return void socket.once('drain', pump);
      }
    };
    socket.once('close', () => { attack.endedAt = Date.now(); attack.closedByClient = !this.kicked.has(socket); });
    pump();
  }
}
