// A hand-written check of a device's status message for the server's ingest path (issue 13: a rollout
// brings four statuses per device, and zod's parse of each was ~4% of the server's CPU in a 2,000-device
// rollout). Like shared/fast-telemetry.ts it accepts only what the zod schema `Status` (messages.ts)
// accepts and may be stricter (then the caller asks zod, which decides and words the error);
// test/unit/fast-status.test.ts holds it to that on real statuses and thousands of mutated ones.
import { ID_PATTERN, IsoTime, SHA256_HEX_PATTERN } from './ids.ts';
import { UpdateState, type Status } from './messages.ts';
import { ReasonCode } from './reason-codes.ts';

// the exact pattern zod's z.iso.datetime({offset: true}) tests; without it the fast path is off
const ISO_PATTERN: RegExp | null = (() => {
  const p = (IsoTime as unknown as { _zod?: { def?: { pattern?: unknown } } })._zod?.def?.pattern;
  return p instanceof RegExp ? p : null;
})();
const KEYS = new Set(['deviceId', 'seq', 'ts', 'state', 'directorSeq', 'manifestSha256', 'modelId', 'version', 'reason', 'detail', 'active', 'agentVersion', 'activeSet', 'release']);
const STATES = new Set<string>(UpdateState.options);
const REASONS = new Set<string>(ReasonCode.options);

const isPlain = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x) && Object.getPrototypeOf(x) === Object.prototype;
const count = (x: unknown): boolean => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
const positive = (x: unknown): boolean => typeof x === 'number' && Number.isSafeInteger(x) && x > 0;
const id = (x: unknown): boolean => typeof x === 'string' && ID_PATTERN.test(x);
const sha = (x: unknown): boolean => typeof x === 'string' && SHA256_HEX_PATTERN.test(x);

/** ActiveModel: exactly {modelId, version, manifestSha256} */
function activeModel(a: unknown): boolean {
  if (!isPlain(a)) return false;
  const keys = Object.keys(a);
  if (keys.length !== 3 || !('modelId' in a) || !('version' in a) || !('manifestSha256' in a)) return false;
  return id(a.modelId) && positive(a.version) && sha(a.manifestSha256);
}

/** True only for a value `Status.safeParse` accepts unchanged; false means "ask zod". */
export function isStatus(x: unknown): x is Status {
  if (!ISO_PATTERN || !isPlain(x)) return false;
  for (const k of Object.keys(x)) if (!KEYS.has(k)) return false;
  if (!id(x.deviceId) || typeof x.ts !== 'string' || !ISO_PATTERN.test(x.ts)) return false;
  if (typeof x.state !== 'string' || !STATES.has(x.state)) return false;
  if (typeof x.agentVersion !== 'string' || x.agentVersion.length > 32) return false;
  if (!('active' in x) || (x.active !== null && !activeModel(x.active))) return false;
  if ('seq' in x && !count(x.seq)) return false;
  if ('directorSeq' in x && !count(x.directorSeq)) return false;
  if ('manifestSha256' in x && !sha(x.manifestSha256)) return false;
  if ('modelId' in x && !id(x.modelId)) return false;
  if ('version' in x && !positive(x.version)) return false;
  if ('reason' in x && (typeof x.reason !== 'string' || !REASONS.has(x.reason))) return false;
  if ('detail' in x && (typeof x.detail !== 'string' || x.detail.length > 1000)) return false;
  if ('activeSet' in x) {
    const s = x.activeSet;
    if (!Array.isArray(s) || s.length > 16) return false;
    for (const a of s) if (!activeModel(a)) return false;
  }
  if ('release' in x) {
    const r = x.release;
    if (!isPlain(r) || Object.keys(r).length !== 2 || !('name' in r) || !('version' in r) || !id(r.name) || !positive(r.version)) return false;
  }
  return true;
}
