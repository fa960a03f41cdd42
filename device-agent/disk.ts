// Every call by which the agent changes its files (open for writing, write, fsync, close, rename,
// unlink, mkdir, truncate) goes through `disk`. It is node:fs itself; the power-loss test
// (test/agent/power-loss.test.ts) swaps in a recorder that logs each operation with its data, so it
// can enumerate what a power cut at any point could leave on disk. Reads stay on node:fs.
import * as fs from 'node:fs';

export interface Disk {
  openSync: typeof fs.openSync;
  writeSync: (fd: number, data: Uint8Array) => number;
  fsyncSync: typeof fs.fsyncSync;
  closeSync: typeof fs.closeSync;
  renameSync: typeof fs.renameSync;
  unlinkSync: typeof fs.unlinkSync;
  mkdirSync: (path: string, opts: { recursive: true }) => void;
  truncateSync: typeof fs.truncateSync;
}

const real: Disk = {
  openSync: fs.openSync,
  writeSync: (fd, data) => fs.writeSync(fd, data),
  fsyncSync: fs.fsyncSync,
  closeSync: fs.closeSync,
  renameSync: fs.renameSync,
  unlinkSync: fs.unlinkSync,
  mkdirSync: (path, opts) => { fs.mkdirSync(path, opts); },
  truncateSync: fs.truncateSync,
};

/** The operations in use; node:fs unless a test installed a recorder. */
export const disk: Disk = { ...real };

/** Install `over` (null: back to node:fs). For tests; one process, one disk. */
export function useDisk(over: Partial<Disk> | null): void {
  Object.assign(disk, real, over ?? {});
}

/** node:fs itself, for a recorder that passes calls through. */
export const realDisk: Readonly<Disk> = real;
