// What an operator asks for when starting a campaign; every field has a default a cautious operator
// would choose. Parsed once at creation and stored with the campaign, so a restart judges by the same rules.
import { z } from 'zod';
import { DeviceId, ModelId, Sha256Hex } from '../../shared/ids.ts';
import { UpdatePolicy } from '../../shared/update-policy.ts';

/**
 * Shadow first (issue 17, docs/agent.md "Shadow mode"): the wave's devices hold the candidate in shadow
 * next to the model they run, on `sampleRate` of their live inputs, before any of them serves it. The
 * shadow gate (GateConfig.shadow) is judged once `minDevices` devices have reported shadow figures,
 * `minSamples` inputs were compared across them and `soakSeconds` have passed since the shadow was assigned.
 */
export const ShadowWave = z.object({
  minSamples: z.number().int().min(1).default(500),
  minDevices: z.number().int().min(1).default(1),
  soakSeconds: z.number().min(0).default(60),
  sampleRate: z.number().gt(0).max(1).default(0.1),
  /**
   * the shadow phase's deadline: a wave whose devices have not reached minDevices / minSamples this long
   * after the shadow was assigned halts with SHADOW_TIMEOUT and the candidate is unloaded everywhere
   */
  maxSeconds: z.number().min(1).default(3600),
}).strict().refine((w) => w.maxSeconds >= w.soakSeconds, { message: 'shadow.maxSeconds must be at least shadow.soakSeconds', path: ['maxSeconds'] });
export type ShadowWave = z.infer<typeof ShadowWave>;

export const WaveSpec = z.object({
  /** cumulative share of the target reached by the end of this wave */
  percent: z.number().gt(0).max(100),
  /** at least this many devices in the wave (the first wave's canary floor) */
  minDevices: z.number().int().min(1).default(1),
  /** time the wave must run after its last device was updated before its gate is judged */
  soakSeconds: z.number().min(0).default(60),
  /** devices on the new model that must have sent telemetry before the gate is judged */
  minReporting: z.number().int().min(0).default(1),
  /** inferences on the new model (across the wave) before the gate is judged */
  minInferences: z.number().int().min(0).default(0),
  /** run this wave in shadow first (absent: devices switch at once, as before) */
  shadow: ShadowWave.optional(),
}).strict();
export type WaveSpec = z.infer<typeof WaveSpec>;

export const DEFAULT_WAVES: z.input<typeof WaveSpec>[] = [
  { percent: 1, minDevices: 5 }, { percent: 10 }, { percent: 50 }, { percent: 100 },
];

export const PsiLevels = z.object({ warn: z.number().default(0.1), alert: z.number().default(0.2), critical: z.number().default(0.3) }).strict();

/**
 * The sequential canary test (server/rollouts/sequential.ts, docs/canary-statistics.md): paired per-device
 * comparisons with the previous model and an always-valid confidence sequence per metric.
 */
export const SequentialConfig = z.object({
  enabled: z.boolean().default(true),
  /** chance that a candidate as good as the previous model is ever halted by the test, over the whole campaign */
  alpha: z.number().gt(0).max(0.5).default(0.05),
  /** chance that a wave advances on the test's word while the candidate is worse than a margin */
  beta: z.number().gt(0).max(0.5).default(0.05),
  /** non-inferiority margin for latency: the candidate's p95 over the previous model's on the same device */
  latencyMargin: z.number().gt(1).max(100).default(1.2),
  /** non-inferiority margin for the inference error rate, in percentage points over the previous model's */
  errorMarginPoints: z.number().gt(0).max(100).default(1),
  /** halt once the candidate's p95 is shown more than this many times the previous model's (1: any slowdown) */
  latencyHaltRatio: z.number().min(1).max(100).default(1.1),
  /** halt once the candidate's error rate is shown more than this many points over the previous model's (0: any increase) */
  errorHaltPoints: z.number().min(0).max(100).default(0.5),
  /** observed devices before the test may decide (at alpha 0.05 no confidence bound is finite below 5) */
  minDevices: z.number().int().min(2).max(100_000).default(5),
  /** telemetry windows with inferences a device needs on the candidate before its observation is made */
  windowsPerDevice: z.number().int().min(1).max(100).default(3),
  /** a wave never advances on the test before it has soaked this long (halts come at any time) */
  minSoakSeconds: z.number().min(0).default(0),
  /** the longest a wave waits for the test to decide; null: the wave's own soakSeconds */
  soakMaxSeconds: z.number().min(0).nullable().default(null),
  /** what an undecided wave does at its soak maximum: be judged by the fixed guardrails alone, or halt */
  atSoakMax: z.enum(['guardrails', 'halt']).default('guardrails'),
}).strict().superRefine((s, ctx) => {
  if (s.latencyHaltRatio >= s.latencyMargin) ctx.addIssue({ code: 'custom', path: ['latencyHaltRatio'], message: 'latencyHaltRatio must be below latencyMargin' });
  if (s.errorHaltPoints >= s.errorMarginPoints) ctx.addIssue({ code: 'custom', path: ['errorHaltPoints'], message: 'errorHaltPoints must be below errorMarginPoints' });
});
export type SequentialConfig = z.infer<typeof SequentialConfig>;
/** What a campaign stored before the sequential test existed is judged by: the fixed limits alone. */
export const SEQUENTIAL_OFF: SequentialConfig = { ...SequentialConfig.parse({}), enabled: false };

