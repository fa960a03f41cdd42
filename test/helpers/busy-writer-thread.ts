// A second connection that writes back to back, as the telemetry writer thread does under load: 10 ms
// transactions with no pause between them, for `ms` (or one held for `holdMs`). With `honour` it waits on the main connection's
// write gate before each transaction (server/db/database.ts waitForPriorityWriters), like the writer.
import { parentPort, workerData } from 'node:worker_threads';
import { openDatabase, waitForPriorityWriters } from '../../server/db/database.ts';

const { file, ms, honour, gate, holdMs } = workerData as { file: string; ms: number; honour: boolean; gate: SharedArrayBuffer; holdMs?: number };
const db = openDatabase(file);
const g = new Int32Array(gate);
// `holdMs`: instead, one transaction that keeps the write lock that long (past any busy timeout)
if (holdMs) {
  db.exec('BEGIN IMMEDIATE');
  parentPort!.postMessage({ type: 'started' });
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, holdMs);
  db.exec('COMMIT');
  db.close();
  parentPort!.postMessage({ type: 'done', transactions: 1 });
  process.exit(0);
}
const insert = db.prepare('INSERT INTO busy (v) VALUES (?)');
const until = Date.now() + ms;
let transactions = 0;
parentPort!.postMessage({ type: 'started' });
while (Date.now() < until) {
  if (honour) waitForPriorityWriters(g);
  db.transaction(() => { const t0 = Date.now(); while (Date.now() - t0 < 10) insert.run(transactions); })();
  transactions++;
}
db.close();
parentPort!.postMessage({ type: 'done', transactions });
