// An exported bundle: everything a device would be given, in one JSON file, checkable offline with
// nothing but the root public key. The artifact is inline (base64) or a file next to the bundle.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { b64 } from '../shared/crypto.ts';
import { Sha256Hex } from '../shared/ids.ts';
import { Envelope } from '../shared/messages.ts';
import { CliError } from './api-client.ts';

export const BUNDLE_FORMAT = 'edge-fleet-bundle';

export const BundleFile = z.object({
  format: z.literal(BUNDLE_FORMAT),
  formatVersion: z.literal(1),
  /** SHA-256 of manifest.signed: the name the server and desired states use for this bundle */
  manifestSha256: Sha256Hex,
  /** the root-signed key set current when the bundle was exported */
  keyset: Envelope,
  manifest: Envelope,
  artifact: z.union([
    z.object({ base64: z.string() }).strict(),
    /** relative paths are resolved against the bundle file's folder */
    z.object({ path: z.string().min(1) }).strict(),
  ]),
  exportedAt: z.string(),
  exportedFrom: z.string().optional(),
}).strict();
export type BundleFile = z.infer<typeof BundleFile>;

export function readBundleFile(path: string): { bundle: BundleFile; artifact: Uint8Array | null; artifactProblem?: string } {
  if (!existsSync(path)) throw new CliError(`no bundle file ${path}`, 'FLEETCTL_ERR_USAGE');
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new CliError(`${path} is not JSON: ${(err as Error).message}`, 'FLEETCTL_ERR_BUNDLE');
  }
  const r = BundleFile.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new CliError(`${path} is not a bundle file: ${i.path.join('.') || '(root)'}: ${i.message}`, 'FLEETCTL_ERR_BUNDLE');
  }
  const bundle = r.data;
  if ('base64' in bundle.artifact) return { bundle, artifact: b64.decode(bundle.artifact.base64) };
  const p = isAbsolute(bundle.artifact.path) ? bundle.artifact.path : resolve(dirname(path), bundle.artifact.path);
  if (!existsSync(p)) return { bundle, artifact: null, artifactProblem: `artifact file ${bundle.artifact.path} is missing` };
  return { bundle, artifact: new Uint8Array(readFileSync(p)) };
}
