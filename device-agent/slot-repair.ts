// Before recovery plans anything, each slot the record names is checked against it (length and SHA-256
// of the artifact, SHA-256 of the manifest text). A slot whose artifact is damaged or missing but whose
// signed manifest text still matches the record is fetched again through the install's own path
// (staging, length and SHA-256 against that manifest) and put back; what cannot be repaired is
// 'damaged', and planRecovery decides what that means. Nothing here deletes anything.
import type { Manifest } from '../shared/messages.ts';
import { stageArtifact } from './artifact-fetch.ts';
import type { AgentConfig } from './config.ts';
import { disk } from './disk.ts';
import { fsyncDir } from './durable-file.ts';
import type { SlotCheck } from './recovery.ts';
import type { SlotFiles } from './slot-files.ts';
import type { Staging } from './staging.ts';
import type { AgentState, SlotName } from './state-store.ts';

export interface SlotRepairDeps {
  slots: SlotFiles;
  staging: Staging;
  config: Pick<AgentConfig, 'serverUrl' | 'download'>;
  authorization?: () => string | undefined;
  fetch?: typeof fetch;
  random?: () => number;
  log: (event: string, fields: Record<string, unknown>) => void;
}

export interface SlotChecks { checks: Partial<Record<SlotName, SlotCheck>>; repaired: { slot: SlotName; why: string; manifest: Manifest }[] }

export async function checkAndRepairSlots(state: AgentState, d: SlotRepairDeps): Promise<SlotChecks> {
  const out: SlotChecks = { checks: {}, repaired: [] };
  for (const slot of ['a', 'b'] as const) {
    const record = state.slots[slot];
    if (!record) continue;
    const read = d.slots.readVerified(slot, record);
    if (!('error' in read)) { out.checks[slot] = 'ok'; continue; }
    const manifest = d.slots.readManifest(slot, record);
    if (!manifest || manifest.artifact.sha256 !== record.artifactSha256 || manifest.artifact.length !== record.length) {
      d.log('slot_damaged', { slot, err: read.error, repairable: false });
      out.checks[slot] = 'damaged';
      continue;
    }
    try {
      const staged = await stageArtifact({ staging: d.staging, config: d.config, authorization: d.authorization, artifact: manifest.artifact, fetch: d.fetch, random: d.random });
      disk.renameSync(staged.path, d.slots.path(slot, 'onnx'));
      fsyncDir(d.slots.dir);
      out.checks[slot] = 'ok';
      out.repaired.push({ slot, why: read.error, manifest });
      d.log('slot_repaired', { slot, err: read.error });
    } catch (err) {
      d.log('slot_damaged', { slot, err: read.error, repairable: true, repair: (err as Error).message });
      out.checks[slot] = 'damaged';
    }
  }
  return out;
}
