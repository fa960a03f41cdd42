// The telemetry writer thread: a worker_thread with its own SQLite connection (WAL lets the main
// connection read and write meanwhile) that stores the windows the main thread validated. Batches that
// arrive while one is being written are stored together, one transaction for all of them, and each
// batch gets its answer (what happened to each window) after that commit. Started by
// server/devices/telemetry-writer.ts; the protocol is the two message types below.
import { parentPort, workerData } from 'node:worker_threads';
import type { Telemetry } from '../../shared/messages.ts';
import { openDatabase, waitForPriorityWriters } from '../db/database.ts';
import { WindowStore, type WindowOutcome } from './window-store.ts';

export type ToWriter =
  /** windows as the JSON text the device sent (already validated on the main thread), received at `receivedAt` (ms) */
  | { type: 'batch'; id: number; texts: string[]; receivedAt: number }
  | { type: 'forget'; deviceId: string }
  | { type: 'close' };

export type FromWriter =
  | { type: 'ready' }
  /** `transaction`: the number of the transaction that stored the batch (batches stored together share it) */
  | { type: 'done'; id: number; outcomes: WindowOutcome[]; transaction: number }
  | { type: 'failed'; message: string };

export interface WriterThreadData {
  dbFile: string; maxWindowsPerTransaction: number; gatherMs: number;
  /** the main connection's write gate (server/db/database.ts writeGate): its transactions go first */
  mainWriteGate?: SharedArrayBuffer;
}

/** Windows per transaction at most: a longer write would hold SQLite's write lock from the main connection longer. */
export const MAX_WINDOWS_PER_TRANSACTION = 1000;

/**
 * Group commit under load: after a transaction of at least LOADED_TRANSACTION windows, the next one
 * waits up to this long (or until MAX_WINDOWS_PER_TRANSACTION windows are queued) for more windows.
 * A window costs the writer less in a bigger transaction: most of a commit is index pages, one per
 * device in the batch for each index ordered by device (the key and the manifest index) and rollup
 * rows, written whole to the WAL however few windows changed them (bench: 6.2 KB of WAL and ~46 us
 * per window at 300 windows a transaction, 2.5 KB and ~29 us at 1,000). The price is this much more
 * wait before a PUBACK, under load only: a lone window is stored at once.
 */
export const GATHER_MS = 20;
export const LOADED_TRANSACTION = 64;

function run(port: NonNullable<typeof parentPort>, data: WriterThreadData): void {
  const send = (m: FromWriter) => port.postMessage(m);
  let db: ReturnType<typeof openDatabase>;
  try {
    db = openDatabase(data.dbFile); // the main thread migrated it already: nothing to apply here
  } catch (err) {
    send({ type: 'failed', message: `telemetry writer cannot open ${data.dbFile}: ${(err as Error).message}` });
    return;
  }
  const store = new WindowStore(db);
  const gate = data.mainWriteGate ? new Int32Array(data.mainWriteGate) : null;
  let queue: Extract<ToWriter, { type: 'batch' }>[] = [];
  let scheduled = false;
  let gathering: NodeJS.Timeout | null = null;
  let transactions = 0;
  /** windows queued, and in the last transaction (how loaded the writer is) */
  let queued = 0, lastTransaction = 0;

  const schedule = () => {
    if (queued >= data.maxWindowsPerTransaction && gathering) { clearTimeout(gathering); gathering = null; }
    if (scheduled || gathering) return;
    if (lastTransaction >= LOADED_TRANSACTION && data.gatherMs > 0 && queued < data.maxWindowsPerTransaction) {
      gathering = setTimeout(() => { gathering = null; drain(); }, data.gatherMs);
    } else {
      // messages already waiting are delivered before setImmediate runs: they join this transaction
      scheduled = true;
      setImmediate(drain);
    }
  };

  const drain = () => {
    scheduled = false;
    if (gathering) { clearTimeout(gathering); gathering = null; }
    while (queue.length > 0) {
      // batches in arrival order, whole, up to the transaction's size (a bigger single batch goes alone)
      let n = 0, take = 0;
      while (take < queue.length && (take === 0 || n + queue[take].texts.length <= data.maxWindowsPerTransaction)) n += queue[take++].texts.length;
      const group = queue.slice(0, take);
      queue = queue.slice(take);
      queued -= n;
      lastTransaction = n;
      // texts the main thread validated; one that does not parse (never expected) fails alone
      const parsed: (Telemetry | null)[] = [];
      for (const b of group) for (const text of b.texts) {
        try { parsed.push(JSON.parse(text) as Telemetry); } catch { parsed.push(null); }
      }
      // the main thread's transactions (statuses, campaigns, the API) take the lock first
      if (gate) waitForPriorityWriters(gate);
      // one received time per transaction: the earliest batch's (the rows' received_at)
      const stored = store.store(parsed.filter((t): t is Telemetry => t !== null), group[0].receivedAt);
      transactions++;
      let k = 0;
      const outcomes: WindowOutcome[] = parsed.map((t) => (t ? stored[k++] : 'failed'));
      let at = 0;
      for (const b of group) {
        send({ type: 'done', id: b.id, outcomes: outcomes.slice(at, at + b.texts.length), transaction: transactions });
        at += b.texts.length;
      }
    }
  };

  port.on('message', (m: ToWriter) => {
    if (m.type === 'batch') {
      queue.push(m);
      queued += m.texts.length;
      schedule();
    } else if (m.type === 'forget') {
      store.forgetHardware(m.deviceId);
    } else if (m.type === 'close') {
      drain();
      db.close();
      port.close();
    }
  });
  send({ type: 'ready' });
}

if (parentPort) run(parentPort, workerData as WriterThreadData);
