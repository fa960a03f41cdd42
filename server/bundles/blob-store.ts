// Content-addressed files: <dir>/<sha256>. Written to a temporary name, fsynced, then renamed, so a
// reader never sees a partial file under a real hash.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { sha256Hex } from '../../shared/crypto.ts';

const CACHE_ITEM_MAX = 16 * 1024 * 1024;
const CACHE_TOTAL_MAX = 256 * 1024 * 1024;

export class BlobStore {
  /** recently served small blobs, least recently used first (Map keeps insertion order) */
  private readonly cache = new Map<string, Buffer>();
  private cacheBytes = 0;

  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  /** The blob's bytes from memory when it is small enough to keep there (read once from disk), else null. */
  cached(sha256: string): Buffer | null {
    const hit = this.cache.get(sha256);
    if (hit) {
      this.cache.delete(sha256);
      this.cache.set(sha256, hit);
      return hit;
    }
    if (this.size(sha256) > CACHE_ITEM_MAX) return null;
    const bytes = readFileSync(this.pathOf(sha256));
    this.cache.set(sha256, bytes);
    this.cacheBytes += bytes.byteLength;
    for (const [k, v] of this.cache) {
      if (this.cacheBytes <= CACHE_TOTAL_MAX) break;
      this.cache.delete(k);
      this.cacheBytes -= v.byteLength;
    }
    return bytes;
  }

  pathOf(sha256: string): string {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new Error('not a sha256');
    return join(this.dir, sha256);
  }

  has(sha256: string): boolean {
    return existsSync(this.pathOf(sha256));
  }

  put(bytes: Uint8Array): { sha256: string; length: number } {
    const sha256 = sha256Hex(bytes);
    const path = this.pathOf(sha256);
    if (!existsSync(path)) {
      const tmp = `${path}.${process.pid}.tmp`;
      const fd = openSync(tmp, 'w', 0o644);
      try {
        writeSync(fd, bytes);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, path);
    }
    return { sha256, length: bytes.byteLength };
  }

  get(sha256: string): Uint8Array {
    return new Uint8Array(readFileSync(this.pathOf(sha256)));
  }

  size(sha256: string): number {
    return statSync(this.pathOf(sha256)).size;
  }
}
