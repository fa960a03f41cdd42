// The shadow gate (issue 17): a wave run in shadow first is judged on how the candidate compared with
// the active model on the wave's own devices' live inputs, per hardware group, before any device serves
// it. Figures are read from shadow_windows (the shadow part of telemetry, migration 9); the decision is
// pure (judgeShadow) and table-tested; the engine (engine.ts shadowFirst) assigns, unloads and records.
import type { Db } from '../db/database.ts';
import type { ShadowOutputSums } from '../../shared/messages.ts';
import { addWindow, emptyTotals, shadowFigures, type ShadowFigures, type ShadowTotals } from '../../shared/shadow-figures.ts';
import type { ShadowGate, ShadowWave } from './campaign-config.ts';

export interface ShadowGroup { hardware: string; devices: number; totals: ShadowTotals }

export interface ShadowGateFigures {
  /** devices that reported at least one compared sample */
  devices: number;
  total: ShadowTotals;
  /** by hardware class ('' for devices that never said) */
  groups: ShadowGroup[];
}

/** Shadow windows of `candidate` from the wave's devices, received since the shadow was assigned. */
export function shadowGateFigures(db: Db, campaignId: string, wave: number, candidate: string, since: number): ShadowGateFigures {
  const rows = db.prepare(`SELECT sw.device_id, COALESCE(d.hardware, '') AS hardware, sw.samples, sw.errors, sw.dropped, sw.active_ms, sw.candidate_ms, sw.outputs_json
    FROM shadow_windows sw JOIN campaign_devices cd ON cd.device_id = sw.device_id AND cd.campaign_id = ? AND cd.wave = ?
    LEFT JOIN devices d ON d.device_id = sw.device_id
    WHERE sw.manifest_sha256 = ? AND sw.received_at >= ?`).all(campaignId, wave, candidate, since) as
    { device_id: string; hardware: string; samples: number; errors: number; dropped: number; active_ms: number; candidate_ms: number; outputs_json: string }[];
  const total = emptyTotals();
  const groups = new Map<string, { totals: ShadowTotals; devices: Set<string> }>();
  const reporting = new Set<string>();
  for (const r of rows) {
    const w = { samples: r.samples, errors: r.errors, dropped: r.dropped, activeMs: r.active_ms, candidateMs: r.candidate_ms, outputs: JSON.parse(r.outputs_json) as Record<string, ShadowOutputSums> };
    addWindow(total, w);
    const g = groups.get(r.hardware) ?? { totals: emptyTotals(), devices: new Set<string>() };
    addWindow(g.totals, w);
    if (r.samples > 0) { g.devices.add(r.device_id); reporting.add(r.device_id); }
    groups.set(r.hardware, g);
  }
  return {
    devices: reporting.size, total,
    groups: [...groups.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([hardware, g]) => ({ hardware, devices: g.devices.size, totals: g.totals })),
  };
}

export interface ShadowGroupVerdict { hardware: string; devices: number; figures: ShadowFigures; failures: string[] }

export interface ShadowVerdict {
  passed: boolean;
  failures: string[];
  devices: number;
  samples: number;
  figures: ShadowFigures;
  groups: ShadowGroupVerdict[];
}

/** What the wave reached when its shadow phase ran out of time (shadow.maxSeconds). */
export interface ShadowTimeout { reason: 'SHADOW_TIMEOUT'; why: string; devices: number; minDevices: number; samples: number; minSamples: number; maxSeconds: number }

export type ShadowStep = { kind: 'hold'; why: string } | { kind: 'pass'; verdict: ShadowVerdict } | { kind: 'halt'; verdict: ShadowVerdict }
  | { kind: 'timeout'; timeout: ShadowTimeout };

const f4 = (x: number) => x.toFixed(4);

