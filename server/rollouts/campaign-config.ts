// What an operator asks for when starting a campaign; every field has a default a cautious operator
// would choose. Parsed once at creation and stored with the campaign, so a restart judges by the same rules.
import { z } from 'zod';
import { DeviceId, ModelId, Sha256Hex } from '../../shared/ids.ts';

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
}).strict();
export type WaveSpec = z.infer<typeof WaveSpec>;

export const DEFAULT_WAVES: z.input<typeof WaveSpec>[] = [
  { percent: 1, minDevices: 5 }, { percent: 10 }, { percent: 50 }, { percent: 100 },
];

export const PsiLevels = z.object({ warn: z.number().default(0.1), alert: z.number().default(0.2), critical: z.number().default(0.3) }).strict();

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
  manifestSha256: Sha256Hex,
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
}).strict().superRefine((c, ctx) => {
  for (let i = 1; i < c.waves.length; i++) {
    if (c.waves[i].percent < c.waves[i - 1].percent) ctx.addIssue({ code: 'custom', path: ['waves', i, 'percent'], message: 'wave percentages must not decrease' });
  }
  if (c.waves[c.waves.length - 1].percent !== 100) ctx.addIssue({ code: 'custom', path: ['waves', c.waves.length - 1, 'percent'], message: 'the last wave must reach 100%' });
});
export type CampaignRequest = z.infer<typeof CampaignRequest>;
export type CampaignRequestInput = z.input<typeof CampaignRequest>;
