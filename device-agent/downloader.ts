// Artifact download over HTTP: resumes with Range after a broken connection, never accepts more bytes
// than the manifest says (a server that sends more is cut off), checks free space first, and retries
// with exponential backoff and jitter. The bytes are hashed as they arrive and handed back with their
// SHA-256 (`content`), so the caller checks length and digest of exactly the bytes it will load without
// reading the file again; a resumed download hashes the part already on disk first.
import { createHash, type Hash } from 'node:crypto';
import { existsSync, fstatSync, lstatSync, readFileSync, statSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { UpdateRefused } from '../shared/reason-codes.ts';
import { disk } from './disk.ts';
import { backoffDelay } from './backoff.ts';

export interface DownloadOptions {
  url: string;
  dest: string;
  expectedLength: number;
  retries: number;
  backoffMs: number;
  /** cap on the wait between attempts (default 30 s) */
  backoffMaxMs?: number;
  timeoutMs: number;
  random?: () => number;
  sleep?: (ms: number) => Promise<void>;
  /** injectable transport (the simulator's fault profiles: slow, truncated, dropped downloads) */
  fetch?: typeof fetch;
  /** extra request headers */
  headers?: Record<string, string>;
  /** the device's credential, asked for on every request (a device token lives minutes; a download may take longer): "Bearer <token>" */
  authorization?: () => string | undefined;
  /** called after each chunk is written (tests and fault injection hook in here) */
  onProgress?: (bytes: number) => void;
  /** aborts the download at once (the agent is stopping); the partial file stays for a resume */
  signal?: AbortSignal;
}

export interface DownloadResult {
  bytes: number;
  attempts: number;
  resumed: boolean;
  /** the file's bytes as written, and their SHA-256 (hex), computed while downloading */
  content: { data: Buffer; sha256: string };
}

/**
 * The bytes of the file being downloaded, in order, copied into one buffer of the manifest's length
 * (the agent's own memory: no stream can change them later) and hashed from that copy as they arrive.
 */
export class ReceivedArtifact {
  private data = Buffer.alloc(0);
  private length = 0;
  private hash: Hash = createHash('sha256');
  constructor(private readonly capacity: number) {}
  /** start over from what is on disk now (a resume: the part already there is read and hashed once) */
  reset(prefix: Uint8Array | null): void {
    if (this.data.byteLength !== this.capacity) {
      try { this.data = Buffer.allocUnsafe(this.capacity); } catch {
        throw new UpdateRefused('DOWNLOAD_FAILED', `an artifact of ${this.capacity} bytes does not fit in this device's memory`);
      }
    }
    this.length = 0;
    this.hash = createHash('sha256');
    if (prefix && prefix.byteLength > 0) this.append(prefix);
  }
  append(b: Uint8Array): void {
    if (this.length + b.byteLength > this.capacity) throw new UpdateRefused('SIZE_MISMATCH', `more than the ${this.capacity} bytes the manifest allows`);
    this.data.set(b, this.length);
    this.hash.update(this.data.subarray(this.length, this.length + b.byteLength));
    this.length += b.byteLength;
  }
  get size(): number { return this.length; }
  finish(): { data: Buffer; sha256: string } {
    return { data: this.data.subarray(0, this.length), sha256: this.hash.digest('hex') };
  }
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function downloadArtifact(opts: DownloadOptions): Promise<DownloadResult> {
  const random = opts.random ?? Math.random;
  const sleep = opts.sleep ?? defaultSleep;
  checkFreeSpace(dirname(opts.dest), opts.expectedLength);
  let attempts = 0;
  let resumed = false;
  let lastError: unknown;
  const received = new ReceivedArtifact(opts.expectedLength);
  while (attempts <= opts.retries) {
    if (opts.signal?.aborted) break;
    attempts++;
    try {
      const have = existsSync(opts.dest) ? statSync(opts.dest).size : 0;
      if (have > opts.expectedLength) disk.truncateSync(opts.dest, 0);
      const start = have > opts.expectedLength ? 0 : have;
      received.reset(start > 0 ? readFileSync(opts.dest).subarray(0, start) : null);
      if (start === opts.expectedLength) return { bytes: start, attempts, resumed, content: received.finish() };
      if (start > 0) resumed = true;
      await fetchInto(opts, start, received);
      const size = statSync(opts.dest).size;
      if (size === opts.expectedLength && received.size === size) return { bytes: size, attempts, resumed, content: received.finish() };
      lastError = new Error(`connection closed after ${size} of ${opts.expectedLength} bytes`);
    } catch (err) {
      if (err instanceof UpdateRefused) throw err; // oversize and the like: retrying will not help
      lastError = err;
    }
    if (attempts <= opts.retries && !opts.signal?.aborted) await sleep(backoffDelay(attempts, { baseMs: opts.backoffMs, maxMs: opts.backoffMaxMs ?? 30_000 }, random));
  }
  if (opts.signal?.aborted) throw new UpdateRefused('DOWNLOAD_FAILED', `download of ${opts.url} stopped: the agent is stopping`);
  throw new UpdateRefused('DOWNLOAD_FAILED', `download of ${opts.url} failed after ${attempts} attempts: ${(lastError as Error)?.message ?? lastError}`);
}

async function fetchInto(opts: DownloadOptions, start: number, received: ReceivedArtifact): Promise<void> {
  const auth = opts.authorization?.();
  const headers: Record<string, string> = { ...opts.headers, ...(auth ? { authorization: auth } : {}), ...(start > 0 ? { range: `bytes=${start}-` } : {}) };
  const timeout = AbortSignal.timeout(opts.timeoutMs);
  const res = await (opts.fetch ?? fetch)(opts.url, { headers, signal: opts.signal ? AbortSignal.any([timeout, opts.signal]) : timeout });
  if (res.status === 404) throw new UpdateRefused('DOWNLOAD_FAILED', `artifact not found at ${opts.url}`);
  if (res.status !== 200 && res.status !== 206) throw new Error(`HTTP ${res.status}`);
  // A 200 to a ranged request means the server ignored the range: start over.
  const offset = res.status === 206 ? start : 0;
  if (offset === 0 && start > 0) received.reset(null);
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (Number.isFinite(declared) && offset + declared > opts.expectedLength) {
    await res.body?.cancel();
    throw new UpdateRefused('SIZE_MISMATCH', `server offers ${offset + declared} bytes, the manifest says ${opts.expectedLength}`);
  }
  const fd = disk.openSync(opts.dest, offset === 0 ? 'w' : 'a');
  try {
    if (offset > 0 && fstatSync(fd).size !== offset) throw new Error('partial file changed under the download');
    let written = offset;
    const reader = res.body!.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (written + value.byteLength > opts.expectedLength) {
        await reader.cancel();
        throw new UpdateRefused('SIZE_MISMATCH', `server sent more than the ${opts.expectedLength} bytes the manifest allows`);
      }
      disk.writeSync(fd, value);
      received.append(value);
      written += value.byteLength;
      opts.onProgress?.(written);
    }
    disk.fsyncSync(fd);
  } finally {
    disk.closeSync(fd);
  }
}

function checkFreeSpace(dir: string, need: number): void {
  try {
    const s = statfsSync(dir);
    const free = Number(s.bavail) * Number(s.bsize);
    // room for the download and one more copy of it, so the slot switch never fills the disk
    if (free < need * 2) throw new UpdateRefused('DISK_FULL', `need ${need * 2} bytes free in ${dir}, have ${free}`);
  } catch (err) {
    if (err instanceof UpdateRefused) throw err;
  }
}

export function removeIfExists(path: string): void {
  // Most calls find nothing (a slot is cleared of files it may not hold): a failed unlink builds an
  // Error with its stack, ~15 us against ~2 us for a stat here (issue 13: 2% of a simulated device's
  // update). lstat, not exists: a dangling symlink is still removed. The catch stays for a file removed in between.
  if (!lstatSync(path, { throwIfNoEntry: false })) return;
  try { disk.unlinkSync(path); } catch { /* already gone */ }
}
