// Downloads land here, outside the model slots: <dataDir>/staging/<artifact sha256>.part. Nothing in a
// slot is touched until the staged bytes have the manifest's length and SHA-256, so a short, dripping,
// oversized or tampered download leaves both slots (and the revert target) as they were. Named by the
// artifact's digest, a partial file is resumed only by a download of that same artifact; at most one is
// kept (a new download removes the others).
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { disk } from './disk.ts';
import { removeIfExists } from './downloader.ts';

export class Staging {
  readonly dir: string;
  constructor(dataDir: string) {
    this.dir = join(dataDir, 'staging');
  }

  ensure(): void {
    disk.mkdirSync(this.dir, { recursive: true });
  }

  path(artifactSha256: string): string {
    return join(this.dir, `${artifactSha256}.part`);
  }

  /**
   * Partial downloads of other artifacts: they can never be resumed into this one. `keep`: artifacts of
   * the same multi-model install already staged (a set is staged whole before any slot is touched).
   */
  removeExcept(artifactSha256: string, keep: readonly string[] = []): void {
    const kept = new Set([artifactSha256, ...keep].map((s) => `${s}.part`));
    for (const name of readdirSync(this.dir)) if (!kept.has(name)) removeIfExists(join(this.dir, name));
  }

  /**
   * Bytes already checked (copied from a slot, rebuilt from a delta) staged under the artifact's own name,
   * durably (fsynced): the install renames the file into a slot like a finished download. Other partial
   * downloads go, but `keep` (as removeExcept).
   */
  writeDurable(artifactSha256: string, bytes: Uint8Array, keep: readonly string[] = []): string {
    this.removeExcept(artifactSha256, keep);
    const path = this.path(artifactSha256);
    const fd = disk.openSync(path, 'w');
    try {
      disk.writeSync(fd, bytes);
      disk.fsyncSync(fd);
    } finally {
      disk.closeSync(fd);
    }
    return path;
  }

  remove(artifactSha256: string): void {
    removeIfExists(this.path(artifactSha256));
  }

  files(): string[] {
    return readdirSync(this.dir);
  }
}
