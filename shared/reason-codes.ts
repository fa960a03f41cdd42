import { z } from 'zod';

/** Why a device refused, failed or reverted an update. Stable strings: dashboards and gates key on them. */
export const ReasonCode = z.enum([
  'MALFORMED',            // a message or manifest that does not parse
  'BAD_SIGNATURE',        // signature does not verify
  'UNKNOWN_KEY',          // signed by a key that is not in the trusted key set
  'REVOKED_KEY',          // signed by a key the root has revoked
  'KEY_ROLE',             // signed by a key that may not sign this kind of document
  'KEYSET_ROLLBACK',      // a key set older than the one the device already trusts
  'EXPIRED',              // manifest, desired state or key set past its expiry (freeze attack)
  'ROLLBACK',             // model version below the device's floor for that model
  'REPLAYED',             // desired-state sequence number not above the last one seen
  'WRONG_DEVICE',         // desired state addressed to another device
  'MANIFEST_MISMATCH',    // desired state points at another manifest than the one delivered
  'WRONG_HARDWARE',       // manifest does not target this hardware class
  'RUNTIME_INCOMPATIBLE', // manifest needs a newer agent or runtime
  'SIZE_MISMATCH',        // artifact longer or shorter than the manifest says
  'HASH_MISMATCH',        // artifact SHA-256 differs from the manifest
  'GOLDEN_MISMATCH',      // the golden health-check blob's length, SHA-256 or vector count differs from the manifest
  'DOWNLOAD_FAILED',      // could not fetch the artifact after retries
  'DISK_FULL',            // not enough free space for the artifact
  'LOAD_FAILED',          // onnxruntime could not load the model
  'HEALTH_CHECK_FAILED',  // golden inputs gave outputs outside tolerance, or errors
  'LATENCY_BUDGET',       // golden inputs ran slower than the budget
  'PROBATION_FAILED',     // errors or latency over the limits during probation
  'CRASH_RECOVERY',       // agent restarted in the middle of an update
  'SLOT_DAMAGED',         // a model slot's files no longer match the state record (and could not be fetched again)
  'REVERT_TARGET_DAMAGED',// crashed on probation, the previous slot does not verify: kept the model on probation
  'WAIT_WINDOW',          // waiting: outside the update's download or switch window (device's local time)
  'WAIT_BATTERY',         // waiting: on battery below the policy's level
  'WAIT_METERED',         // waiting: on a metered network
  'WAIT_BUSY',            // waiting: the device's own code says it is busy (local API POST /v1/busy)
  'WAIT_DISK',            // waiting: less free disk than the policy asks for
  'SUPERSEDED',           // a newer assignment arrived while this one was waiting: this one is dropped
  'DELTA_FAILED',         // the offered delta could not be used (base changed on disk, delta corrupt, rebuilt hash mismatch): the full artifact was downloaded instead
  'SHADOW_MEMORY',        // a shadow candidate would take the agent over its memory ceiling (config shadow.maxRssBytes)
]);
export type ReasonCode = z.infer<typeof ReasonCode>;

/** An expected refusal with a reason code; anything else thrown is a bug. */
export class UpdateRefused extends Error {
  constructor(readonly reason: ReasonCode, message: string) {
    super(message);
    this.name = 'UpdateRefused';
  }
}
