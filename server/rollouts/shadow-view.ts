// Shadow mode as the views show it (issue 17): the shadow a device holds (GET /v1/devices/:id), and a
// campaign's shadow waves with their figures per hardware group (GET /v1/campaigns/:id). Read-only:
// from the device's signed desired state, its shadow_* status events and the shadow windows it sent.
import type { Db } from '../db/database.ts';
import type { DesiredMessage, DesiredState, ShadowOutputSums } from '../../shared/messages.ts';
import { addWindow, emptyTotals, shadowFigures, type ShadowFigures } from '../../shared/shadow-figures.ts';
import { shadowGateFigures } from './shadow-gate.ts';

export interface DeviceShadowView {
  modelId: string | null; version: number | null; manifestSha256: string;
  /** the sample rate the signed desired state asks for (null when it names no shadow any more) */
  sampleRate: number | null;
  /** assigned: named in the desired state, no word from the device yet; loaded: held and running; failed / unloaded: as it said last */
  state: 'assigned' | 'loaded' | 'failed' | 'unloaded';
  reason: string | null; detail: string | null;
  /** when the device said it holds it (its first shadow_loaded since it last had none), server time */
  since: string | null;
  /** since then, from its telemetry: inputs compared, candidate errors, inputs dropped; agreement and latency ratio so far */
  samples: number; errors: number; dropped: number;
  agreement: number | null; latencyRatio: number | null;
}

const SHADOW_STATES = ['shadow_loaded', 'shadow_failed', 'shadow_unloaded'];

/** The shadow a device holds or was asked to hold; null when neither its desired state nor its last shadow report names one. */
export function deviceShadow(db: Db, deviceId: string, desiredJson: string | null): DeviceShadowView | null {
  let named: DesiredState['shadow'] | undefined;
  if (desiredJson) {
    try {
      named = (JSON.parse((JSON.parse(desiredJson) as DesiredMessage).director.signed) as DesiredState).shadow;
    } catch { named = undefined; }
  }
  const events = db.prepare(`SELECT state, reason, detail, manifest_sha256 AS sha, received_at AS at FROM status_events
    WHERE device_id = ? AND state IN (${SHADOW_STATES.map(() => '?').join(',')}) ORDER BY id DESC LIMIT 200`).all(deviceId, ...SHADOW_STATES) as
    { state: string; reason: string | null; detail: string | null; sha: string | null; at: string }[];
  const last = events[0];
  const sha = named?.manifestSha256 ?? (last?.state === 'shadow_loaded' ? last.sha : null);
  if (!sha) return null;
  const mine = [];
  for (const e of events) { if (e.sha !== sha) break; mine.push(e); }
  const latest = mine[0];
  // since: the oldest shadow_loaded of the latest unbroken run of them (a repeated shadow_loaded answers a new sample rate)
  let since: string | null = null;
  let run = 0;
  for (const e of mine) { if (e.state !== 'shadow_loaded') break; since = e.at; run++; }
  // The windows counted are those received after the report that came before this run (the previous
  // candidate's, or this one's unload), not after `since`: statuses and telemetry are stored by separate
  // paths, and a window with samples was stored before the shadow_loaded that preceded it on the device
  // (the device view missed 1 to 13 of 30 samples that way, test/agent/shadow-thread.test.ts).
  const before = events[run];
  const windowsFrom = before ? Date.parse(before.at) : 0;
  const state: DeviceShadowView['state'] = !latest ? 'assigned' : latest.state === 'shadow_loaded' ? 'loaded' : latest.state === 'shadow_failed' ? 'failed' : 'unloaded';
  const model = named ?? (db.prepare('SELECT model_id AS modelId, version FROM bundles WHERE manifest_sha256 = ?').get(sha) as { modelId: string; version: number } | undefined);
  const view: DeviceShadowView = {
    modelId: model?.modelId ?? null, version: model?.version ?? null, manifestSha256: sha, sampleRate: named?.sampleRate ?? null,
    state, reason: latest?.reason ?? null, detail: latest?.detail ?? null, since,
    samples: 0, errors: 0, dropped: 0, agreement: null, latencyRatio: null,
  };
  if (state === 'loaded' && since) {
    const rows = db.prepare(`SELECT samples, errors, dropped, active_ms, candidate_ms, outputs_json FROM shadow_windows
      WHERE device_id = ? AND manifest_sha256 = ? AND received_at > ?`).all(deviceId, sha, windowsFrom) as
      { samples: number; errors: number; dropped: number; active_ms: number; candidate_ms: number; outputs_json: string }[];
    const t = emptyTotals();
    for (const r of rows) addWindow(t, { samples: r.samples, errors: r.errors, dropped: r.dropped, activeMs: r.active_ms, candidateMs: r.candidate_ms, outputs: JSON.parse(r.outputs_json) as Record<string, ShadowOutputSums> });
    const f = shadowFigures(t);
    Object.assign(view, { samples: t.samples, errors: t.errors, dropped: t.dropped, agreement: f.agreement, latencyRatio: f.latencyRatio });
  }
  return view;
}

type GroupFigures = Pick<ShadowFigures, 'samples' | 'errorRate' | 'latencyRatio' | 'agreement'>;
export interface CampaignShadowWave {
  wave: number; state: string; startedAt: string; finishedAt: string | null;
  devices: number; samples: number; figures: GroupFigures;
  groups: ({ hardware: string; devices: number } & GroupFigures)[];
}

const brief = (f: ShadowFigures): GroupFigures => ({ samples: f.samples, errorRate: f.errorRate, latencyRatio: f.latencyRatio, agreement: f.agreement });

/** Every wave of the campaign run in shadow: its state and the figures so far (or at its end), per hardware group. */
export function campaignShadow(db: Db, campaignId: string, candidate: string): CampaignShadowWave[] {
  const rows = db.prepare('SELECT wave, state, started_at, finished_at FROM campaign_shadow WHERE campaign_id = ? ORDER BY wave').all(campaignId) as
    { wave: number; state: string; started_at: number; finished_at: number | null }[];
  return rows.map((r) => {
    const f = shadowGateFigures(db, campaignId, r.wave, candidate, r.started_at);
    return {
      wave: r.wave + 1, state: r.state, startedAt: new Date(r.started_at).toISOString(), finishedAt: r.finished_at === null ? null : new Date(r.finished_at).toISOString(),
      devices: f.devices, samples: f.total.samples, figures: brief(shadowFigures(f.total)),
      groups: f.groups.map((g) => ({ hardware: g.hardware, devices: g.devices, ...brief(shadowFigures(g.totals)) })),
    };
  });
}
