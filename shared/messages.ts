// One zod schema per document and wire message; server, agent, simulator and CLI all use these.
import { z } from 'zod';
import { Base64, DeviceId, IsoTime, KeyId, ModelId, Sha256Hex } from './ids.ts';
import { ReasonCode } from './reason-codes.ts';
import { UpdatePolicy } from './update-policy.ts';

/** A signed document: `signed` holds the exact canonical-JSON text that `sig` covers. */
export const Envelope = z.object({
  signed: z.string().min(2).max(4 * 1024 * 1024),
  keyId: KeyId,
  sig: Base64.length(88, 'an Ed25519 signature is 64 bytes (88 base64 characters)'),
}).strict();
export type Envelope = z.infer<typeof Envelope>;

export const KeyRole = z.enum(['targets', 'director']);
export type KeyRole = z.infer<typeof KeyRole>;

/** The set of valid signing keys, signed by the root key that devices pin. */
export const KeySet = z.object({
  type: z.literal('keyset'),
  version: z.number().int().positive(),
  issuedAt: IsoTime,
  expires: IsoTime,
  keys: z.array(z.object({ keyId: KeyId, publicKey: Base64, roles: z.array(KeyRole).min(1) }).strict()).max(64),
  revoked: z.array(KeyId).max(1024),
}).strict();
export type KeySet = z.infer<typeof KeySet>;

export const TensorDType = z.enum(['float32', 'int32', 'int64', 'uint8', 'int8', 'bool']);
export type TensorDType = z.infer<typeof TensorDType>;

/** A tensor on the wire: little-endian raw bytes in base64. */
export const TensorJson = z.object({
  dtype: TensorDType,
  dims: z.array(z.number().int().nonnegative()).max(8),
  data: Base64,
}).strict();
export type TensorJson = z.infer<typeof TensorJson>;

export const IoSpec = z.object({
  name: z.string().min(1).max(256),
  type: z.string().min(1).max(32),
  shape: z.array(z.union([z.number().int(), z.string(), z.null()])).max(16),
}).strict();
export type IoSpec = z.infer<typeof IoSpec>;

/**
 * A histogram for drift: `values` bins every (sampled) element of a tensor by `edges` (counts has
 * edges.length + 1 entries: below the first edge, between each pair, above the last); `argmax` counts
 * the index of the largest element along the last axis (a classifier's predicted class), counts[i]
 * for class i, edges unused and empty.
 */
export const Histogram = z.object({
  kind: z.enum(['values', 'argmax']),
  edges: z.array(z.number()).max(256),
  counts: z.array(z.number().nonnegative()).max(257),
}).strict();
export type Histogram = z.infer<typeof Histogram>;

/** One health-check vector: named inputs, and the outputs the shipped artifact gives on them. */
export const GoldenVector = z.object({
  inputs: z.record(z.string(), TensorJson),
  outputs: z.record(z.string(), TensorJson),
}).strict();
export type GoldenVector = z.infer<typeof GoldenVector>;

/** The blob a manifest's `healthCheck.golden` names (canonical JSON of this object). */
export const GoldenSet = z.object({ type: z.literal('golden'), vectors: z.array(GoldenVector).min(1).max(64) }).strict();
export type GoldenSet = z.infer<typeof GoldenSet>;

