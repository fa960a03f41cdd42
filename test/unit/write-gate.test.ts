// The main connection's transactions are not starved by a second connection that writes back to back
// (the telemetry writer thread under load). SQLite's busy handler only polls, so without the write gate
// a main-thread transaction waited up to its whole busy timeout (a status batch failed with "database is
// locked" during 2,000-device reverts); the writer now waits while a main transaction, or a write statement
// run on its own (an event, a status), wants the lock.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase, writeGate } from '../../server/db/database.ts';
import { spawnModuleWorker } from '../../server/worker-boot.ts';

describe('write gate between the main connection and the writer thread', () => {
  const dirs: string[] = [];
  afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }); });

  it.each([
    ['transaction', true],
    ['autocommit statement', false],
  ] as const)('every main-thread write (%s) gets the lock while the other connection writes back to back, and the other keeps writing', async (_kind, inTransaction) => {
    const dir = mkdtempSync(join(tmpdir(), 'write-gate-'));
    dirs.push(dir);
    const file = join(dir, 'fleet.db');
    const db = openDatabase(file);
    db.pragma('busy_timeout = 1000'); // a starved transaction fails within the test's time
    db.exec('CREATE TABLE busy (v INTEGER)');
    const w = spawnModuleWorker(import.meta.url, '../helpers/busy-writer-thread.ts', { file, ms: 5000, honour: true, gate: writeGate(db) });
    try {
      const messages: { type: string; transactions?: number }[] = [];
      const done = new Promise<number>((resolve, reject) => {
        w.on('message', (m: { type: string; transactions?: number }) => { messages.push(m); if (m.type === 'done') resolve(m.transactions!); });
        w.on('error', reject);
      });
      while (!messages.some((m) => m.type === 'started')) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 300)); // the other connection is writing
      let ok = 0;
      const failed: string[] = [];
      for (let i = 0; i < 20; i++) {
        try {
          const insert = db.prepare('INSERT INTO busy (v) VALUES (-1)');
          if (inTransaction) db.transaction(() => insert.run())();
          else insert.run(); // an event or a status written on its own
          ok++;
        } catch (err) {
          failed.push((err as Error).message);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      const theirs = await done;
      expect(failed).toEqual([]);
      expect(ok).toBe(20);
      expect((db.prepare('SELECT COUNT(*) AS n FROM busy WHERE v = -1').get() as { n: number }).n).toBe(20);
      // the writer was held only while a main transaction waited: it wrote through the whole run
      expect(theirs).toBeGreaterThan(100);
      expect((db.prepare('SELECT COUNT(*) AS n FROM busy WHERE v >= 0').get() as { n: number }).n).toBeGreaterThan(1000);
    } finally {
      await w.terminate();
      db.close();
    }
  }, 30_000);
});
