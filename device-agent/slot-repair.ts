// Slots heal themselves without holding up the start. At start every slot the record names is checked
// against it (length and SHA-256 of the artifact, SHA-256 of the manifest text): checkSlots() only
// reads. A slot that does not verify is 'damaged' for recovery (planRecovery falls back and the record
// stops naming it); if its signed manifest text still matches the record it is also a repair job, kept
// in the state record (`repairs`) so a crash does not forget it. The agent serves what it fell back to,
// then refetchSlot() fetches the artifact again through the install's own path (staging, length and
// SHA-256 against that manifest), with bounded retries that back off, and puts it back in the slot.
import type { Manifest } from '../shared/messages.ts';
import { stageArtifact } from './artifact-fetch.ts';
import { retryWithBackoff, type BackoffPolicy, type RetryDeps } from './backoff.ts';
import type { AgentConfig } from './config.ts';
import { disk } from './disk.ts';
import { fsyncDir } from './durable-file.ts';
import type { SlotCheck } from './recovery.ts';
import type { SlotFiles } from './slot-files.ts';
import type { Staging } from './staging.ts';
import type { AgentState, RepairRecord, SlotName } from './state-store.ts';

export interface SlotChecks {
  checks: Partial<Record<SlotName, SlotCheck>>;
  /** damaged slots whose signed manifest is intact: fetched again after the start */
  repairable: { slot: SlotName; why: string }[];
}

/** Read-only: which recorded slots verify, and which of the others can be fetched again. */
export function checkSlots(state: AgentState, slots: SlotFiles, log: (event: string, fields: Record<string, unknown>) => void): SlotChecks {
  const out: SlotChecks = { checks: {}, repairable: [] };
  for (const slot of ['a', 'b'] as const) {
    const record = state.slots[slot];
    if (!record) continue;
    const read = slots.readVerified(slot, record);
    if (!('error' in read)) { out.checks[slot] = 'ok'; continue; }
    out.checks[slot] = 'damaged';
    const manifest = slots.readManifest(slot, record);
    // a multi-model slot is not fetched again (not done yet): recovery falls back to the other slot
    const repairable = !record.extra && !!manifest && manifest.artifact.sha256 === record.artifactSha256 && manifest.artifact.length === record.length;
    log('slot_damaged', { slot, err: read.error, repairable });
    if (repairable) out.repairable.push({ slot, why: read.error });
  }
  return out;
}

export interface RefetchDeps {
  slots: SlotFiles;
  staging: Staging;
  config: Pick<AgentConfig, 'serverUrl' | 'download'>;
  authorization?: () => string | undefined;
  fetch?: typeof fetch;
  policy: BackoffPolicy;
  retry: RetryDeps;
}

/**
 * Put a repair job's artifact back into its slot, verified; returns the slot's manifest. A slot whose
 * files already verify (a crash after the rename) is not fetched again. Throws after the last attempt.
 */
export async function refetchSlot(job: RepairRecord, d: RefetchDeps): Promise<Manifest> {
  const manifest = d.slots.readManifest(job.slot, job.record);
  if (!manifest) throw new Error(`slot ${job.slot}: its signed manifest no longer matches the record`);
  if (!('error' in d.slots.readVerified(job.slot, job.record))) return manifest;
  await retryWithBackoff(async () => {
    const staged = await stageArtifact({ staging: d.staging, config: d.config, authorization: d.authorization, artifact: manifest.artifact, fetch: d.fetch, random: d.retry.random, signal: d.retry.signal });
    disk.renameSync(staged.path, d.slots.path(job.slot, 'onnx'));
    fsyncDir(d.slots.dir);
  }, d.policy, d.retry);
  return manifest;
}
