import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { MIGRATIONS } from './migrations.ts';

export type Db = Database.Database;

export function openDatabase(file: string): Db {
  if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  // A reopened WAL database reports NORMAL whatever it was created with: set it on every open.
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  immediateTransactions(db);
  migrate(db);
  return db;
}

/**
 * Every db.transaction() begins with BEGIN IMMEDIATE (the write lock at once). The telemetry writer thread
 * writes on a second connection: a deferred transaction that read first and wrote later would find the
 * database changed since its snapshot and fail with SQLITE_BUSY_SNAPSHOT, which no busy timeout retries.
 * Taking the lock at BEGIN makes it wait (busy_timeout) for the other connection's commit instead.
 * `.deferred` is still there for a transaction that only reads.
 */
/** run `fn` with the write announced on `gate` (see waitForPriorityWriters), and wake a waiter when the last one ends */
function announced<T>(gate: Int32Array, fn: () => T): T {
  Atomics.add(gate, 0, 1);
  try {
    return fn();
  } finally {
    if (Atomics.sub(gate, 0, 1) === 1) Atomics.notify(gate, 0);
  }
}

function immediateTransactions(db: Db): void {
  const transaction = db.transaction.bind(db);
  const gate = new Int32Array(new SharedArrayBuffer(4));
  gates.set(db, gate);
  db.transaction = ((fn: Parameters<Db['transaction']>[0]) => {
    const t = transaction(fn).immediate;
    // announce the write while it waits for and holds the lock (see waitForPriorityWriters)
    const gated = (...args: unknown[]) => announced(gate, () => (t as (...a: unknown[]) => unknown)(...args));
    // keep better-sqlite3's variants (.deferred for a read-only transaction): ungated, they take no lock first
    for (const k of ['deferred', 'exclusive'] as const) (gated as unknown as Record<string, unknown>)[k] = (t as unknown as Record<string, unknown>)[k];
    (gated as unknown as Record<string, unknown>).immediate = gated;
    return gated as unknown as ReturnType<Db['transaction']>;
  }) as Db['transaction'];
  // A write statement run on its own (autocommit: an event, a device's status, a campaign's deadline
  // update) takes the same lock: it announces itself too (inside a transaction it only counts once more).
  const prepare = db.prepare.bind(db);
  db.prepare = ((sql: string) => {
    const st = prepare(sql);
    if (st.reader) return st;
    const run = st.run.bind(st) as (...a: unknown[]) => ReturnType<typeof st.run>;
    (st as { run: typeof st.run }).run = ((...args: unknown[]) => announced(gate, () => run(...args))) as typeof st.run;
    return st;
  }) as Db['prepare'];
}

/**
 * The write gate of a connection opened here: how many of its transactions are waiting for or holding
 * the write lock right now. A second connection that writes back to back (the telemetry writer thread)
 * waits on it before each transaction: SQLite's busy handler only polls (sleeps of up to 100 ms), so a
 * connection whose lock is free for microseconds between transactions starved the other one until its
 * busy timeout ran out (a status batch failed with "database is locked" during 2,000-device reverts).
 */
const gates = new WeakMap<Db, Int32Array>();
export function writeGate(db: Db): SharedArrayBuffer | undefined {
  return gates.get(db)?.buffer as SharedArrayBuffer | undefined;
}

/**
 * In the other connection's thread, before it takes the write lock: wait while the gated connection has
 * a transaction waiting or running, at most `maxMs` in all (a busy main thread never stops the writer).
 */
export function waitForPriorityWriters(gate: Int32Array, maxMs = 1000): number {
  const t0 = performance.now();
  for (let v = Atomics.load(gate, 0); v > 0; v = Atomics.load(gate, 0)) {
    const left = maxMs - (performance.now() - t0);
    if (left <= 0) break;
    Atomics.wait(gate, 0, v, Math.min(left, 50));
  }
  return performance.now() - t0;
}

export function migrate(db: Db): number {
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
  const applied = new Set((db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map((r) => r.version));
  let count = 0;
  for (const m of MIGRATIONS) {
    if (applied.has(m.version)) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(m.version, m.name, new Date().toISOString());
    })();
    count++;
  }
  return count;
}
