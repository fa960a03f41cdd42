// A twin of the real fleet: the fleet's shape (GET /v1/fleet/shape, from the server's own records) turned
// into a scenario the simulator runs. One device group per hardware class and tag set, online and
// offline apart (a device offline in the real fleet goes offline in the twin when the campaign starts),
// a latency model per class from its telemetry, the workload rate from telemetry, scaled down to at most
// maxDevices keeping each group's share. Pure: test/unit/twin.test.ts tables it.
import type { FleetShape } from '../shared/api/fleet-shape.ts';
import type { DeviceGroup, ModelFiles, ScenarioInput } from './scenario.ts';

export interface TwinOptions {
  model: ModelFiles;
  /** the twin has at most this many devices (default 2000) */
  maxDevices?: number;
  /** workload rate cap per device: the simulator's capacity, not the fleet's (default 2/s) */
  maxInferencesPerSecond?: number;
  /**
   * workload floor per device (default 1/s): a slower workload makes gates wait long for their minimum
   * inferences, and leaves most twin devices without a baseline latency to compare with
   */
  minInferencesPerSecond?: number;
  /** device time when a class has no latency figures (default 1 ms) */
  defaultBaseMs?: number;
  telemetryWindowMs?: number;
  processes?: number;
  timeoutMs?: number;
}

export interface TwinPlan {
  scenario: ScenarioInput;
  realDevices: number;
  twinDevices: number;
  /** twin devices per real device (1: full size) */
  scale: number;
  inferencesPerSecond: number;
  /** what the twin does differently from the real fleet, in words */
  notes: string[];
}

/** Campaign fields a rehearsal keeps (the target is the twin itself; the name and bundle are the runner's). */
const KEPT = ['waves', 'gates', 'onGateFailure', 'rateLimitPerMinute', 'maxRetries', 'deviceDeadlineSeconds', 'lateJoiners'] as const;

/** Counts scaled to sum to `total` (largest remainder), in input order. */
export function scaleCounts(counts: number[], total: number): number[] {
  const sum = counts.reduce((a, b) => a + b, 0);
  if (sum <= total) return [...counts];
  const exact = counts.map((c) => (c * total) / sum);
  const out = exact.map(Math.floor);
  const order = exact.map((e, i) => ({ i, r: e - Math.floor(e) })).sort((a, b) => b.r - a.r || a.i - b.i);
  for (let k = 0, left = total - out.reduce((a, b) => a + b, 0); k < left; k++) out[order[k].i]++;
  return out;
}

