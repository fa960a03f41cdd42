// A scenario: a fleet (groups of devices with hardware classes and fault profiles), a model, and a
// campaign. JSON on disk (`npm run sim -- scenarios/x.json`), the same object in tests.
import { z } from 'zod';

/** Faults of a device group; 'candidate' means the model the campaign rolls out. */
export const FaultSpec = z.object({
  /** the candidate fails its health check on these devices (zeroed outputs) or crashes on every call */
  candidateBroken: z.enum(['wrong-output', 'throw']).optional(),
  /** simulated inference time in ms for every model, and the candidate's factor over it */
  baseLatencyMs: z.number().min(0).optional(),
  candidateLatencyFactor: z.number().positive().optional(),
  /** sensor drift on workload inputs: x * scale + offset */
  inputDrift: z.object({ offset: z.number(), scale: z.number().optional() }).strict().optional(),
  /** the device clock runs this far ahead (+) or behind (-) */
  clockSkewMs: z.number().optional(),
  /** MQTT connections through a proxy that drops them every so often */
  flakyNetwork: z.object({ dropEveryMs: z.number().int().min(100) }).strict().optional(),
  /** artifact downloads: cut after this many bytes per response (the agent resumes with Range), and/or slowed */
  download: z.object({ cutAfterBytes: z.number().int().positive().optional(), delayMsPerChunk: z.number().min(0).optional() }).strict().optional(),
  /** the device goes offline at `afterMs` from the campaign start and comes back `forMs` later */
  offline: z.object({ afterMs: z.number().int().min(0), forMs: z.number().int().min(0) }).strict().optional(),
}).strict();
export type FaultSpec = z.infer<typeof FaultSpec>;

/**
 * Device time of a hardware class: baseMs per inference of the baseline model, scaled for any other model
 * by its cost measured once by the runner (cost(artifact) / cost(baseline artifact)), times jitter.
 * (On this branch the runner applies baseMs and the cost ratio through the fault profile's latency;
 * jitter and the slow tail are the latency model's own work.)
 */
export const LatencyModel = z.object({
  baseMs: z.number().min(0),
  jitter: z.number().min(0).optional(),
  tailProbability: z.number().min(0).max(1).optional(),
  tailFactor: z.number().min(1).optional(),
}).strict();
export type LatencyModel = z.infer<typeof LatencyModel>;

export const DeviceGroup = z.object({
  /** share of the fleet (the shares are normalised) */
  share: z.number().positive(),
  hardware: z.string().min(1).max(64).default('generic'),
  tags: z.array(z.string()).default([]),
  faults: FaultSpec.default({}),
  latencyModel: LatencyModel.optional(),
}).strict();
export type DeviceGroup = z.infer<typeof DeviceGroup>;

/**
 * Real artifacts, pushed as they are (quantize 'none': the bytes that ship are the file's bytes). The
 * reference samples (shared/samples.ts SampleSet JSON: {"samples": [...]}) become both bundles' health
 * check and drift baseline; without them the server makes health-check inputs from the signature. The
 * workload feeds the baseline bundle's health-check inputs (the candidate's without a baseline).
 */
export const ModelFiles = z.object({
  baselineFile: z.string().min(1).optional(),
  candidateFile: z.string().min(1),
  reference: z.string().min(1).optional(),
  /** model id both bundles are pushed under (default sim-model) */
  modelId: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/).optional(),
}).strict();
export type ModelFiles = z.infer<typeof ModelFiles>;

export const Scenario = z.object({
  name: z.string().default('scenario'),
  fleet: z.object({
    devices: z.number().int().min(1).max(20_000),
    /** child processes the devices run in (0: in the runner's own process) */
    processes: z.number().int().min(0).max(16).default(1),
    groups: z.array(DeviceGroup).min(1).default([{ share: 1, hardware: 'generic', tags: [], faults: {} }]),
    telemetryWindowMs: z.number().int().min(100).default(500),
    /** inferences per second each device's own code makes */
    inferencesPerSecond: z.number().min(0).default(2),
  }).strict(),
  /** built-in models, or real bundles' artifacts from files (a rehearsal on a twin: firmware-sim/twin.ts) */
  model: z.union([z.enum(['tiny', 'digits']), ModelFiles]).default('tiny'),
  /** roll the baseline model to every device first (so latency gates have a "before") */
  baseline: z.boolean().default(true),
  /** campaign options (manifestSha256 is filled in with the candidate) */
  campaign: z.record(z.string(), z.unknown()).default({}),
  /** give up after this long */
  timeoutMs: z.number().int().positive().default(300_000),
}).strict();
export type Scenario = z.infer<typeof Scenario>;
export type ScenarioInput = z.input<typeof Scenario>;

export function parseScenario(input: unknown): Scenario {
  const r = Scenario.safeParse(input);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new Error(`invalid scenario: ${i.path.join('.') || '(root)'}: ${i.message}`);
  }
  return r.data;
}

/** Group of device i in a fleet of n: contiguous blocks by share. */
export function groupOf(groups: DeviceGroup[], i: number, n: number): number {
  const total = groups.reduce((a, g) => a + g.share, 0);
  let acc = 0;
  for (let g = 0; g < groups.length; g++) {
    acc += groups[g].share / total;
    if (i < Math.round(acc * n)) return g;
  }
  return groups.length - 1;
}