export const Manifest = z.object({
  type: z.literal('manifest'),
  modelId: ModelId,
  version: z.number().int().positive(),
  artifact: z.object({
    sha256: Sha256Hex,
    length: z.number().int().positive(),
    format: z.literal('onnx'),
  }).strict(),
  quantization: z.object({
    scheme: z.enum(['none', 'int8-weight-symmetric']),
    perChannel: z.boolean(),
    /** onnxruntime session config entries the artifact needs (e.g. to fold weight dequantization at load). */
    sessionConfig: z.record(z.string(), z.string()),
    floatSha256: Sha256Hex.optional(),
    quantizedOps: z.number().int().nonnegative(),
    skippedOps: z.number().int().nonnegative(),
  }).strict(),
  io: z.object({ inputs: z.array(IoSpec).min(1).max(64), outputs: z.array(IoSpec).min(1).max(64) }).strict(),
  runtime: z.object({ onnxruntimeWeb: z.string().max(64), minAgentVersion: z.string().regex(/^\d+\.\d+\.\d+$/) }).strict(),
  /** hardware classes this model is for; empty means any */
  hardwareTargets: z.array(z.string().min(1).max(64)).max(64),
  /**
   * Golden inputs and the outputs the exact artifact gives on them. Small sets travel inline
   * (`vectors`); a set too large for an MQTT message (real models' images, spectrograms, logits) is a
   * separate blob named by its SHA-256 and length (`golden`), fetched from the artifact endpoint and
   * checked against that digest before it is parsed. Exactly one of the two is non-empty.
   */
  healthCheck: z.object({
    vectors: z.array(GoldenVector).max(64),
    golden: z.object({ sha256: Sha256Hex, length: z.number().int().positive(), vectors: z.number().int().min(1).max(64) }).strict().optional(),
    atol: z.number().nonnegative(),
    rtol: z.number().nonnegative(),
    latencyBudgetMs: z.number().positive(),
  }).strict().refine((hc) => (hc.vectors.length > 0) !== (hc.golden !== undefined), {
    message: 'healthCheck needs either inline vectors or a golden blob, not both and not neither',
  }),
  driftBaseline: z.object({
    inputs: z.record(z.string(), Histogram),
    outputs: z.record(z.string(), Histogram),
  }).strict().optional(),
  lineage: z.object({
    parentVersion: z.number().int().positive().optional(),
    trainingDataSha256: Sha256Hex.optional(),
    metrics: z.record(z.string(), z.number()).optional(),
    owner: z.string().max(128).optional(),
    revertOf: z.number().int().positive().optional(),
  }).strict(),
  issuedAt: IsoTime,
  expires: IsoTime,
}).strict();
export type Manifest = z.infer<typeof Manifest>;

/** Every blob a manifest names, by SHA-256: what a device assigned this manifest may fetch. */
export function manifestBlobs(m: Pick<Manifest, 'artifact' | 'healthCheck'>): string[] {
  return m.healthCheck.golden ? [m.artifact.sha256, m.healthCheck.golden.sha256] : [m.artifact.sha256];
}

/**
 * One reshaping of a tensor between two models of a chain (shared/chain.ts runs them in order):
 * affine: x * mul + add, element-wise;
 * windows: the values read as frames of `frame` numbers; every run of `size` consecutive frames, starting
 *   `stride` frames apart, becomes one row: dims [windows, size, frame] (audio: mel frames -> embedding windows);
 * last: the last `rows` entries along the first axis (the most recent windows);
 * reshape: new dims, at most one -1 (inferred).
 */
export const ChainTransform = z.discriminatedUnion('op', [
  z.object({ op: z.literal('affine'), mul: z.number(), add: z.number() }).strict(),
  z.object({ op: z.literal('windows'), frame: z.number().int().positive(), size: z.number().int().positive(), stride: z.number().int().positive() }).strict(),
  z.object({ op: z.literal('last'), rows: z.number().int().positive() }).strict(),
  z.object({ op: z.literal('reshape'), dims: z.array(z.number().int().min(-1)).min(1).max(8) }).strict(),
]);
export type ChainTransform = z.infer<typeof ChainTransform>;

/**
 * A pipeline on the device (issue 19): each step runs one model of the set; each of its inputs comes from
 * the chain's own inputs (`from: "input"`) or from an output of an earlier step (`from: <modelId>`),
 * through the transforms in order. The chain's outputs are the last step's. `golden`: the chain's own
 * health check (inputs and the outputs the exact artifacts give), run end to end before the switch.
 */
export const Chain = z.object({
  steps: z.array(z.object({
    modelId: ModelId,
    inputs: z.record(z.string().min(1).max(256), z.object({
      from: z.string().min(1).max(64),
      name: z.string().min(1).max(256),
      transforms: z.array(ChainTransform).max(8).optional(),
    }).strict()),
  }).strict()).min(1).max(16),
  golden: z.object({ vectors: z.array(GoldenVector).min(1).max(8), atol: z.number().nonnegative(), rtol: z.number().nonnegative() }).strict().optional(),
}).strict();
export type Chain = z.infer<typeof Chain>;

