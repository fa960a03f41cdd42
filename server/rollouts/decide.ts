// The rollout decision as a pure function of a campaign, its figures and the time. The engine that
// assigns, publishes and writes is thin and calls this; tests drive it with tables.
import type { GateConfig, WaveSpec } from './campaign-config.ts';
import { driftLevel, type DriftLevel } from './psi.ts';
import { sequentialVerdict, type DeviceEvidence, type SequentialVerdict } from './sequential.ts';

export type CampaignStatus = 'running' | 'paused' | 'halted' | 'reverting' | 'reverted' | 'completed' | 'aborted';

export interface WaveProgress {
  /** devices of waves up to the current one */
  inWaves: number;
  /** of those, not yet assigned */
  pending: number;
  /** assigned, no final status yet */
  inFlight: number;
  updated: number;
  /** install, verification or health-check failures, after retries, and devices past their deadline */
  failed: number;
  /** reverted during probation */
  reverted: number;
  /** when the last device of the wave reached a final state (epoch ms), null while any is in flight */
  settledAt: number | null;
}

export interface GateFigures {
  reporting: number;
  inferences: number;
  errors: number;
  latency: { newP95: number; oldP95: number; newP99: number; oldP99: number } | null;
  drift: { name: string; psi: number }[];
  /** per-device telemetry windows on the candidate and on the previous model, for the sequential test (absent: not read) */
  evidence?: DeviceEvidence[];
  /** [#19] a release campaign: each model's own figures (per-model telemetry), every one judged by the same limits */
  models?: ModelGateFigures[];
  /** [#19] a release campaign: each changed model's per-device windows, for the sequential test per model (absent: not read) */
  modelEvidence?: { modelId: string; evidence: DeviceEvidence[] }[];
}

/** [#19] one model of a release: its calls on the devices of the waves so far, and its latency against the model it replaced */
export interface ModelGateFigures {
  modelId: string;
  inferences: number;
  errors: number;
  latency: GateFigures['latency'];
  /** its inputs' and outputs' drift against its own manifest's baseline (absent or empty: none judged) */
  drift?: GateFigures['drift'];
}

export interface Verdict {
  passed: boolean;
  failures: string[];
  warnings: string[];
  figures: Record<string, number | string | null>;
  /** the sequential test's decision, statistic and evidence so far, when it ran */
  sequential?: SequentialVerdict;
  /** [#19] a release campaign: the models whose own figures failed the gate */
  failedModels?: string[];
}

export type Step =
  | { kind: 'hold'; why: string }
  | { kind: 'judge' }
  | { kind: 'halt'; verdict: Verdict }
  | { kind: 'advance'; verdict: Verdict; toWave: number }
  | { kind: 'done'; verdict: Verdict };

/** Install failures can stop a campaign at any moment: a bad model should touch as few devices as possible. */
export function failureVerdict(p: WaveProgress, g: GateConfig): string | null {
  const bad = p.failed + p.reverted;
  const finished = p.updated + bad;
  if (finished === 0) return null;
  const rate = bad / Math.max(finished, 1);
  if (bad >= g.failureCount && rate >= g.failureRate) {
    return `failures ${bad} of ${finished} devices (${(rate * 100).toFixed(1)}%) reached the limit (>= ${g.failureCount} devices and >= ${(g.failureRate * 100).toFixed(1)}%)`;
  }
  return null;
}

export function judgeGate(p: WaveProgress, f: GateFigures, g: GateConfig): Verdict {
  const failures: string[] = [];
  const warnings: string[] = [];
  const figures: Verdict['figures'] = {
    updated: p.updated, failed: p.failed, reverted: p.reverted, reporting: f.reporting, inferences: f.inferences, errors: f.errors,
  };
  const fv = failureVerdict(p, g);
  if (fv) failures.push(fv);
  callLimits(f, g, '', figures, failures);
  // [#19] every model of a release by its own figures: one model's regression is not averaged away by the others
  const failedModels: string[] = [];
  for (const m of f.models ?? []) {
    const before = failures.length;
    figures[`${m.modelId}:inferences`] = m.inferences;
    figures[`${m.modelId}:errors`] = m.errors;
    callLimits(m, g, m.modelId, figures, failures);
    driftLimits(m.drift ?? [], g, m.modelId, figures, failures, warnings);
    if (failures.length > before) failedModels.push(m.modelId);
  }
  driftLimits(f.drift, g, '', figures, failures, warnings);
  return { passed: failures.length === 0, failures, warnings, figures, ...(failedModels.length ? { failedModels } : {}) };
}

