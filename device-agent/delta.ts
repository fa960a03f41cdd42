// Delta updates on the device (docs/agent.md "Delta updates"). The signed desired state may offer a
// delta from an artifact this device holds (its SHA-256) to the manifest's artifact. The delta is
// downloaded into staging like any artifact and checked against the length and SHA-256 the desired
// state names before a byte of it is read; the target is rebuilt from the slot holding the base and
// must have the signed manifest's length and SHA-256 (shared/delta.ts checks both); only then is it
// written to staging under the artifact's own name, fsynced, and handed to the install exactly as a
// finished download would be. Anything that goes wrong returns a reason and the caller downloads the
// full artifact: a delta can make an update cheaper, never make it fail.
import { readFileSync } from 'node:fs';
import { applyDelta, DeltaError } from '../shared/delta.ts';
import type { DesiredState, Manifest } from '../shared/messages.ts';
import type { Staged } from './artifact-fetch.ts';
import type { SlotFiles } from './slot-files.ts';
import type { Staging } from './staging.ts';
import type { AgentState } from './state-store.ts';

export type DeltaOffer = NonNullable<DesiredState['delta']>;

export interface DeltaStageOptions {
  delta: DeltaOffer;
  /** the signed manifest's artifact: what the rebuilt bytes must be */
  artifact: Manifest['artifact'];
  slots: SlotFiles;
  records: AgentState['slots'];
  staging: Staging;
  /** download a blob into staging and check its length and SHA-256 (artifact-fetch.ts stageArtifact) */
  download: (blob: Manifest['artifact']) => Promise<Staged>;
}

export type DeltaOutcome =
  | { staged: Staged; baseSlot: 'a' | 'b'; deltaBytes: number }
  | { failed: string };

export async function stageFromDelta(o: DeltaStageOptions): Promise<DeltaOutcome> {
  const { delta: d, artifact: a } = o;
  const slot = (['a', 'b'] as const).find((s) => o.records[s]?.artifactSha256 === d.baseSha256);
  if (!slot) return { failed: `the delta's base ${d.baseSha256.slice(0, 16)}… is in no slot of this device` };
  let base: Buffer;
  try { base = readFileSync(o.slots.path(slot, 'onnx')); } catch (err) { return { failed: `the base slot ${slot} cannot be read: ${(err as Error).message}` }; }
  let delta: Staged;
  try {
    delta = await o.download({ sha256: d.sha256, length: d.length, format: 'onnx' });
  } catch (err) {
    return { failed: `the delta could not be downloaded: ${(err as Error).message}` };
  }
  let rebuilt: Buffer;
  try {
    rebuilt = applyDelta(base, delta.bytes, a);
  } catch (err) {
    o.staging.remove(d.sha256); // a delta that does not apply is never used again
    if (err instanceof DeltaError) return { failed: `${err.kind === 'base' ? 'base changed on disk' : err.kind === 'mismatch' ? 'rebuilt artifact does not match the manifest' : 'delta corrupt'}: ${err.message}` };
    throw err;
  }
  // under the artifact's own staging name, durably: the install renames it into the slot
  const path = o.staging.writeDurable(a.sha256, rebuilt);
  return { staged: { path, bytes: rebuilt }, baseSlot: slot, deltaBytes: d.length };
}
