// The agent's record on disk: trust anchors (outside the model slots, never deleted by a failed check)
// and which slot holds the active and the previous model. Written atomically on every change.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { Base64, ModelId, Sha256Hex } from '../shared/ids.ts';
import { Chain, Status } from '../shared/messages.ts';
import { writeFileDurable } from './durable-file.ts';

export const SlotName = z.enum(['a', 'b']);
export type SlotName = z.infer<typeof SlotName>;

/** One model in a slot: its signed manifest's digest and its artifact's. */
export const SlotModel = z.object({
  manifestSha256: Sha256Hex,
  modelId: ModelId,
  version: z.number().int().positive(),
  artifactSha256: Sha256Hex,
  length: z.number().int().positive(),
}).strict();
export type SlotModel = z.infer<typeof SlotModel>;

/**
 * What a slot holds: one model (the fields of SlotModel: the primary), or a set of models (issue 19):
 * the primary plus `extra`, switched, probed and reverted together, since the slot is what one state
 * write activates. A single-model record is written exactly as before (no `extra`, no `release`).
 */
export const SlotRecord = SlotModel.extend({
  extra: z.array(SlotModel).min(1).max(15).optional(),
  release: z.object({ name: ModelId, version: z.number().int().positive() }).strict().optional(),
  /** the set's pipeline (without its golden vectors, used once, before the switch) */
  chain: Chain.optional(),
}).strict();
export type SlotRecord = z.infer<typeof SlotRecord>;

/** Every model a slot record names, the primary first. */
export function slotModels(r: SlotRecord): SlotModel[] {
  const { extra, release: _release, chain: _chain, ...primary } = r;
  return [primary, ...(extra ?? [])];
}

/**
 * An accepted update; still set after a crash means it was cut short. `slot` is null while the artifact
 * is downloaded and verified in staging (no slot touched yet) and names the inactive slot from the write
 * that stops the record pointing at that slot's files, just before they are overwritten.
 */
export const UpdateRecord = z.object({
  slot: SlotName.nullable(),
  manifestSha256: Sha256Hex,
  modelId: ModelId,
  version: z.number().int().positive(),
  artifactSha256: Sha256Hex,
  directorSeq: z.number().int().nonnegative(),
}).strict();
export type UpdateRecord = z.infer<typeof UpdateRecord>;

/** The active slot is on probation: a restart that finds this (not cleanly stopped) reverts to `previous`. */
export const ProbationRecord = z.object({
  slot: SlotName,
  previous: SlotName.nullable(),
  manifestSha256: Sha256Hex,
  modelId: ModelId,
  version: z.number().int().positive(),
  directorSeq: z.number().int().nonnegative(),
  startedAt: z.number().int().nonnegative(),
  /** set by stop(): a clean stop restarts the probation window instead of counting as a crash */
  cleanStop: z.boolean(),
}).strict();
export type ProbationRecord = z.infer<typeof ProbationRecord>;

/**
 * A slot that did not verify at start but whose signed manifest is intact: no longer named by `slots`,
 * its artifact is fetched again in the background (slot-repair.ts), then it takes its `role` back: the
 * active model, the previous one (a revert target again), or the revert target of a probation a crash
 * cut short (reverted to once it is back). Kept here so a crash during the repair does not forget it.
 */
export const RepairRecord = z.object({
  slot: SlotName,
  record: SlotRecord,
  role: z.enum(['active', 'previous', 'revert']),
  why: z.string().max(500),
}).strict();
export type RepairRecord = z.infer<typeof RepairRecord>;

/**
 * A candidate held in shadow (device-agent/shadow.ts) in its own place, slot `shadow`
 * (<dataDir>/slots/shadow.onnx and shadow.manifest.json, beside a and b), so the previous model stays
 * the revert target while it is held; `model` is what those files must hold. Its files are written
 * before this record, so a crash while the candidate is fetched, checked or written leaves files no
 * record names, which the next start clears. Records written before that place existed name the
 * inactive slot (`a` or `b`, whose record slots[slot] is the candidate's, no `model`): still restored
 * and unloaded from there.
 */
export const ShadowSlot = z.enum(['a', 'b', 'shadow']);
export type ShadowSlot = z.infer<typeof ShadowSlot>;

export const ShadowRecord = z.object({
  slot: ShadowSlot,
  /** the candidate's files in slot `shadow` (absent in the old layout) */
  model: SlotModel.optional(),
  manifestSha256: Sha256Hex,
  modelId: ModelId,
  version: z.number().int().positive(),
  directorSeq: z.number().int().nonnegative(),
  sampleRate: z.number().min(0).max(1),
}).strict();
export type ShadowRecord = z.infer<typeof ShadowRecord>;

export const AgentState = z.object({
  format: z.literal(1),
  trust: z.object({
    rootPublicKey: Base64,
    keysetVersion: z.number().int().nonnegative(),
    lastSeq: z.number().int().nonnegative(),
    lastDirectorSig: z.string().nullable(),
    versionFloors: z.record(z.string(), z.number().int().nonnegative()),
    timeFloor: z.number().int().nonnegative(),
  }).strict(),
  slots: z.object({ a: SlotRecord.nullable(), b: SlotRecord.nullable() }).strict(),
  active: SlotName.nullable(),
  previous: SlotName.nullable(),
  telemetrySeq: z.number().int().nonnegative(),
  // optional on read so state files written before these fields existed still load
  update: UpdateRecord.nullable().default(null),
  probation: ProbationRecord.nullable().default(null),
  /** the last status sequence number used (status-outbox.ts) */
  statusSeq: z.number().int().nonnegative().default(0),
  /** outcomes not yet acknowledged by the broker: queued in the same write as the change they report */
  outbox: z.array(Status).max(1000).default([]),
  /** slots being fetched again (at most one job per slot) */
  repairs: z.array(RepairRecord).max(2).default([]),
  /** the candidate held in shadow, if any */
  shadow: ShadowRecord.nullable().default(null),
}).strict();
export type AgentState = z.infer<typeof AgentState>;

export class StateStore {
  readonly path: string;
  constructor(readonly dataDir: string) {
    this.path = join(dataDir, 'state.json');
  }

  load(rootPublicKey: string): AgentState {
    if (existsSync(this.path)) {
      const parsed = AgentState.safeParse(JSON.parse(readFileSync(this.path, 'utf8')));
      if (parsed.success) return parsed.data;
      throw new Error(`agent state ${this.path} is damaged: ${parsed.error.issues[0].message}`);
    }
    return {
      format: 1,
      trust: { rootPublicKey, keysetVersion: 0, lastSeq: 0, lastDirectorSig: null, versionFloors: {}, timeFloor: 0 },
      slots: { a: null, b: null },
      active: null,
      previous: null,
      telemetrySeq: 0,
      update: null,
      probation: null,
      // A fresh record (first start, or state.json deleted to re-enroll) numbers its statuses from the
      // clock, so they come after any the server already stored for this device id and are not
      // mistaken for resends.
      statusSeq: Date.now(),
      outbox: [],
      repairs: [],
      shadow: null,
    };
  }

  /**
   * `fsync = false` only where losing the write to a power cut is harmless (an acknowledged status
   * resent): the folder is not fsynced, so the rename may be lost. The data always is: a rename that
   * reaches the disk before unsynced data would leave an empty or torn state.json, and an agent that
   * cannot start (found by test/agent/power-loss.test.ts).
   */
  save(state: AgentState, fsync = true): void {
    writeFileDurable(this.path, JSON.stringify(state), fsync ? true : 'data');
  }
}
