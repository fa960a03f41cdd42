// The health-check vectors of a manifest: inline, or a golden blob the signed manifest names by SHA-256
// and length. The blob is fetched like the artifact (same endpoint, same credential, never more bytes
// than the manifest allows), and its length and digest are checked before a byte of it is parsed.
import { readFileSync } from 'node:fs';
import { sha256Hex } from '../shared/crypto.ts';
import { GoldenSet, type GoldenVector, type Manifest } from '../shared/messages.ts';
import { UpdateRefused } from '../shared/reason-codes.ts';
import { downloadArtifact, removeIfExists, type DownloadOptions } from './downloader.ts';

export interface GoldenFetch {
  serverUrl: string;
  /** the device's credential ("Bearer <token>"), made fresh per request */
  authorization?: () => string | undefined;
  download: Pick<DownloadOptions, 'retries' | 'backoffMs' | 'timeoutMs'>;
  /** where the blob is written while it is checked (removed afterwards; a name ending in .tmp is also swept at start after a crash) */
  dest: string;
  random?: () => number;
  fetch?: typeof fetch;
}

export async function healthVectors(m: Pick<Manifest, 'healthCheck'>, opts: GoldenFetch): Promise<GoldenVector[]> {
  const g = m.healthCheck.golden;
  if (!g) return m.healthCheck.vectors;
  removeIfExists(opts.dest); // never resume into a blob of another manifest
  try {
    try {
      await downloadArtifact({
        url: `${opts.serverUrl.replace(/\/$/, '')}/v1/artifacts/${g.sha256}`, dest: opts.dest, expectedLength: g.length,
        retries: opts.download.retries, backoffMs: opts.download.backoffMs, timeoutMs: opts.download.timeoutMs,
        random: opts.random, fetch: opts.fetch,
        authorization: opts.authorization,
      });
    } catch (err) {
      if (err instanceof UpdateRefused && err.reason === 'SIZE_MISMATCH') throw new UpdateRefused('GOLDEN_MISMATCH', `golden set: ${err.message}`);
      throw err;
    }
    const bytes = readFileSync(opts.dest);
    if (bytes.byteLength !== g.length) throw new UpdateRefused('GOLDEN_MISMATCH', `golden set is ${bytes.byteLength} bytes, the manifest says ${g.length}`);
    const digest = sha256Hex(bytes);
    if (digest !== g.sha256) throw new UpdateRefused('GOLDEN_MISMATCH', `golden set SHA-256 ${digest.slice(0, 16)}… differs from the manifest's ${g.sha256.slice(0, 16)}…`);
    // The digest matched a signed manifest: what follows can only fail if the server signed garbage.
    let parsed: GoldenSet;
    try {
      parsed = GoldenSet.parse(JSON.parse(bytes.toString('utf8')));
    } catch (err) {
      throw new UpdateRefused('MALFORMED', `golden set does not parse: ${(err as Error).message.slice(0, 200)}`);
    }
    if (parsed.vectors.length !== g.vectors) throw new UpdateRefused('GOLDEN_MISMATCH', `golden set holds ${parsed.vectors.length} vectors, the manifest says ${g.vectors}`);
    return parsed.vectors;
  } finally {
    removeIfExists(opts.dest);
  }
}
