// Crash-safe small files: write a temporary file, fsync it, rename over the target, fsync the folder.
// After a power cut the target holds either the old or the new content, never a mix.
import { disk } from './disk.ts';
import { dirname } from 'node:path';

export function fsyncDir(dir: string): void {
  const fd = disk.openSync(dir, 'r');
  try { disk.fsyncSync(fd); } finally { disk.closeSync(fd); }
}

/**
 * `fsync = false` keeps the atomic rename (safe against a process crash) but not against power loss:
 * the rename may reach the disk before the data it names, leaving an empty or torn file under `path`.
 * `'data'` fsyncs the data but not the folder: after a power cut `path` holds the old or the new
 * content (the rename alone may be lost), never a mix.
 */
export function writeFileDurable(path: string, data: string | Uint8Array, fsync: boolean | 'data' = true): void {
  const tmp = `${path}.tmp`;
  const fd = disk.openSync(tmp, 'w', 0o600);
  try {
    disk.writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    if (fsync !== false) disk.fsyncSync(fd);
  } finally {
    disk.closeSync(fd);
  }
  disk.renameSync(tmp, path);
  if (fsync === true) fsyncDir(dirname(path));
}
