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
 * Device time of a hardware class (latency-model.ts): baseMs x cost(artifact) / cost(baseline artifact)
 * x a seeded lognormal jitter (x tailFactor with tailProbability). The shape is shared with the twin's
 * fleet-shape mapping: keep it so.
 */
export const LatencyModel = z.object({
  baseMs: z.number().min(0),
  /** relative sd of a lognormal factor (default 0.1) */
  jitter: z.number().min(0).max(5).optional(),
  /** default 0.01 */
  tailProbability: z.number().min(0).max(1).optional(),
  /** default 3 */
  tailFactor: z.number().min(1).optional(),
}).strict();
export type LatencyModel = z.infer<typeof LatencyModel>;

/**
 * The group's own input distribution (shadow-mode scenarios, issue 17): on every `every`-th call of each
 * device of the group, element `element` of each float input is drawn from [min, max) instead, so the
 * group sees inputs other groups never see (a camera that looks at something the others do not).
 */
export const InputMix = z.object({
  element: z.number().int().min(0),
  every: z.number().int().min(1),
  min: z.number(),
  max: z.number(),
}).strict().refine((m) => m.max > m.min, { message: 'inputs.max must be above inputs.min' });
export type InputMix = z.infer<typeof InputMix>;

export const DeviceGroup = z.object({
  /** share of the fleet (the shares are normalised) */
  share: z.number().positive(),
  hardware: z.string().min(1).max(64).default('generic'),
  tags: z.array(z.string()).default([]),
  faults: FaultSpec.default({}),
  latencyModel: LatencyModel.optional(),
  /** this group's own workload inputs (see InputMix) */
  inputs: InputMix.optional(),
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
/** What must happen; `npm run sim -- --check` fails a scenario whose outcome misses any of these. */
export const Expect = z.object({
  /** final campaign status */
  status: z.enum(['completed', 'reverted', 'halted', 'aborted']).optional(),
  /** the wave (1 = the first) whose gate failed; implies the campaign halted */
  haltWave: z.number().int().min(1).optional(),
  /** devices the campaign ever assigned the candidate to, at most */
  maxDevicesTouched: z.number().int().min(0).optional(),
  /** devices on the candidate at the end, exactly */
  devicesOnCandidate: z.number().int().min(0).optional(),
  /** a substring of the gate failure (or a device reason code such as HEALTH_CHECK_FAILED) */
  reason: z.string().min(1).optional(),
  /** devices outside the campaign's target never got the candidate and kept their model */
  nothingOutsideTargetChanged: z.boolean().optional(),
  /** inference errors the devices reported to the server, at most */
  maxInferenceErrors: z.number().int().min(0).optional(),
  /** the run was within the simulator's capacity (default true: an invalid run is a miss) */
  valid: z.boolean().default(true),
}).strict();
export type Expect = z.infer<typeof Expect>;

/** When the simulator calls its own run invalid (capacity.ts, run-scenario.ts judgeValidity). */
export const Limits = z.object({
  /** event-loop delay p99 (per one-second sample) above which a process is over capacity */
  maxLagMs: z.number().positive().default(500),
  /** share of samples a process may spend over maxLagMs */
  maxLagSampleShare: z.number().min(0).max(1).default(0.25),
  /** share of the workload's due calls that may go undelivered (device still busy, or its loop woke too late) */
  maxSkippedShare: z.number().min(0).max(1).default(0.1),
}).strict();
export type Limits = z.infer<typeof Limits>;

/**
 * The broker the fleet runs on (docs/brokers.md, docs/simulator.md): the server's own embedded aedes
 * broker (default), one mosquitto (device auth by its dynamic security plugin), or a NATS JetStream
 * cluster of `nodes` nodes (default 3). The runner starts it, makes the server its client, and stops
 * it; external brokers need Debian's mosquitto / nats-server (.ci/run installs them).
 */
export const BrokerChoice = z.object({
  mode: z.enum(['embedded', 'mosquitto', 'nats']).default('embedded'),
  nodes: z.number().int().min(1).max(5).optional(),
}).strict().refine((b) => b.nodes === undefined || b.mode === 'nats', { message: 'broker.nodes is for mode "nats"' });
export type BrokerChoice = z.infer<typeof BrokerChoice>;

export const Scenario = z.object({
  name: z.string().default('scenario'),
  broker: BrokerChoice.default({ mode: 'embedded' }),
  fleet: z.object({
    devices: z.number().int().min(1).max(20_000),
    /** child processes the devices run in (0: in the runner's own process) */
    processes: z.number().int().min(0).max(16).default(1),
    groups: z.array(DeviceGroup).min(1).default([{ share: 1, hardware: 'generic', tags: [], faults: {} }]),
    telemetryWindowMs: z.number().int().min(100).default(500),
    /** inferences per second each device's own code makes */
    inferencesPerSecond: z.number().min(0).default(2),
    /**
     * where the devices' data folders live: 'memory' (/dev/shm where it exists) or the host's temp folder.
     * Every agent writes its telemetry windows synchronously; a thousand of them on a busy disk stall the
     * fleet process's event loop (issue 21: a 100-device process at 0.2 cores showed 1.3 s of lag).
     */
    deviceDisk: z.enum(['memory', 'tmp']).default('memory'),
  }).strict(),
  /** built-in models, or real bundles' artifacts from files (a rehearsal on a twin: firmware-sim/twin.ts) */
  model: z.union([z.enum(['tiny', 'digits', 'tiny-trap']), ModelFiles]).default('tiny'),
  /** roll the baseline model to every device first (so latency gates have a "before") */
  baseline: z.boolean().default(true),
  /** campaign options (manifestSha256 is filled in with the candidate) */
  campaign: z.record(z.string(), z.unknown()).default({}),
  /** give up after this long */
  timeoutMs: z.number().int().positive().default(300_000),
  limits: Limits.default(Limits.parse({})),
  expect: Expect.optional(),
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