/** The director's per-device assignment (Uptane): binds one device, one sequence number, one manifest. */
export const DesiredState = z.object({
  type: z.literal('desired'),
  deviceId: DeviceId,
  seq: z.number().int().positive(),
  issuedAt: IsoTime,
  expires: IsoTime,
  modelId: ModelId,
  version: z.number().int().positive(),
  /** SHA-256 of the manifest envelope's `signed` text */
  manifestSha256: Sha256Hex,
  /**
   * A device that runs several models (issue 19): the others of its set, beyond the primary one named
   * above (which `infer(feeds)` without a model id serves). Their manifests travel in the message's
   * `manifests`, in this order. The whole set is one assignment: the device switches to all of it at once.
   */
  models: z.array(z.object({ modelId: ModelId, version: z.number().int().positive(), manifestSha256: Sha256Hex }).strict()).min(1).max(15).optional(),
  /** the release this set is (name and version), when the operator grouped the models as one */
  release: z.object({ name: ModelId, version: z.number().int().positive() }).strict().optional(),
  /** the set's pipeline, run by the device in one call; checked end to end on its golden inputs before the switch */
  chain: Chain.optional(),
  /**
   * Optional: a delta (shared/delta.ts) from an artifact the server believes this device holds
   * (baseSha256) to the manifest's artifact; a blob of its own, fetched like the artifact and checked
   * against this length and SHA-256 before it is read. The rebuilt artifact must still have the
   * manifest's length and SHA-256; if anything fails the device downloads the full artifact.
   */
  delta: z.object({ baseSha256: Sha256Hex, sha256: Sha256Hex, length: z.number().int().positive() }).strict().optional(),
  /** Optional: maintenance windows and conditions for this update's download and switch (shared/update-policy.ts) */
  policy: UpdatePolicy.optional(),
  /**
   * Shadow mode (issue 17): hold this candidate next to the active model and run it on a sample of the
   * live inputs (`sampleRate`, 0..1), its outputs never returned. Its manifest travels in
   * DesiredMessage.shadowManifest; absent: no shadow (a shadow the device holds is unloaded).
   */
  shadow: z.object({
    modelId: ModelId,
    version: z.number().int().positive(),
    manifestSha256: Sha256Hex,
    sampleRate: z.number().min(0).max(1),
  }).strict().optional(),
}).strict();
export type DesiredState = z.infer<typeof DesiredState>;

/** What the server publishes, retained, on a device's desired topic. */
export const DesiredMessage = z.object({
  keyset: Envelope,
  manifest: Envelope,
  director: Envelope,
  /** the manifests of the desired state's `models`, in the same order (a multi-model assignment only) */
  manifests: z.array(Envelope).min(1).max(15).optional(),
  /** the shadow candidate's manifest envelope, when the desired state names a shadow */
  shadowManifest: Envelope.optional(),
}).strict();
export type DesiredMessage = z.infer<typeof DesiredMessage>;

export const ActiveModel = z.object({ modelId: ModelId, version: z.number().int().positive(), manifestSha256: Sha256Hex }).strict();
export type ActiveModel = z.infer<typeof ActiveModel>;

export const UpdateState = z.enum([
  'received', 'downloading', 'verifying', 'health_check', 'active', 'probation_passed',
  'rejected', 'failed', 'reverted', 'idle',
  // a damaged slot fetched again and verified, back in its role (device-agent/slot-repair.ts)
  'recovered',
  // an update held back by its maintenance window or conditions (reason WAIT_*; shared/update-policy.ts): neither failed nor late
  'waiting',
  // shadow mode (device-agent/shadow.ts): the candidate the status names is loaded in shadow, could not
  // be (reason), or was unloaded; the active model is unchanged by all three
  'shadow_loaded', 'shadow_failed', 'shadow_unloaded',
]);
export type UpdateState = z.infer<typeof UpdateState>;

export const Status = z.object({
  deviceId: DeviceId,
  /** per-device sequence number of an outcome the agent keeps until acknowledged; the server stores each once */
  seq: z.number().int().nonnegative().optional(),
  ts: IsoTime,
  state: UpdateState,
  directorSeq: z.number().int().nonnegative().optional(),
  manifestSha256: Sha256Hex.optional(),
  modelId: ModelId.optional(),
  version: z.number().int().positive().optional(),
  reason: ReasonCode.optional(),
  detail: z.string().max(1000).optional(),
  active: ActiveModel.nullable(),
  agentVersion: z.string().max(32),
  /** a device running several models: every model of its active set, the primary (`active`) first */
  activeSet: z.array(ActiveModel).max(16).optional(),
  /** the release the active set is, if it is one */
  release: z.object({ name: ModelId, version: z.number().int().positive() }).strict().optional(),
}).strict();
export type Status = z.infer<typeof Status>;

