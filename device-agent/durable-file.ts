// Crash-safe small files: write a temporary file, fsync it, rename over the target, fsync the folder.
// After a power cut the target holds either the old or the new content, never a mix.
import { closeSync, fsyncSync, openSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try { fsyncSync(fd); } finally { closeSync(fd); }
}

/** `fsync = false` keeps the atomic rename (safe against a process crash) but not against power loss. */
export function writeFileDurable(path: string, data: string | Uint8Array, fsync = true): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    if (fsync) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  if (fsync) fsyncDir(dirname(path));
}