/** The drift limits on one set of histograms: the campaign's (`model` '') or one model's of a release (`model <id>: `, figures `<id>:psi:...`). */
function driftLimits(drift: GateFigures['drift'], g: GateConfig, model: string, figures: Verdict['figures'], failures: string[], warnings: string[]): void {
  let worst: { name: string; psi: number; level: DriftLevel } | null = null;
  for (const d of drift) {
    const level = driftLevel(d.psi, g.psi);
    figures[model ? `${model}:psi:${d.name}` : `psi:${d.name}`] = d.psi;
    if (!worst || d.psi > worst.psi) worst = { ...d, level };
  }
  if (worst && worst.level !== 'ok') {
    const line = `${model ? `model ${model}: ` : ''}drift on ${worst.name}: PSI ${worst.psi.toFixed(3)} (${worst.level}; warn ${g.psi.warn}, alert ${g.psi.alert}, critical ${g.psi.critical})`;
    const halts = g.haltOnDrift !== 'never' && (worst.level === 'critical' || (worst.level === 'alert' && g.haltOnDrift === 'alert'));
    (halts ? failures : warnings).push(line);
  }
}

/**
 * The error-rate and latency limits on one set of calls: the campaign's (`model` '') or one model's of a
 * release (its failures say `model <id>: `, its figures are keyed `<id>:`).
 */
function callLimits(f: Pick<GateFigures, 'inferences' | 'errors' | 'latency'>, g: GateConfig, model: string, figures: Verdict['figures'], failures: string[]): void {
  const say = model ? `model ${model}: ` : '';
  const key = (k: string) => (model ? `${model}:${k}` : k);
  if (f.inferences > 0) {
    const errorRate = f.errors / f.inferences;
    figures[key('errorRate')] = errorRate;
    if (errorRate > g.maxErrorRate) failures.push(`${say}inference error rate ${(errorRate * 100).toFixed(2)}% over the ${(g.maxErrorRate * 100).toFixed(2)}% limit`);
  }
  if (f.latency && f.latency.oldP95 > 0 && f.latency.oldP99 > 0) {
    const r95 = f.latency.newP95 / f.latency.oldP95, r99 = f.latency.newP99 / f.latency.oldP99;
    Object.assign(figures, { [key('p95New')]: f.latency.newP95, [key('p95Old')]: f.latency.oldP95, [key('p95Ratio')]: r95, [key('p99New')]: f.latency.newP99, [key('p99Old')]: f.latency.oldP99, [key('p99Ratio')]: r99 });
    const d95 = f.latency.newP95 - f.latency.oldP95, d99 = f.latency.newP99 - f.latency.oldP99;
    if (r95 > g.maxP95Ratio && d95 >= g.minLatencyDeltaMs) failures.push(`${say}p95 latency ${f.latency.newP95.toFixed(2)} ms is ${r95.toFixed(2)}x the previous model's ${f.latency.oldP95.toFixed(2)} ms (limit ${g.maxP95Ratio}x)`);
    if (r99 > g.maxP99Ratio && d99 >= g.minLatencyDeltaMs) failures.push(`${say}p99 latency ${f.latency.newP99.toFixed(2)} ms is ${r99.toFixed(2)}x the previous model's ${f.latency.oldP99.toFixed(2)} ms (limit ${g.maxP99Ratio}x)`);
  } else {
    figures[key('p95Ratio')] = null;
  }
}

export interface DecideInput {
  status: CampaignStatus;
  wave: number;
  waves: WaveSpec[];
  gates: GateConfig;
  progress: WaveProgress;
  now: number;
}

/**
 * What to do next. 'judge' asks the engine for the (costlier) telemetry figures and to call
 * decideWithFigures; every other answer needs nothing more.
 */