/** One group's (or the whole wave's) failures against the gate, each naming the group, output, figure and limit. */
export function judgeFigures(label: string, f: ShadowFigures, g: ShadowGate, minLatencyDeltaMs: number, activeMs: number, candidateMs: number): string[] {
  const out: string[] = [];
  const at = `hardware ${label || '(unknown)'}`;
  for (const [name, o] of Object.entries(f.outputs)) {
    if (o.kind === 'classifier') {
      if (o.agreement !== null && !(o.agreement >= g.minAgreement)) out.push(`${at}: ${name}: top-1 agreement ${f4(o.agreement)} is below the minimum ${g.minAgreement} (${o.positions} positions)`);
    } else {
      if (o.sqnrDb !== null && !(o.sqnrDb >= g.minSqnrDb)) out.push(`${at}: ${name}: SQNR ${o.sqnrDb.toFixed(2)} dB is below the minimum ${g.minSqnrDb} dB`);
      if (!(o.cosine >= g.minCosine)) out.push(`${at}: ${name}: cosine ${o.cosine.toFixed(5)} is below the minimum ${g.minCosine}`);
    }
  }
  // latency: the ratio of summed times on the same inputs; differences under minLatencyDeltaMs per sample are timer noise
  if (f.latencyRatio !== null && f.latencyRatio > g.maxLatencyRatio && f.samples > 0 && (candidateMs - activeMs) / f.samples >= minLatencyDeltaMs) {
    out.push(`${at}: latency ratio ${f.latencyRatio.toFixed(2)} (candidate / active on the same inputs) is over the maximum ${g.maxLatencyRatio}`);
  }
  if (f.errorRate > g.maxErrorRate) out.push(`${at}: candidate error rate ${(f.errorRate * 100).toFixed(2)}% is over the maximum ${(g.maxErrorRate * 100).toFixed(2)}%`);
  return out;
}

/**
 * Hold until the shadow has soaked, enough devices reported and enough inputs were compared (or time out,
 * shadow.maxSeconds after the shadow was assigned, with what was reached); then every
 * hardware group is judged on its own (a candidate that is wrong only on one group's inputs must not be
 * averaged away by the others), and any failure halts.
 */
export function judgeShadow(spec: ShadowWave, g: ShadowGate, minLatencyDeltaMs: number, f: ShadowGateFigures, startedAt: number, now: number): ShadowStep {
  const left = startedAt + spec.soakSeconds * 1000 - now;
  if (left > 0) return { kind: 'hold', why: `soaking in shadow, ${Math.ceil(left / 1000)} s left` };
  if (f.devices < spec.minDevices || f.total.samples < spec.minSamples) {
    const reached = `${f.devices}/${spec.minDevices} devices reporting, ${f.total.samples}/${spec.minSamples} inputs compared`;
    if (now - startedAt >= spec.maxSeconds * 1000) {
      return { kind: 'timeout', timeout: { reason: 'SHADOW_TIMEOUT', why: `the shadow phase ran out of time (maxSeconds ${spec.maxSeconds}) with ${reached}`, devices: f.devices, minDevices: spec.minDevices, samples: f.total.samples, minSamples: spec.minSamples, maxSeconds: spec.maxSeconds } };
    }
    return { kind: 'hold', why: `waiting for shadow figures: ${reached}` };
  }
  const groups: ShadowGroupVerdict[] = f.groups.filter((x) => x.totals.samples + x.totals.errors > 0).map((x) => {
    const figures = shadowFigures(x.totals);
    return { hardware: x.hardware, devices: x.devices, figures, failures: judgeFigures(x.hardware, figures, g, minLatencyDeltaMs, x.totals.activeMs, x.totals.candidateMs) };
  });
  const failures = groups.flatMap((x) => x.failures);
  const verdict: ShadowVerdict = { passed: failures.length === 0, failures, devices: f.devices, samples: f.total.samples, figures: shadowFigures(f.total), groups };
  return failures.length ? { kind: 'halt', verdict } : { kind: 'pass', verdict };
}

/**
 * The wave's devices by the last shadow status they sent about `candidate` since the shadow was assigned:
 * refusals by reason (SHADOW_MEMORY, ...), and how many said nothing at all (offline, or not there yet).
 */
export function shadowRefusals(db: Db, campaignId: string, wave: number, candidate: string, since: number): { byReason: Record<string, number>; silent: number } {
  const rows = db.prepare(`SELECT cd.device_id,
      (SELECT se.state || ' ' || COALESCE(se.reason, '') FROM status_events se WHERE se.device_id = cd.device_id AND se.manifest_sha256 = ?
        AND se.state IN ('shadow_loaded', 'shadow_failed', 'shadow_unloaded') AND se.received_at >= ? ORDER BY se.id DESC LIMIT 1) AS last
    FROM campaign_devices cd WHERE cd.campaign_id = ? AND cd.wave = ?`).all(candidate, new Date(since).toISOString(), campaignId, wave) as { device_id: string; last: string | null }[];
  const byReason: Record<string, number> = {};
  let silent = 0;
  for (const r of rows) {
    if (r.last === null) { silent++; continue; }
    const [state, reason] = r.last.split(' ');
    if (state === 'shadow_failed') byReason[reason || 'UNKNOWN'] = (byReason[reason || 'UNKNOWN'] ?? 0) + 1;
  }
  return { byReason, silent };
}
