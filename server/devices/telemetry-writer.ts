// Telemetry windows, validated on the main thread, are stored by a writer thread with its own SQLite
// connection (server/telemetry/writer-thread.ts): the main thread only posts them. Windows added in the
// same turn of the event loop go as one batch (at most maxBatch); add() returns a promise that settles
// once its window is committed (device-ingest.ts holds the broker's delivery on it while the writer is behind).
// Storage is idempotent ((device_id, seq) is the key; rollups count newly stored windows only), so a
// batch sent again after the thread died is still stored once. An in-memory database (tests, tools)
// cannot be shared with a thread: it is written on the main thread, by the same WindowStore.
import type { Worker } from 'node:worker_threads';
import type { EventLoopUtilization } from 'node:perf_hooks';
import type { Telemetry } from '../../shared/messages.ts';
import { writeGate, type Db } from '../db/database.ts';
import { spawnModuleWorker } from '../worker-boot.ts';
import { WindowStore, type WindowOutcome } from '../telemetry/window-store.ts';
import { GATHER_MS, MAX_WINDOWS_PER_TRANSACTION, type FromWriter, type ToWriter, type WriterThreadData } from '../telemetry/writer-thread.ts';

export interface TelemetryWriterOptions {
  /** windows per batch posted to the writer (default 256) */
  maxBatch?: number;
  /** the clock stamped into received_at and told to onStored */
  now?: () => number;
  /** 'thread' (default for a database file) or 'main' (always used for an in-memory database) */
  thread?: 'thread' | 'main';
  /** group commit: under load, how long the writer thread waits for more windows before a transaction (default GATHER_MS; 0: never) */
  gatherMs?: number;
  /** told when the writer thread fails (it is restarted and its unanswered batches are sent again) */
  onError?: (err: Error) => void;
}

interface Batch { id: number; windows: Telemetry[]; texts: string[]; receivedAt: number; done: () => void; settled: Promise<void> }

export class TelemetryWriter {
  stored = 0;
  duplicates = 0;
  /** windows SQLite would not store (logged by the caller through onError; the device is acknowledged) */
  failed = 0;
  /** transactions that stored windows (with `stored + duplicates + failed`: the windows per transaction under load) */
  transactions = 0;
  /** told of each window stored for the first time, after its commit, with when it was stored (metrics listen here) */
  onStored: ((t: Telemetry, storedAt: number) => void) | null = null;

  private pending: Batch | null = null;
  private readonly inFlight = new Map<number, Batch>();
  private nextId = 1;
  private immediate: NodeJS.Immediate | null = null;
  private readonly maxBatch: number;
  private readonly gatherMs: number;
  private readonly now: () => number;
  private readonly onError: (err: Error) => void;
  /** main-thread store (in-memory database) or the writer thread */
  private local: WindowStore | null = null;
  private worker: Worker | null = null;
  private ready: Promise<void> | null = null;
  private restarts = 0;
  private lastTransaction = 0;
  private closing = false;

  constructor(private readonly db: Db, opts: TelemetryWriterOptions = {}) {
    this.maxBatch = opts.maxBatch ?? 256;
    this.gatherMs = opts.gatherMs ?? GATHER_MS;
    this.now = opts.now ?? Date.now;
    this.onError = opts.onError ?? (() => {});
    if (db.memory || opts.thread === 'main') this.local = new WindowStore(db);
    else this.startThread();
  }

  /** windows added and not yet answered by the writer (committed, found stored, or failed) */
  get backlog(): number { return this.waiting; }
  private waiting = 0;

  /** where windows are written: 'thread' or 'main' */
  get thread(): 'thread' | 'main' { return this.local ? 'main' : 'thread'; }

  /** a presence message may name a new hardware class: the writer reads it again at the device's next window */
  forgetHardware(deviceId: string): void {
    if (this.local) this.local.forgetHardware(deviceId);
    else this.post({ type: 'forget', deviceId });
  }

  /**
   * Queue one validated window; `text` is its JSON as received (sent to the thread as is, cheaper than
   * cloning the object). Settles after the commit that stored it (or found it already stored).
   */
  add(t: Telemetry, text?: string): Promise<void> {
    let b = this.pending;
    if (!b) {
      let done!: () => void;
      const settled = new Promise<void>((resolve) => { done = resolve; });
      b = this.pending = { id: this.nextId++, windows: [], texts: [], receivedAt: 0, done, settled };
      this.immediate = setImmediate(() => this.send());
    }
    b.windows.push(t);
    b.texts.push(text ?? JSON.stringify(t));
    this.waiting++;
    if (b.windows.length >= this.maxBatch) this.send();
    return b.settled;
  }