export function nextStep(c: DecideInput): Step {
  if (c.status !== 'running') return { kind: 'hold', why: `campaign is ${c.status}` };
  const fv = failureVerdict(c.progress, c.gates);
  if (fv) return { kind: 'halt', verdict: { passed: false, failures: [fv], warnings: [], figures: { updated: c.progress.updated, failed: c.progress.failed, reverted: c.progress.reverted } } };
  if (c.progress.pending > 0 || c.progress.inFlight > 0) return { kind: 'hold', why: `wave ${c.wave + 1}: ${c.progress.pending} to assign, ${c.progress.inFlight} in flight` };
  const spec = c.waves[c.wave];
  const settledAt = c.progress.settledAt ?? c.now;
  const soakLeft = settledAt + spec.soakSeconds * 1000 - c.now;
  if (soakLeft > 0) return { kind: 'hold', why: `wave ${c.wave + 1} soaking, ${Math.ceil(soakLeft / 1000)} s left` };
  return { kind: 'judge' };
}

/** How a decision of one model weighs against another's: any halt halts, any wait waits, then unavailable. */
const DECISION_RANK: Record<Exclude<SequentialVerdict['decision'], 'unavailable'>, number> = { halt: 2, wait: 1, advance: 0 };

/**
 * The sequential test's verdict for this wave, or null when it is off or the engine did not read the evidence.
 * [#19] A release campaign runs the test on the device-wide telemetry (the primary's windows) and on each
 * changed model's own windows, each at alpha / (1 + models): it halts when any of them shows its model
 * worse (the verdict names the model), waits while any is undecided, and advances only when every one is
 * non-inferior. The verdict carries each model's own (`models`).
 */
export function sequentialFor(c: DecideInput, f: GateFigures): SequentialVerdict | null {
  const s = c.gates.sequential;
  if (!s.enabled || !f.evidence) return null;
  if (!f.modelEvidence?.length) return sequentialVerdict(f.evidence, { ...s, minLatencyDeltaMs: c.gates.minLatencyDeltaMs }, c.wave);
  // 1 + k tests (device-wide and each of the release's k models) share alpha (a union bound), so a release
  // as good as the one before is still halted with probability <= alpha over the whole campaign; beta
  // needs no share (advancing needs every test's non-inferiority, each holding at beta)
  const settings = { ...s, alpha: s.alpha / (1 + f.modelEvidence.length), minLatencyDeltaMs: c.gates.minLatencyDeltaMs };
  const device = sequentialVerdict(f.evidence, settings, c.wave);
  const models = f.modelEvidence.map((m) => {
    const v = sequentialVerdict(m.evidence, settings, c.wave);
    return { ...v, modelId: m.modelId, reason: `model ${m.modelId}: ${v.reason}` };
  });
  // the tests that can decide (enough paired devices): the most severe decision among them, the device-wide
  // figures first on a tie; a test that cannot (a model the release keeps, so nothing to pair with; the
  // device-wide one when the primary is unchanged) is named in the reason and left to the fixed limits
  const all: (SequentialVerdict & { modelId?: string })[] = [device, ...models];
  const available = all.filter((v) => v.decision !== 'unavailable');
  let worst = device as SequentialVerdict & { modelId?: string };
  for (const v of available) if (worst.decision === 'unavailable' || DECISION_RANK[v.decision as keyof typeof DECISION_RANK] > DECISION_RANK[worst.decision as keyof typeof DECISION_RANK]) worst = v;
  const { modelId, ...decided } = worst;
  const unjudged = available.length ? all.filter((v) => v.decision === 'unavailable').map((v) => (v.modelId ? `model ${v.modelId}` : 'device-wide')) : [];
  return {
    ...decided, ...(modelId ? { model: modelId } : {}),
    ...(unjudged.length && decided.decision !== 'halt' ? { reason: `${decided.reason}; unavailable (fixed limits only): ${unjudged.join(', ')}` } : {}),
    models: models.map(({ modelId: id, decision, reason, devices, latency, errors }) => ({ modelId: id, decision, reason, devices, latency, errors })),
  };
}

/** The longest a wave waits for the sequential test, in seconds. */
export function soakMaxSeconds(spec: WaveSpec, g: GateConfig): number {
  return Math.max(spec.soakSeconds, g.sequential.soakMaxSeconds ?? spec.soakSeconds);
}

