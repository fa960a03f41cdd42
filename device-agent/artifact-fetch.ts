// The one way an artifact reaches this device, for an install and for a slot repair alike: download
// into staging (Range resume, byte limit, retries: downloader.ts), hashed as they arrive, then check
// their length and SHA-256 against the signed manifest. The bytes checked are the bytes returned (and
// loaded), so the file is never read back; a slot is re-hashed from disk at every start (slot-repair.ts).
// Bytes that fail are removed from staging, so they are never resumed into; nothing here touches a slot.
import type { Manifest } from '../shared/messages.ts';
import { UpdateRefused } from '../shared/reason-codes.ts';
import type { AgentConfig } from './config.ts';
import { downloadArtifact, type DownloadResult } from './downloader.ts';
import type { Staging } from './staging.ts';

export interface StageOptions {
  staging: Staging;
  config: Pick<AgentConfig, 'serverUrl' | 'download'>;
  /** the device's credential for this download ("Bearer <token>"), made fresh per request */
  authorization?: () => string | undefined;
  artifact: Manifest['artifact'];
  fetch?: typeof fetch;
  random?: () => number;
  signal?: AbortSignal;
  onChunk?: () => void;
  /** after the download, before the checks */
  onDownloaded?: (dl: DownloadResult) => void;
  /** artifacts staged earlier in the same multi-model install: not removed */
  keep?: readonly string[];
}

export interface Staged { path: string; bytes: Uint8Array }

export async function stageArtifact(o: StageOptions): Promise<Staged> {
  const { artifact: a, staging } = o;
  const path = staging.path(a.sha256);
  staging.removeExcept(a.sha256, o.keep);
  const dl = await downloadArtifact({
    url: `${o.config.serverUrl.replace(/\/$/, '')}/v1/artifacts/${a.sha256}`,
    dest: path, expectedLength: a.length, ...o.config.download, random: o.random, fetch: o.fetch,
    authorization: o.authorization,
    onProgress: o.onChunk, signal: o.signal,
  }).catch((err) => {
    // too long: never resumable; short or cut: kept, a later download of this artifact resumes it
    if (err instanceof UpdateRefused && err.reason === 'SIZE_MISMATCH') staging.remove(a.sha256);
    throw err;
  });
  o.onDownloaded?.(dl);
  // Verify the bytes that will be loaded (hashed while downloading): size, then SHA-256.
  const bytes: Uint8Array = dl.content.data;
  if (bytes.byteLength !== a.length) {
    staging.remove(a.sha256);
    throw new UpdateRefused('SIZE_MISMATCH', `artifact is ${bytes.byteLength} bytes, the manifest says ${a.length}`);
  }
  const digest = dl.content.sha256;
  if (digest !== a.sha256) {
    staging.remove(a.sha256);
    throw new UpdateRefused('HASH_MISMATCH', `artifact SHA-256 ${digest.slice(0, 16)}… differs from the manifest's ${a.sha256.slice(0, 16)}…`);
  }
  return { path, bytes };
}