  /** Send what is queued and wait until everything added so far is committed. */
  async flush(): Promise<void> {
    this.send();
    await Promise.all([...this.inFlight.values()].map((b) => b.settled));
  }

  /** Flush, then stop the writer thread (its connection closes after the last commit). */
  async close(): Promise<void> {
    await this.flush();
    this.closing = true;
    const w = this.worker;
    this.worker = null;
    if (w) {
      const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
      w.postMessage({ type: 'close' } satisfies ToWriter);
      await exited;
    }
  }

  private send(): void {
    if (this.immediate) { clearImmediate(this.immediate); this.immediate = null; }
    const b = this.pending;
    if (!b) return;
    this.pending = null;
    b.receivedAt = this.now();
    this.inFlight.set(b.id, b);
    if (this.local) {
      this.transactions++;
      this.answered(b.id, this.storeHere(this.local, b));
    }
    else this.post({ type: 'batch', id: b.id, texts: b.texts, receivedAt: b.receivedAt });
  }

  private storeHere(store: WindowStore, b: Batch): WindowOutcome[] {
    try {
      return store.store(b.windows, b.receivedAt);
    } catch (err) {
      this.onError(err as Error);
      return b.windows.map(() => 'failed');
    }
  }

  private answered(id: number, outcomes: WindowOutcome[]): void {
    const b = this.inFlight.get(id);
    if (!b) return;
    this.inFlight.delete(id);
    this.waiting -= b.windows.length;
    const storedAt = this.now();
    outcomes.forEach((o, i) => {
      if (o === 'stored') {
        this.stored++;
        if (this.onStored) this.onStored(b.windows[i], storedAt);
      } else if (o === 'duplicate') this.duplicates++;
      else this.failed++;
    });
    this.outcomes?.(b.windows, outcomes);
    b.done();
  }

  /** the device ingest hears each batch's outcomes here (to tell its listeners of newly stored windows) */
  outcomes: ((windows: Telemetry[], outcomes: WindowOutcome[]) => void) | null = null;

  private post(m: ToWriter): void {
    this.worker?.postMessage(m);
  }

  // ---- the writer thread ---------------------------------------------------------------------

  private startThread(): void {
    const data: WriterThreadData = { dbFile: this.db.name, maxWindowsPerTransaction: MAX_WINDOWS_PER_TRANSACTION, gatherMs: this.gatherMs, mainWriteGate: writeGate(this.db) };
    const w = this.worker = spawnModuleWorker(import.meta.url, '../telemetry/writer-thread.ts', data);
    this.lastTransaction = 0; // a new thread numbers its transactions from 1
    this.ready = new Promise<void>((resolve) => {
      w.on('message', (m: FromWriter) => {
        if (m.type === 'ready') resolve();
        else if (m.type === 'done') {
          // batches stored together are answered one after another with the same number
          if (m.transaction !== this.lastTransaction) { this.lastTransaction = m.transaction; this.transactions++; }
          this.answered(m.id, m.outcomes);
        }
        else if (m.type === 'failed') this.onError(new Error(m.message));
      });
    });
    w.on('error', (err) => this.onError(err));
    w.on('exit', (code) => {
      if (this.closing || this.worker !== w) return;
      this.worker = null;
      this.restart(new Error(`telemetry writer thread exited with code ${code}`));
    });
  }

  /**
   * The thread died: start another and send it every unanswered batch again (those it had committed
   * are found already stored). Windows keep their PUBACK until then. After repeated deaths the windows
   * are written on the main thread, so nothing waits forever.
   */
  private restart(why: Error): void {
    this.onError(why);
    const unanswered = [...this.inFlight.values()];
    if (++this.restarts > 3) {
      const local = this.local = new WindowStore(this.db);
      for (const b of unanswered) this.answered(b.id, this.storeHere(local, b));
      return;
    }
    this.startThread();
    for (const b of unanswered) this.post({ type: 'batch', id: b.id, texts: b.texts, receivedAt: b.receivedAt });
  }

  /** the writer thread's event-loop utilization (as performance.eventLoopUtilization); null on the main thread */
  eventLoopUtilization(prev?: EventLoopUtilization): EventLoopUtilization | null {
    return this.worker ? this.worker.performance.eventLoopUtilization(prev) : null;
  }

  /** resolves once the writer thread has opened its connection (immediately for the main-thread writer) */
  async started(): Promise<void> {
    await this.ready;
  }
}
