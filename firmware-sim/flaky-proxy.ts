// The "flaky network" fault: a relay between simulated devices and the broker that drops every connection
// through it on a schedule. Devices reconnect on their own (with jitter).
import type { FaultCounts } from './faults.ts';
import { TcpRelay } from './tcp-relay.ts';

export class FlakyProxy {
  private readonly relay: TcpRelay;
  private timer: NodeJS.Timeout | null = null;

  constructor(target: { host: string; port: number }, private readonly dropEveryMs: number) {
    this.relay = new TcpRelay(target.host, target.port);
  }

  get drops(): number { return this.relay.cuts; }
  /** device connections the drops destroyed */
  get connectionsCut(): number { return this.relay.connectionsCut; }

  async start(): Promise<number> {
    const port = await this.relay.start();
    this.timer = setInterval(() => this.relay.cut(false), this.dropEveryMs);
    return port;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.relay.stop();
  }
}

/** A fetch that cuts each response body after `cutAfterBytes` and/or delays every chunk (slow or broken downloads). */
export function faultyFetch(spec: { cutAfterBytes?: number; delayMsPerChunk?: number }, counts?: Pick<FaultCounts, 'downloadsCut' | 'chunksDelayed'>): typeof fetch {
  return async (input, init) => {
    const res = await fetch(input, init);
    if (!res.body) return res;
    const reader = res.body.getReader();
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (spec.delayMsPerChunk) {
          await new Promise((r) => setTimeout(r, spec.delayMsPerChunk));
          if (counts) counts.chunksDelayed++;
        }
        const { done, value } = await reader.read();
        if (done) return controller.close();
        if (spec.cutAfterBytes !== undefined && sent + value.byteLength > spec.cutAfterBytes) {
          const keep = spec.cutAfterBytes - sent;
          if (keep > 0) controller.enqueue(value.subarray(0, keep));
          await reader.cancel();
          if (counts) counts.downloadsCut++;
          return controller.error(new Error('simulated connection reset'));
        }
        sent += value.byteLength;
        controller.enqueue(value);
      },
      cancel: (why) => reader.cancel(why),
    });
    return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
}

/**
 * At most `max` downloads at once from one simulator process: thousands of simulated devices share one
 * machine's file table, which real devices (each with its own) do not. Queued calls wait their turn.
 */
export function concurrencyLimited(max: number, inner: typeof fetch = fetch): typeof fetch {
  let running = 0;
  const queue: (() => void)[] = [];
  const release = () => { running--; queue.shift()?.(); };
  return async (input, init) => {
    if (running >= max) await new Promise<void>((r) => queue.push(r));
    running++;
    try {
      const res = await inner(input, init);
      if (!res.body) { release(); return res; }
      if (!res.ok) {
        // error bodies are small and callers often drop them unread: read them here so the slot comes back
        const text = await res.text().catch(() => '');
        release();
        return new Response(text, { status: res.status, statusText: res.statusText, headers: res.headers });
      }
      // hold the slot until the body is read (or abandoned), not just until the headers arrive
      let done = false;
      const finish = () => { if (!done) { done = true; release(); } };
      const reader = res.body.getReader();
      const body = new ReadableStream<Uint8Array>({
        async pull(c) {
          try {
            const r = await reader.read();
            if (r.done) { finish(); c.close(); } else c.enqueue(r.value);
          } catch (err) { finish(); c.error(err); }
        },
        cancel: (why) => { finish(); return reader.cancel(why); },
      });
      return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
    } catch (err) {
      release();
      throw err;
    }
  };
}
