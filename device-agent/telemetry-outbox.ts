// Telemetry windows waiting for the broker's PUBACK, on disk: one small file per window, written
// atomically (mqtt.js keeps its offline queue in memory only, so a restart would lose it). A window
// leaves the outbox when its QoS 1 publish is acknowledged; after a reconnect or a restart the rest is
// sent again. Resending is safe: the server stores (deviceId, seq) once. Bounded: past `max` windows
// the oldest go first, so a device offline for months does not fill its disk.
// Files are written with rename, so a process crash never leaves a half window under a real name; a
// power cut may, for a window written online without fsync (add()), and read() then drops it.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Telemetry } from '../shared/messages.ts';
import { disk } from './disk.ts';
import { removeIfExists } from './downloader.ts';
import { fsyncDir, writeFileDurable } from './durable-file.ts';

const NAME = /^(\d{12})\.json$/;

export class TelemetryOutbox {
  private seqs: number[] = [];
  dropped = 0;

  constructor(readonly dir: string, private readonly max: number) {}

  /** Load what a previous run left; half-written files (a crash mid-write) are removed. */
  open(): void {
    if (!existsSync(this.dir)) {
      disk.mkdirSync(this.dir, { recursive: true });
      // the folder's own name must be on disk before a window fsynced into it counts as durable
      fsyncDir(dirname(this.dir));
    }
    const seqs: number[] = [];
    for (const name of readdirSync(this.dir)) {
      const m = NAME.exec(name);
      if (m) seqs.push(Number(m[1]));
      else removeIfExists(join(this.dir, name));
    }
    this.seqs = seqs.sort((a, b) => a - b);
    this.trim();
  }

  get size(): number { return this.seqs.length; }

  pending(): readonly number[] { return this.seqs; }

  /**
   * Store a window atomically (temp file + rename: a crash leaves the old or the new file, never half).
   * `fsync` also makes it survive a power cut; the agent asks for that while offline, when windows wait
   * for long. Online, a window is usually acknowledged within milliseconds, and an fsync per window per
   * device would cost more than the window is worth (a simulated fleet cuts thousands per second).
   * Returns the JSON text written, which the agent publishes as it is.
   */
  add(t: Telemetry, fsync = true): string {
    const text = JSON.stringify(t);
    writeFileDurable(this.path(t.seq), text, fsync);
    this.seqs.push(t.seq);
    if (this.seqs.length > 1 && this.seqs[this.seqs.length - 2] > t.seq) this.seqs.sort((a, b) => a - b);
    this.trim();
    return text; // what was stored is what is published (one JSON text per window)
  }

  /** The stored window, or null (and the file removed) when it is gone or damaged. */
  read(seq: number): Telemetry | null {
    try {
      const parsed = Telemetry.safeParse(JSON.parse(readFileSync(this.path(seq), 'utf8')));
      if (parsed.success) return parsed.data;
    } catch { /* missing or not JSON */ }
    this.remove(seq);
    return null;
  }

  remove(seq: number): void {
    const i = this.seqs.indexOf(seq);
    if (i >= 0) this.seqs.splice(i, 1);
    // a window the outbox holds is on disk: unlinked without an lstat first (issue 13: one syscall per
    // acknowledged window fewer); one it does not hold may not be
    if (i >= 0) {
      try { disk.unlinkSync(this.path(seq)); } catch { /* removed in between */ }
    } else removeIfExists(this.path(seq));
  }

  private trim(): void {
    while (this.seqs.length > this.max) {
      const seq = this.seqs.shift()!;
      removeIfExists(this.path(seq));
      this.dropped++;
    }
  }

  private path(seq: number): string {
    return join(this.dir, `${String(seq).padStart(12, '0')}.json`);
  }
}