export function twinScenario(shape: FleetShape, campaign: Record<string, unknown>, opts: TwinOptions): TwinPlan {
  if (shape.devices === 0) throw new Error('the campaign target matches no device: nothing to rehearse');
  const maxDevices = opts.maxDevices ?? 2000;
  const maxRate = opts.maxInferencesPerSecond ?? 2;
  const notes: string[] = [];

  // one cell per class x tag set x online/offline
  const cells: { cls: FleetShape['classes'][number]; tags: string[]; online: boolean; count: number }[] = [];
  for (const cls of shape.classes) {
    for (const ts of cls.tagSets) {
      if (ts.online > 0) cells.push({ cls, tags: ts.tags, online: true, count: ts.online });
      if (ts.devices - ts.online > 0) cells.push({ cls, tags: ts.tags, online: false, count: ts.devices - ts.online });
    }
  }
  const counts = scaleCounts(cells.map((c) => c.count), maxDevices);
  const twinDevices = counts.reduce((a, b) => a + b, 0);
  if (twinDevices < shape.devices) notes.push(`scaled down: ${twinDevices} twin devices for ${shape.devices} real ones (${(twinDevices / shape.devices).toFixed(4)} per device), each class, tag set and online share kept in proportion`);
  const dropped = cells.filter((_, i) => counts[i] === 0);
  if (dropped.length) notes.push(`${dropped.length} small group(s) got no twin device at this scale: ${dropped.slice(0, 5).map((c) => `${c.cls.hardware ?? 'unknown'} [${c.tags.join(',')}]${c.online ? '' : ' offline'} (${c.count})`).join('; ')}`);

  const timeoutMs = opts.timeoutMs ?? 1_800_000;
  const groups: DeviceGroup[] = [];
  cells.forEach((c, i) => {
    if (counts[i] === 0) return;
    const lat = c.cls.telemetry.latencyMs;
    groups.push({
      share: counts[i], hardware: c.cls.hardware ?? 'generic', tags: c.tags,
      // offline for the whole rehearsal from the campaign's start
      faults: c.online ? {} : { offline: { afterMs: 0, forMs: timeoutMs } },
      latencyModel: { baseMs: lat ? lat.p50 : opts.defaultBaseMs ?? 1 },
    });
  });
  for (const cls of shape.classes) {
    if (!cls.telemetry.latencyMs) notes.push(`class ${cls.hardware ?? 'unknown'}: no latency figures in the window, device time set to ${opts.defaultBaseMs ?? 1} ms`);
  }

  // workload: the fleet's mean rate per reporting device (the twin runs one rate for every device)
  const reporting = shape.classes.reduce((a, c) => a + c.telemetry.reportingDevices, 0);
  const minRate = Math.min(opts.minInferencesPerSecond ?? 1, maxRate);
  let rate = reporting > 0 ? shape.classes.reduce((a, c) => a + c.telemetry.inferencesPerSecond * c.telemetry.reportingDevices, 0) / reporting : minRate;
  if (reporting === 0) notes.push(`no telemetry in the window: workload assumed at ${rate} inferences/s per device`);
  else if (rate < minRate) {
    notes.push(`workload raised to ${minRate} inferences/s per device (the fleet runs ${rate.toFixed(3)}): gates reach their minimum inferences sooner than in the real fleet`);
    rate = minRate;
  }
  const rates = shape.classes.filter((c) => c.telemetry.reportingDevices > 0).map((c) => c.telemetry.inferencesPerSecond);
  if (rates.length > 1 && Math.max(...rates) > 1.5 * Math.min(...rates)) notes.push(`classes run ${rates.map((r) => r.toFixed(2)).join(', ')} inferences/s; the twin runs the mean, ${rate.toFixed(2)}, on every device`);
  if (rate > maxRate) {
    notes.push(`workload capped at ${maxRate} inferences/s per device (the fleet runs ${rate.toFixed(2)}): gates reach their minimum inferences later than in the real fleet`);
    rate = maxRate;
  }
  rate = Number(rate.toFixed(3));

  const twinCampaign: Record<string, unknown> = {};
  for (const k of KEPT) if (campaign[k] !== undefined) twinCampaign[k] = campaign[k];
  const scale = twinDevices / shape.devices;
  if (typeof campaign.rateLimitPerMinute === 'number' && campaign.rateLimitPerMinute > 0 && scale < 1) {
    // the same waves in the same time: fewer devices, proportionally fewer assignments a minute
    twinCampaign.rateLimitPerMinute = Math.max(1, Math.round(campaign.rateLimitPerMinute * scale));
    notes.push(`rateLimitPerMinute scaled with the fleet: ${campaign.rateLimitPerMinute} -> ${twinCampaign.rateLimitPerMinute}`);
  }

  return {
    scenario: {
      name: 'rehearsal',
      fleet: {
        devices: twinDevices, processes: opts.processes ?? Math.min(8, Math.max(1, Math.ceil(twinDevices / 500))),
        groups, telemetryWindowMs: opts.telemetryWindowMs ?? 500, inferencesPerSecond: rate,
      },
      model: opts.model,
      baseline: opts.model.baselineFile !== undefined,
      campaign: twinCampaign,
      timeoutMs,
    },
    realDevices: shape.devices, twinDevices, scale, inferencesPerSecond: rate, notes,
  };
}

/** The kind of each gate failure, for comparing a rehearsal with the real campaign (decide.ts writes the sentences). */
export function failureKinds(failures: string[]): string[] {
  return failures.map((f) => {
    if (f.startsWith('failures ')) return 'install-failures';
    if (f.startsWith('inference error rate') || f.startsWith('sequential test: error rate')) return 'error-rate';
    if (f.startsWith('sequential test: latency')) return 'p95-latency'; // the sequential test's latency metric is the paired p95 ratio
    if (f.startsWith('p95 latency')) return 'p95-latency';
    if (f.startsWith('p99 latency')) return 'p99-latency';
    if (/drift|psi/i.test(f)) return 'drift';
    return 'other';
  });
}