/**
 * The shadow gate: the push gate's measures (server/quantize/accuracy-gate.ts) on each device's live
 * inputs, judged per hardware group: classifier outputs by top-1 agreement, other outputs by SQNR and
 * cosine (the fidelity loss), the candidate's latency over the active model's on the same inputs, and
 * the share of candidate runs that failed.
 */
export const ShadowGate = z.object({
  minAgreement: z.number().min(0).max(1).default(0.99),
  minSqnrDb: z.number().default(20),
  minCosine: z.number().min(-1).max(1).default(0.99),
  maxLatencyRatio: z.number().gt(0).default(1.5),
  maxErrorRate: z.number().min(0).max(1).default(0.01),
}).strict();
export type ShadowGate = z.infer<typeof ShadowGate>;

export const GateConfig = z.object({
  /** install/health-check failures and probation reverts: the gate fails when BOTH the rate and the count reach these */
  failureRate: z.number().min(0).max(1).default(0.05),
  failureCount: z.number().int().min(1).default(1),
  /** inference error rate on the new model (errors / inferences over the wave) */
  maxErrorRate: z.number().min(0).max(1).default(0.02),
  /** p95 and p99 latency of the new model over the previous model on the same devices */
  maxP95Ratio: z.number().gt(0).default(1.5),
  maxP99Ratio: z.number().gt(0).default(2),
  /** latency differences smaller than this many milliseconds never fail the gate (timer noise on sub-ms models) */
  minLatencyDeltaMs: z.number().min(0).default(1),
  /** PSI of inputs and outputs against the bundle's baseline */
  psi: PsiLevels.default({ warn: 0.1, alert: 0.2, critical: 0.3 }),
  /** observations a histogram needs before its drift is judged (PSI on a handful of samples is noise) */
  minDriftSamples: z.number().int().min(1).default(200),
  /** the drift level at which the gate fails ('warn' only logs) */
  haltOnDrift: z.enum(['alert', 'critical', 'never']).default('alert'),
  /** the sequential test beside these fixed limits, which stay as hard guardrails */
  sequential: SequentialConfig.default(SequentialConfig.parse({})),
  /** the shadow gate of waves run in shadow first */
  shadow: ShadowGate.default(ShadowGate.parse({})),
}).strict();
export type GateConfig = z.infer<typeof GateConfig>;

export const CampaignTarget = z.object({
  deviceIds: z.array(DeviceId).max(100_000).optional(),
  tags: z.array(z.string().min(1).max(64)).max(32).optional(),
  hardware: z.array(z.string().min(1).max(64)).max(64).optional(),
  /** only devices currently running this model (and version, if given) */
  currentModel: z.object({ modelId: ModelId, version: z.number().int().positive().optional() }).strict().optional(),
}).strict();
export type CampaignTarget = z.infer<typeof CampaignTarget>;

export const CampaignRequest = z.object({
  name: z.string().min(1).max(128).optional(),
  /** the bundle to roll out; or, instead, `release` */
  manifestSha256: Sha256Hex.optional(),
  /** [#19] a release to roll out (every model of it as one signed set per device; docs/multi-model.md) instead of one bundle */
  release: ModelId.optional(),
  /** the release's version (default: its latest when the campaign is created; stored with the campaign) */
  releaseVersion: z.number().int().positive().optional(),
  target: CampaignTarget.default({}),
  waves: z.array(WaveSpec).min(1).max(20).default(DEFAULT_WAVES as z.infer<typeof WaveSpec>[]),
  gates: GateConfig.default(GateConfig.parse({})),
  onGateFailure: z.enum(['pause', 'revert']).default('revert'),
  /** new assignments per minute across the campaign (0: no limit) */
  rateLimitPerMinute: z.number().int().min(0).default(0),
  /** times a failed device is assigned again before it counts as failed */
  maxRetries: z.number().int().min(0).max(10).default(0),
  /** a device that has not finished this long after its assignment counts as failed */
  deviceDeadlineSeconds: z.number().int().min(1).default(900),
  /** devices that match the target and appear while the campaign runs: join the next wave, or are left alone */
  lateJoiners: z.enum(['include', 'ignore']).default('include'),
  /** maintenance windows and conditions for download and switch, signed into each device's desired state (docs/agent.md) */
  policy: UpdatePolicy.optional(),
}).strict().superRefine((c, ctx) => {
  // [#19] exactly one thing to roll out: a bundle or a release
  if ((c.manifestSha256 === undefined) === (c.release === undefined)) {
    ctx.addIssue({ code: 'custom', path: c.release === undefined ? ['manifestSha256'] : ['release'], message: 'name exactly one of manifestSha256 (a bundle) or release (a release name)' });
  }
  if (c.releaseVersion !== undefined && c.release === undefined) ctx.addIssue({ code: 'custom', path: ['releaseVersion'], message: 'releaseVersion needs release' });
  if (c.release !== undefined) {
    const i = c.waves.findIndex((w) => w.shadow);
    if (i >= 0) ctx.addIssue({ code: 'custom', path: ['waves', i, 'shadow'], message: 'shadow waves are for single-bundle campaigns, not releases' });
  }
  for (let i = 1; i < c.waves.length; i++) {
    if (c.waves[i].percent < c.waves[i - 1].percent) ctx.addIssue({ code: 'custom', path: ['waves', i, 'percent'], message: 'wave percentages must not decrease' });
  }
  if (c.waves[c.waves.length - 1].percent !== 100) ctx.addIssue({ code: 'custom', path: ['waves', c.waves.length - 1, 'percent'], message: 'the last wave must reach 100%' });
});
export type CampaignRequest = z.infer<typeof CampaignRequest>;
export type CampaignRequestInput = z.input<typeof CampaignRequest>;