function seqHalt(c: DecideInput, f: GateFigures, seq: SequentialVerdict): Step {
  const verdict = judgeGate(c.progress, f, c.gates);
  // [#19] the model the test showed worse is named with those the fixed limits failed
  const failedModels = [...new Set([...(seq.model ? [seq.model] : []), ...(verdict.failedModels ?? [])])];
  return { kind: 'halt', verdict: { ...verdict, passed: false, failures: [seq.reason, ...verdict.failures], sequential: seq, ...(failedModels.length ? { failedModels } : {}) } };
}

function pass(c: DecideInput, verdict: Verdict): Step {
  if (c.wave >= c.waves.length - 1) return { kind: 'done', verdict };
  return { kind: 'advance', verdict, toWave: c.wave + 1 };
}

/**
 * Once the wave has soaked its soakSeconds: fixed limits as hard guardrails, and the sequential test.
 * It halts when the test shows the candidate worse, advances when it shows every metric non-inferior,
 * and otherwise holds until the soak maximum, where `atSoakMax` says: the guardrails alone, or halt.
 * Without enough paired devices the test is unavailable and the guardrails decide (said in warnings).
 */
export function decideWithFigures(c: DecideInput, f: GateFigures): Step {
  const spec = c.waves[c.wave];
  const seq = sequentialFor(c, f);
  if (seq?.decision === 'halt') return seqHalt(c, f, seq);
  if (f.reporting < spec.minReporting || f.inferences < spec.minInferences) {
    return { kind: 'hold', why: `wave ${c.wave + 1} waiting for telemetry: ${f.reporting}/${spec.minReporting} devices reporting, ${f.inferences}/${spec.minInferences} inferences` };
  }
  const verdict = judgeGate(c.progress, f, c.gates);
  if (seq) verdict.sequential = seq;
  if (!verdict.passed) return { kind: 'halt', verdict };
  if (seq?.decision === 'wait') {
    const max = soakMaxSeconds(spec, c.gates);
    const left = (c.progress.settledAt ?? c.now) + max * 1000 - c.now;
    if (left > 0) return { kind: 'hold', why: `wave ${c.wave + 1}: ${seq.reason} (decides within ${Math.ceil(left / 1000)} s)` };
    const line = `sequential test undecided at the soak maximum (${max} s): ${seq.reason}`;
    if (c.gates.sequential.atSoakMax === 'halt') return { kind: 'halt', verdict: { ...verdict, passed: false, failures: [line] } };
    verdict.warnings.push(`${line}; judged by the fixed limits alone`);
  }
  if (seq?.decision === 'unavailable') verdict.warnings.push(`${seq.reason}; judged by the fixed limits alone`);
  return pass(c, verdict);
}

/**
 * While a wave is in flight or soaking (nextStep says hold): the sequential test may halt at once, and a
 * settled wave past the test's minSoakSeconds may advance as soon as the test shows every metric
 * non-inferior and the fixed limits pass. Null: keep holding.
 */
export function decideEarly(c: DecideInput, f: GateFigures): Step | null {
  if (c.status !== 'running') return null;
  const seq = sequentialFor(c, f);
  if (!seq) return null;
  if (seq.decision === 'halt') return seqHalt(c, f, seq);
  if (seq.decision !== 'advance') return null;
  const p = c.progress, spec = c.waves[c.wave];
  if (p.pending > 0 || p.inFlight > 0 || p.settledAt === null) return null;
  if (c.now < p.settledAt + c.gates.sequential.minSoakSeconds * 1000) return null;
  if (f.reporting < spec.minReporting || f.inferences < spec.minInferences) return null;
  const verdict = judgeGate(p, f, c.gates);
  verdict.sequential = seq;
  if (!verdict.passed) return null; // the fixed limits are judged when the soak is over, as always
  return pass(c, verdict);
}

/** Cumulative device count at the end of each wave for a target of `total` devices. */
export function waveBoundaries(waves: WaveSpec[], total: number): number[] {
  const out: number[] = [];
  let prev = 0;
  for (const w of waves) {
    const want = Math.ceil((w.percent / 100) * total);
    const cum = Math.min(total, Math.max(want, prev + w.minDevices));
    out.push(cum);
    prev = cum;
  }
  if (out.length) out[out.length - 1] = total;
  return out;
}
