// A TCP relay between simulated devices and the broker whose link can be cut (every socket through it
// dies, new connections are refused) and restored, without touching the broker or the agents.
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';

export class TcpRelay {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  private readonly clients = new Set<Socket>();
  private up = true;
  port = 0;
  cuts = 0;
  /** live connections destroyed by cut() (a cut with nobody connected drops none) */
  connectionsCut = 0;

  constructor(private readonly targetHost: string, private readonly targetPort: number) {}

  async start(): Promise<number> {
    this.server = createServer((client) => {
      if (!this.up) return void client.destroy();
      const upstream = connect(this.targetPort, this.targetHost);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {});
      }
      this.clients.add(client);
      client.on('close', () => this.clients.delete(client));
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
    return this.port;
  }

  get url(): string { return `mqtt://127.0.0.1:${this.port}`; }

  /** Drop every live connection; with `refuse`, new ones too until restore(). */
  cut(refuse = true): void {
    if (refuse) this.up = false;
    if (this.sockets.size) this.cuts++;
    this.connectionsCut += this.clients.size;
    this.clients.clear();
    for (const s of this.sockets) s.destroy();
  }

  restore(): void { this.up = true; }

  async stop(): Promise<void> {
    this.cut();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