/**
 * One output compared between the shadow candidate and the active model over a window, as sums that add
 * up across windows and devices (shared/shadow-figures.ts turns them into the push gate's measures):
 * classifier outputs count top-1 positions and agreements; every output sums active^2 (signal),
 * (active - candidate)^2 (noise), active * candidate and candidate^2 for SQNR and cosine.
 */
export const ShadowOutputSums = z.object({
  kind: z.enum(['classifier', 'fidelity']),
  positions: z.number().int().nonnegative(),
  agree: z.number().int().nonnegative(),
  signal: z.number().nonnegative(),
  noise: z.number().nonnegative(),
  dot: z.number(),
  candidateSq: z.number().nonnegative(),
  maxAbsError: z.number().nonnegative(),
}).strict();
export type ShadowOutputSums = z.infer<typeof ShadowOutputSums>;

/** A window's shadow figures: the candidate held in shadow, run on `samples` live inputs. */
export const ShadowTelemetry = z.object({
  modelId: ModelId,
  version: z.number().int().positive(),
  manifestSha256: Sha256Hex,
  /** inputs run on both models and compared */
  samples: z.number().int().nonnegative(),
  /** candidate runs that threw (not compared) */
  errors: z.number().int().nonnegative(),
  /** sampled inputs dropped because the runtime was busy or the queue full */
  dropped: z.number().int().nonnegative(),
  /** summed latency over the compared samples: active (the caller's call) and candidate (the shadow run) */
  activeMs: z.number().nonnegative(),
  candidateMs: z.number().nonnegative(),
  outputs: z.record(z.string(), ShadowOutputSums),
  /** the candidate's output drift histograms, binned by its own manifest's baseline */
  outputHistograms: z.record(z.string(), Histogram).optional(),
}).strict();
export type ShadowTelemetry = z.infer<typeof ShadowTelemetry>;

/** [#19] The figures of one model (or of the chain) of a window, in the shapes the window uses for all calls. */
export const CallFigures = z.object({
  count: z.number().int().nonnegative(),
  errors: z.number().int().nonnegative(),
  latencyMs: z.object({ p50: z.number(), p95: z.number(), p99: z.number(), max: z.number() }).strict(),
}).strict();
export type CallFigures = z.infer<typeof CallFigures>;
/**
 * [#19] One model of a set's figures: which manifest it ran, and its calls; and (optional, from agents
 * that bin them) its inputs' and outputs' histograms over the bins of that manifest's drift baseline,
 * for the drift gate per model
 */
export const ModelFigures = CallFigures.extend({
  version: z.number().int().positive(), manifestSha256: Sha256Hex,
  inputHistograms: z.record(z.string(), Histogram).optional(),
  outputHistograms: z.record(z.string(), Histogram).optional(),
}).strict();
export type ModelFigures = z.infer<typeof ModelFigures>;

export const Telemetry = z.object({
  deviceId: DeviceId,
  seq: z.number().int().nonnegative(),
  windowStart: IsoTime,
  windowEnd: IsoTime,
  active: ActiveModel.nullable(),
  count: z.number().int().nonnegative(),
  errors: z.number().int().nonnegative(),
  latencyMs: z.object({ p50: z.number(), p95: z.number(), p99: z.number(), max: z.number() }).strict(),
  rssBytes: z.number().int().nonnegative(),
  inputHistograms: z.record(z.string(), Histogram).optional(),
  outputHistograms: z.record(z.string(), Histogram).optional(),
  /** shadow mode: figures of the candidate held in shadow during this window */
  shadow: ShadowTelemetry.optional(),
  /** [#19] a device running several models: each model's own figures by model id (the top-level figures count every call) */
  models: z.record(ModelId, ModelFigures).optional(),
  /** [#19] the chain's figures: one call of inferChain counts once here (its steps count under their models) */
  chain: CallFigures.optional(),
}).strict();
export type Telemetry = z.infer<typeof Telemetry>;

export const Presence = z.object({
  deviceId: DeviceId,
  online: z.boolean(),
  ts: IsoTime,
  hardware: z.string().min(1).max(64).optional(),
  tags: z.array(z.string().min(1).max(64)).max(32).optional(),
  agentVersion: z.string().max(32).optional(),
  /** freeze detection: has the device accepted a fresh signed freshness statement lately (shared/freshness.ts) */
  freshness: z.object({ stale: z.boolean(), freshUntil: IsoTime.nullable() }).strict().optional(),
}).strict();
export type Presence = z.infer<typeof Presence>;
