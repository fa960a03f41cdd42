// The rollout engine: thin around decide.ts. It assigns devices wave by wave (rate-limited), follows
// their status reports, asks decide.ts what to do, and acts: advance, halt, pause, revert, complete.
// All of a campaign's state is in SQLite, so a restarted server carries on where it stopped.
import { createHash } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { Manifest, Status } from '../../shared/messages.ts';
import { reissueBundle } from '../bundles/reissue-bundle.ts';
import type { Db } from '../db/database.ts';
import type { Statement } from 'better-sqlite3';
import type { DeviceIngest } from '../devices/device-ingest.ts';
import type { Director } from '../devices/director.ts';
import { AppError } from '../errors.ts';
import { assertAssignable } from '../keys/assignable.ts';
import type { KeyStore } from '../keys/key-store.ts';
import { CampaignRequest, type CampaignRequestInput, type CampaignTarget } from './campaign-config.ts';
import { ACTIVE_STATUSES, CampaignStore, type CampaignRow, type DeviceState } from './campaign-store.ts';
import { campaignDeviceStep } from './device-report.ts';
import { allowedActions } from './campaign-actions.ts';
import type { CampaignAction } from '../../shared/api/campaigns.ts';
import { decideEarly, decideWithFigures, nextStep, sequentialFor, waveBoundaries, type Step } from './decide.ts';
import { deviceEvidence, gateFigures, modelEvidence, modelGateFigures } from './gate-figures.ts';
import type { SequentialVerdict } from './sequential.ts';
import { judgeShadow, shadowGateFigures, shadowRefusals } from './shadow-gate.ts';
import type { ShadowWave } from './campaign-config.ts';
import { previousSet, releaseChain, resolveRelease, revertSet, type CampaignRelease, type DeviceSet } from './release-campaign.ts';

const LATE_JOINER_CHECK_MS = 5000;
/** how often a wave in flight or soaking reads its paired telemetry for the sequential test */
const EARLY_CHECK_MS = 1000;

export type { CampaignAction };

export interface EngineDeps {
  db: Db; director: Director; ingest: DeviceIngest; keys: KeyStore; log: FastifyBaseLogger;
  manifestTtlDays: number; tickMs?: number; now?: () => number;
}

interface DeviceRow { device_id: string; hardware: string | null; tags_json: string; active_model_id: string | null; active_version: number | null; active_manifest_sha256: string | null }

export class RolloutEngine {
  readonly store: CampaignStore;
  private timer: NodeJS.Timeout | null = null;
  private ticking: Promise<void> | null = null;
  private unsubscribe: (() => void) | null = null;
  private readonly now: () => number;
  /** the last 'hold' reason per campaign, for GET /v1/campaigns/:id */
  readonly holdReasons = new Map<string, string>();
  private readonly lateJoinerCheck = new Map<string, number>();
  /** the sequential test's last verdict per campaign (decision, statistic, evidence), for GET /v1/campaigns/:id */
  readonly statistics = new Map<string, SequentialVerdict>();
  private readonly earlyCheck = new Map<string, number>();
  private statusSql: { rows: Statement; done: Statement; revertFailed: Statement; reverted: Statement; updated: Statement; failed: Statement; waiting: Statement; working: Statement; resume: Statement } | null = null;

  constructor(private readonly deps: EngineDeps) {
    this.store = new CampaignStore(deps.db);
    this.now = deps.now ?? Date.now;
  }

  start(): void {
    this.unsubscribe = this.deps.ingest.onMessage((kind, deviceId, msg) => {
      if (kind === 'status') this.onStatus(deviceId, msg as Status);
    });
    this.timer = setInterval(() => void this.tick(), this.deps.tickMs ?? 500);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.unsubscribe?.();
    await this.ticking;
  }

  // ---- operator actions ----------------------------------------------------------------------

  async create(input: CampaignRequestInput, actor: string): Promise<CampaignRow> {
    const config = CampaignRequest.parse(input);
    // [#19] a release: every model of it must be assignable; its version is fixed now, so a restart or a
    // later release version never changes what this campaign rolls out
    const release = config.release ? resolveRelease(this.deps.db, config.release, config.releaseVersion) : null;
    if (release) {
      for (const m of release.models) assertAssignable(this.deps.keys, m.manifestSha256, this.deps.director.bundleEnvelope(m.manifestSha256));
      config.releaseVersion = release.version;
      config.manifestSha256 = release.models[0].manifestSha256;
    }
    const manifestSha256 = config.manifestSha256!;
    const bundle = this.deps.director.bundleEnvelope(manifestSha256);
    assertAssignable(this.deps.keys, manifestSha256, bundle);
    const targets = this.resolveTarget(config.target);
    if (targets.length === 0) throw new AppError('FLEET_ERR_NO_TARGET', 'no known device matches the campaign target', 422);
    const busy = this.store.busyDevices(targets.map((d) => d.device_id));
    if (busy.length > 0) {
      const campaigns = [...new Set(busy.map((b) => b.campaignId))];
      throw new AppError('FLEET_ERR_CAMPAIGN_CONFLICT', `${busy.length} target devices already belong to unfinished campaign(s) ${campaigns.join(', ')} (for example ${busy.slice(0, 3).map((b) => b.deviceId).join(', ')}); finish, abort or revert it first`, 409, { campaigns, devices: busy.slice(0, 50).map((b) => b.deviceId) });
    }
    const ordered = spreadByHardware(targets, manifestSha256);
    const bounds = waveBoundaries(config.waves, ordered.length);
    const devices = ordered.map((d, i) => ({ deviceId: d.device_id, wave: bounds.findIndex((b) => i < b) }));
    // (a release campaign's stored config names the release and its version, not the primary bundle: exactly one of them)
    const stored = release ? { ...config, manifestSha256: undefined } : config;
    const id = this.store.insert({ name: config.name, manifestSha256, modelId: bundle.manifest.modelId, version: bundle.manifest.version, config: stored, actor, now: this.now(), devices,
      ...(release ? { releaseJson: JSON.stringify(release) } : {}) });
    this.store.event(id, 'wave_started', 'engine', { wave: 1, devices: devices.filter((d) => d.wave === 0).length });
    await this.tick();
    return this.store.get(id);
  }

  async act(id: string, action: CampaignAction, actor: string): Promise<CampaignRow> {
    const c = this.store.get(id);
    const now = this.now();
    // one rule for what is allowed, shared with every campaign view's `actions`
    if (!allowedActions(c.status).includes(action)) throw new AppError('FLEET_ERR_CAMPAIGN_STATE', `cannot ${action} a campaign that is ${c.status}`, 409);
    switch (action) {
      case 'pause':
        this.store.setStatus(id, 'paused', now);
        break;
      case 'resume':
        this.store.setStatus(id, 'running', now);
        break;
      case 'abort':
        this.store.setStatus(id, 'aborted', now);
        await this.unloadShadow(c, 'campaign aborted'); // shadow mode: no device keeps holding the candidate
        break;
      case 'revert':
        await this.unloadShadow(c, 'campaign reverted');
        this.store.event(id, 'manual_action', actor, { action });
        await this.startRevert(c, actor, 'operator asked for a revert');
        return this.store.get(id);
      case 'promote': {
        const config = this.store.config(c);
        if (c.current_wave >= config.waves.length - 1) this.store.setStatus(id, 'completed', now);
        else {
          this.store.setWave(id, c.current_wave + 1, now);
          this.store.setStatus(id, 'running', now);
          this.store.event(id, 'wave_started', actor, { wave: c.current_wave + 2, promoted: true });
        }
        break;
      }
    }
    this.store.event(id, 'manual_action', actor, { action, from: c.status });
    await this.tick();
    return this.store.get(id);
  }

  // ---- the loop ------------------------------------------------------------------------------

  /** One pass over every campaign that is moving. Passes never overlap. */
  tick(): Promise<void> {
    // (the pass awaits before it can finish, so `ticking` is set before its finally clears it)
    this.ticking ??= (async () => {
      await null;
      try {
        for (const c of this.store.listByStatus(['running', 'reverting'])) {
          try {
            if (c.status === 'running') await this.advanceCampaign(c);
            else await this.continueRevert(c);
          } catch (err) {
            this.deps.log.error({ err, campaignId: c.campaign_id, event: 'campaign_tick_failed' }, 'campaign tick failed');
          }
        }
      } finally {
        this.ticking = null;
      }
    })();
    return this.ticking;
  }

  private async advanceCampaign(c: CampaignRow): Promise<void> {
    const config = this.configOf(c);
    const now = this.now();
    const db = this.deps.db;
    const id = c.campaign_id;

    // silent devices past their deadline count as failed
    // ([#18] a device waiting for its window or conditions is not late; once it works, from then on)
    // Issue 13: every device's clock for its deadline (assigned_at, deadline_from) was set by this engine at or
    // after the campaign's creation, so before creation + deadline no device can be late and the statement
    // (a scan of the campaign's assigned devices, every tick) has nothing to find.
    const cutoff = now - config.deviceDeadlineSeconds * 1000;
    if (!(cutoff <= Date.parse(c.created_at))) {
      this.lateSql ??= db.prepare(`UPDATE campaign_devices SET state = 'failed', reason = 'DEADLINE', finished_at = ? WHERE campaign_id = ? AND state = 'assigned'
        AND wait_reason IS NULL AND COALESCE(deadline_from, assigned_at) < ?`);
      const late = this.lateSql.run(now, id, cutoff);
      if (late.changes) this.store.event(id, 'devices_timed_out', 'engine', { devices: late.changes });
    }
    // looking for newcomers scans the device table: every few seconds is soon enough
    if (config.lateJoiners === 'include' && now - (this.lateJoinerCheck.get(id) ?? 0) >= LATE_JOINER_CHECK_MS) {
      this.lateJoinerCheck.set(id, now);
      this.addLateJoiners(c, config.target, config.waves.length);
    }

    // shadow first (issue 17): the wave's devices hold the candidate in shadow until its shadow gate passes
    const shadowSpec = config.waves[c.current_wave].shadow;
    if (shadowSpec && !(await this.shadowFirst(c, config, shadowSpec, now))) return;

    await this.assignDue(c, config.rateLimitPerMinute, now);

    const input = { status: c.status, wave: c.current_wave, waves: config.waves, gates: config.gates, progress: this.store.progress(id, c.current_wave), now };
    const release = this.releaseOf(c);
    const figuresWithout = () => {
      const { manifest } = this.deps.director.bundleEnvelope(c.manifest_sha256);
      const f = gateFigures(db, id, c.current_wave, manifest as Manifest, c.manifest_sha256, config.gates.minDriftSamples);
      // [#19] a release: every model judged by its own figures as well
      if (release) f.models = modelGateFigures(db, id, c.current_wave, release, (sha) => this.deps.director.bundleEnvelope(sha).manifest.driftBaseline, config.gates.minDriftSamples);
      return f;
    };
    const figures = () => {
      const f = figuresWithout();
      const seq = config.gates.sequential;
      if (seq.enabled) f.evidence = deviceEvidence(db, id, c.current_wave, c.manifest_sha256, seq.windowsPerDevice);
      // [#19] a release: the sequential test on each changed model's own windows as well
      if (seq.enabled && release) f.modelEvidence = modelEvidence(db, id, c.current_wave, release, seq.windowsPerDevice);
      return f;
    };
    let step: Step = nextStep(input);
    if (step.kind === 'judge') {
      const f = figures();
      step = decideWithFigures(input, f);
      if (step.kind === 'hold') {
        const seq = sequentialFor(input, f);
        if (seq) this.statistics.set(id, seq);
      }
    } else if (step.kind === 'hold' && config.gates.sequential.enabled && input.progress.updated >= config.gates.sequential.minDevices
      && now - (this.earlyCheck.get(id) ?? -Infinity) >= EARLY_CHECK_MS) {
      // the sequential test may halt a wave still in flight or soaking, or advance it before its soak ends;
      // the paired evidence first, the full figures (histograms for drift) only when the test has decided
      this.earlyCheck.set(id, now);
      const evidence = deviceEvidence(db, id, c.current_wave, c.manifest_sha256, config.gates.sequential.windowsPerDevice);
      const perModel = release ? { modelEvidence: modelEvidence(db, id, c.current_wave, release, config.gates.sequential.windowsPerDevice) } : {}; // [#19]
      const seq = sequentialFor(input, { reporting: 0, inferences: 0, errors: 0, latency: null, drift: [], evidence, ...perModel });
      if (seq) this.statistics.set(id, seq);
      if (seq && (seq.decision === 'halt' || seq.decision === 'advance')) step = decideEarly(input, { ...figuresWithout(), evidence, ...perModel }) ?? step;
    }
    if (step.kind === 'hold') { this.holdReasons.set(id, step.why); return; }
    if (step.kind === 'judge') return; // decideWithFigures never answers 'judge'
    this.holdReasons.delete(id);
    if (step.verdict.sequential) this.statistics.set(id, step.verdict.sequential);
    if (step.kind === 'halt') {
      this.store.event(id, 'gate_failed', 'engine', { wave: c.current_wave + 1, ...step.verdict });
      if (config.onGateFailure === 'revert') await this.startRevert(c, 'engine', step.verdict.failures.join('; '));
      else {
        this.store.setStatus(id, 'halted', now, { haltedAt: now });
        this.store.event(id, 'halted', 'engine', { wave: c.current_wave + 1, ...(step.verdict.failedModels ? { models: step.verdict.failedModels } : {}) });
      }
      return;
    }
    this.store.event(id, 'gate_passed', 'engine', { wave: c.current_wave + 1, ...step.verdict });
    if (step.kind === 'done') {
      this.store.setStatus(id, 'completed', now);
      this.store.event(id, 'completed', 'engine', this.store.counts(id));
      return;
    }
    this.store.setWave(id, step.toWave, now);
    this.store.event(id, 'wave_started', 'engine', { wave: step.toWave + 1 });
    await this.assignDue({ ...c, current_wave: step.toWave }, config.rateLimitPerMinute, now);
  }

  // ---- shadow first (issue 17) ---------------------------------------------------------------

  /** The wave's pending devices that run a model (other than the candidate), by the manifest they run. */
  private shadowDevices(c: CampaignRow, wave: number): Map<string, string[]> {
    const rows = this.deps.db.prepare(`SELECT cd.device_id, d.active_manifest_sha256 AS active FROM campaign_devices cd JOIN devices d ON d.device_id = cd.device_id
      WHERE cd.campaign_id = ? AND cd.wave = ? AND cd.state = 'pending' AND d.active_manifest_sha256 IS NOT NULL AND d.active_manifest_sha256 != ?`)
      .all(c.campaign_id, wave, c.manifest_sha256) as { device_id: string; active: string }[];
    const by = new Map<string, string[]>();
    for (const r of rows) {
      const list = by.get(r.active);
      if (list) list.push(r.device_id); else by.set(r.active, [r.device_id]);
    }
    return by;
  }

  /**
   * True once the wave's shadow gate has passed (then the wave is assigned as usual: a device promotes
   * the candidate from its shadow slot, no second download). Until then: assign the shadow (a desired
   * state naming the model each device runs, with the candidate in shadow), then judge its figures; a
   * failed gate unloads the candidate everywhere and halts before any device serves it.
   */
  private async shadowFirst(c: CampaignRow, config: CampaignRequest, spec: ShadowWave, now: number): Promise<boolean> {
    const db = this.deps.db;
    const id = c.campaign_id, wave = c.current_wave;
    const row = db.prepare('SELECT state, started_at FROM campaign_shadow WHERE campaign_id = ? AND wave = ?').get(id, wave) as { state: string; started_at: number } | undefined;
    if (row?.state === 'passed') return true;
    if (!row || row.state === 'failed') {
      // (a failed shadow gate halted the campaign; running again means an operator resumed it: shadow again)
      let devices = 0;
      for (const [active, ids] of this.shadowDevices(c, wave)) {
        await this.deps.director.assign(active, ids, undefined, { shadow: { manifestSha256: c.manifest_sha256, sampleRate: spec.sampleRate } });
        devices += ids.length;
      }
      db.prepare(`INSERT INTO campaign_shadow (campaign_id, wave, state, started_at) VALUES (?, ?, 'running', ?)
        ON CONFLICT(campaign_id, wave) DO UPDATE SET state = 'running', started_at = excluded.started_at, finished_at = NULL`).run(id, wave, now);
      this.store.event(id, 'shadow_started', 'engine', { wave: wave + 1, devices, sampleRate: spec.sampleRate });
      this.holdReasons.set(id, `wave ${wave + 1}: candidate assigned in shadow to ${devices} devices`);
      return false;
    }
    const figures = shadowGateFigures(db, id, wave, c.manifest_sha256, row.started_at);
    const step = judgeShadow(spec, config.gates.shadow, config.gates.minLatencyDeltaMs, figures, row.started_at, now);
    if (step.kind === 'hold') { this.holdReasons.set(id, `wave ${wave + 1} in shadow: ${step.why}`); return false; }
    const done = db.prepare('UPDATE campaign_shadow SET state = ?, finished_at = ? WHERE campaign_id = ? AND wave = ?');
    if (step.kind === 'timeout') {
      // shadow deadline: devices that refuse the shadow (SHADOW_MEMORY) or stay offline must not hold the campaign forever
      done.run('failed', now, id, wave);
      this.store.event(id, 'shadow_timeout', 'engine', { wave: wave + 1, ...step.timeout, refused: shadowRefusals(db, id, wave, c.manifest_sha256, row.started_at) });
      await this.unloadShadow(c, 'shadow phase timed out');
      this.store.setStatus(id, 'halted', now, { haltedAt: now });
      this.store.event(id, 'halted', 'engine', { wave: wave + 1, inShadow: true, reason: 'SHADOW_TIMEOUT' });
      this.holdReasons.set(id, `wave ${wave + 1}: ${step.timeout.reason}: ${step.timeout.why}`);
      return false;
    }
    if (step.kind === 'pass') {
      done.run('passed', now, id, wave);
      this.store.event(id, 'shadow_gate_passed', 'engine', { wave: wave + 1, ...step.verdict });
      return true;
    }
    done.run('failed', now, id, wave);
    this.store.event(id, 'shadow_gate_failed', 'engine', { wave: wave + 1, ...step.verdict });
    await this.unloadShadow(c, 'shadow gate failed');
    this.store.setStatus(id, 'halted', now, { haltedAt: now });
    this.store.event(id, 'halted', 'engine', { wave: wave + 1, inShadow: true });
    this.holdReasons.set(id, `wave ${wave + 1}: shadow gate failed: ${step.verdict.failures.join('; ')}`);
    return false;
  }

  /** Devices that were given the candidate in shadow get a desired state without it (the model they run). */
  private async unloadShadow(c: CampaignRow, why: string): Promise<void> {
    const rows = this.deps.db.prepare(`SELECT wave FROM campaign_shadow WHERE campaign_id = ? AND state IN ('running', 'failed')`).all(c.campaign_id) as { wave: number }[];
    let devices = 0;
    for (const { wave } of rows) {
      for (const [active, ids] of this.shadowDevices(c, wave)) {
        await this.deps.director.assign(active, ids);
        devices += ids.length;
      }
    }
    if (rows.length) this.store.event(c.campaign_id, 'shadow_unloaded', 'engine', { devices, reason: why });
  }

  /** Assign pending and retrying devices of the waves reached so far, within the rate limit. */
  private async assignDue(c: CampaignRow, ratePerMinute: number, now: number): Promise<void> {
    const db = this.deps.db;
    let budget = Infinity;
    if (ratePerMinute > 0) {
      const recent = (db.prepare('SELECT COUNT(*) AS n FROM campaign_devices WHERE campaign_id = ? AND assigned_at > ?').get(c.campaign_id, now - 60_000) as { n: number }).n;
      budget = Math.max(0, ratePerMinute - recent);
    }
    if (budget === 0) return;
    const due = db.prepare(`SELECT device_id FROM campaign_devices WHERE campaign_id = ? AND wave <= ? AND state IN ('pending', 'retry') ORDER BY ordinal LIMIT ?`)
      .all(c.campaign_id, c.current_wave, Number.isFinite(budget) ? budget : -1) as { device_id: string }[];
    if (due.length === 0) return;
    const ids = due.map((d) => d.device_id);
    // remember what each device ran before, so a revert knows where to send it back; in the director's
    // transaction: a server stopped here leaves both the desired states and these rows, or neither
    const mark = db.prepare(`UPDATE campaign_devices SET state = 'assigned', attempts = attempts + 1, assigned_at = ?, assigned_seq = ?, finished_at = NULL, wait_reason = NULL, deadline_from = NULL,
      previous_manifest_sha256 = COALESCE(previous_manifest_sha256, (SELECT active_manifest_sha256 FROM devices WHERE device_id = ? AND active_manifest_sha256 != ?))
      WHERE campaign_id = ? AND device_id = ?`);
    const release = this.releaseOf(c);
    if (release) return this.assignRelease(c, release, ids, now);
    await this.deps.director.assign(c.manifest_sha256, ids, (assigned) => {
      for (const a of assigned) mark.run(now, a.seq, a.deviceId, c.manifest_sha256, c.campaign_id, a.deviceId);
    }, { policy: this.configOf(c).policy });
  }

  private lateSql: Statement | null = null;
  /**
   * A campaign's config, parsed (JSON and schema) once per campaign rather than on every tick (issue 13):
   * config_json is written at creation and never changed; the text is compared on every use all the same,
   * so a different text is parsed again. Read only: callers never change it.
   */
  private readonly configs = new Map<string, { text: string; config: CampaignRequest }>();
  private configOf(c: CampaignRow): CampaignRequest {
    const known = this.configs.get(c.campaign_id);
    if (known && known.text === c.config_json) return known.config;
    const config = this.store.config(c);
    if (this.configs.size > 1000) this.configs.clear();
    this.configs.set(c.campaign_id, { text: c.config_json, config });
    return config;
  }

  /** [#19] a release campaign's release, parsed once per campaign (null: a campaign of one bundle) */
  private readonly releases = new Map<string, CampaignRelease | null>();
  private releaseOf(c: Pick<CampaignRow, 'campaign_id' | 'release_json'>): CampaignRelease | null {
    let r = this.releases.get(c.campaign_id);
    if (r === undefined) {
      r = c.release_json ? JSON.parse(c.release_json) as CampaignRelease : null;
      if (this.releases.size > 1000) this.releases.clear();
      this.releases.set(c.campaign_id, r);
    }
    return r;
  }

  /**
   * [#19] Assign a release's set to devices: one signed desired state each naming every model (with the
   * release's chain and the campaign's policy), and, in the director's transaction, what each device ran
   * before (its whole set) so a revert can put all of it back.
   */
  private async assignRelease(c: CampaignRow, release: CampaignRelease, ids: string[], now: number): Promise<void> {
    const db = this.deps.db;
    const shas = release.models.map((m) => m.manifestSha256);
    const { set } = this.deps.director.setOf(shas, { name: release.name, version: release.version }, releaseChain(db, release));
    const device = db.prepare('SELECT active_manifest_sha256, active_set_json, active_release_json FROM devices WHERE device_id = ?');
    const mark = db.prepare(`UPDATE campaign_devices SET state = 'assigned', attempts = attempts + 1, assigned_at = ?, assigned_seq = ?, finished_at = NULL, wait_reason = NULL, deadline_from = NULL,
      previous_manifest_sha256 = COALESCE(previous_manifest_sha256, ?), previous_set_json = COALESCE(previous_set_json, ?) WHERE campaign_id = ? AND device_id = ?`);
    await this.deps.director.assign(shas[0], ids, (assigned) => {
      for (const a of assigned) {
        const prev = previousSet(device.get(a.deviceId) as Parameters<typeof previousSet>[0], shas);
        mark.run(now, a.seq, prev?.models[0] ?? null, prev ? JSON.stringify(prev) : null, c.campaign_id, a.deviceId);
      }
    }, { policy: this.configOf(c).policy, set });
  }

  private addLateJoiners(c: CampaignRow, target: CampaignTarget, waveCount: number): void {
    // only devices the campaign does not hold yet are read (issue 13: reading every device and every
    // campaign row every 5 s was ~2% of the server's main thread in a 2,000-device rollout)
    this.outsideSql ??= this.deps.db.prepare(`SELECT device_id, hardware, tags_json, active_model_id, active_version, active_manifest_sha256 FROM devices d
      WHERE NOT EXISTS (SELECT 1 FROM campaign_devices cd WHERE cd.campaign_id = ? AND cd.device_id = d.device_id) ORDER BY device_id`);
    const fresh = matchTarget(this.outsideSql.all(c.campaign_id) as DeviceRow[], target);
    if (fresh.length === 0) return;
    const busy = new Set(this.store.busyDevices(fresh.map((d) => d.device_id)).map((b) => b.deviceId));
    const joiners = fresh.filter((d) => !busy.has(d.device_id));
    if (joiners.length === 0) return;
    const wave = Math.min(c.current_wave + 1, waveCount - 1);
    const maxOrdinal = (this.deps.db.prepare('SELECT COALESCE(MAX(ordinal), -1) AS m FROM campaign_devices WHERE campaign_id = ?').get(c.campaign_id) as { m: number }).m;
    const ins = this.deps.db.prepare(`INSERT OR IGNORE INTO campaign_devices (campaign_id, device_id, ordinal, wave, state) VALUES (?, ?, ?, ?, 'pending')`);
    this.deps.db.transaction(() => joiners.forEach((d, i) => ins.run(c.campaign_id, d.device_id, maxOrdinal + 1 + i, wave)))();
    this.store.event(c.campaign_id, 'devices_joined', 'engine', { devices: joiners.length, wave: wave + 1 });
  }

  // ---- device reports ------------------------------------------------------------------------

  private onStatus(deviceId: string, s: Status): void {
    const db = this.deps.db;
    // prepared once: every status message of a rollout comes through here
    const q = this.statusSql ??= {
      // without the campaign's config and release texts (kilobytes each, read per status before issue 13's
      // second pass): both are fixed at creation and read once per campaign (campaignFixed)
      rows: db.prepare(`SELECT cd.*, c.manifest_sha256 AS campaign_manifest FROM campaign_devices cd JOIN campaigns c ON c.campaign_id = cd.campaign_id
        WHERE cd.device_id = ? AND c.status IN (${ACTIVE_STATUSES.map(() => '?').join(',')})`),
      done: db.prepare(`UPDATE campaign_devices SET revert_state = 'done' WHERE campaign_id = ? AND device_id = ?`),
      revertFailed: db.prepare(`UPDATE campaign_devices SET revert_state = 'failed', reason = ? WHERE campaign_id = ? AND device_id = ?`),
      reverted: db.prepare(`UPDATE campaign_devices SET state = 'reverted', reason = ?, finished_at = ? WHERE campaign_id = ? AND device_id = ?`),
      updated: db.prepare(`UPDATE campaign_devices SET state = 'updated', reason = NULL, finished_at = ? WHERE campaign_id = ? AND device_id = ?`),
      failed: db.prepare(`UPDATE campaign_devices SET state = ?, reason = ?, finished_at = ? WHERE campaign_id = ? AND device_id = ?`),
      // [#18] assigned again as if for the first time: the next assignment counts the attempt back
      resume: db.prepare(`UPDATE campaign_devices SET state = 'retry', reason = ?, finished_at = NULL, attempts = MAX(attempts - 1, 0) WHERE campaign_id = ? AND device_id = ?`),
      // a device's claim that it waits counts only if what the server signed for it carries a policy
      waiting: db.prepare(`UPDATE campaign_devices SET wait_reason = ? WHERE campaign_id = ? AND device_id = ? AND state = 'assigned'
        AND (SELECT json_extract(json_extract(desired_json, '$.director.signed'), '$.policy') IS NOT NULL FROM devices WHERE device_id = campaign_devices.device_id)`),
      working: db.prepare(`UPDATE campaign_devices SET wait_reason = NULL, deadline_from = ? WHERE campaign_id = ? AND device_id = ? AND state = 'assigned' AND wait_reason IS NOT NULL`),
    };
    const rows = q.rows.all(deviceId, ...ACTIVE_STATUSES) as
      { campaign_id: string; state: string; attempts: number; assigned_seq: number | null; campaign_manifest: string;
        revert_manifest_sha256: string | null; revert_seq: number | null; revert_state: string | null; wait_reason: string | null }[];
    const now = this.now();
    for (const r of rows) {
      const fixed = this.campaignFixed(r.campaign_id);
      const step = campaignDeviceStep({
        state: r.state as DeviceState, attempts: r.attempts, assignedSeq: r.assigned_seq, campaignManifest: r.campaign_manifest,
        maxRetries: fixed.maxRetries, revertState: r.revert_state, revertManifest: r.revert_manifest_sha256,
        waitReason: r.wait_reason,
        // [#19] a release campaign: updated means the whole set active
        ...(fixed.set ? { campaignSet: fixed.set } : {}),
      }, s);
      switch (step.kind) {
        case 'revert_done': q.done.run(r.campaign_id, deviceId); break;
        case 'revert_failed': q.revertFailed.run(step.reason, r.campaign_id, deviceId); break;
        case 'reverted': q.reverted.run(step.reason, now, r.campaign_id, deviceId); break;
        case 'updated': q.updated.run(now, r.campaign_id, deviceId); break;
        case 'retry': q.failed.run('retry', step.reason, null, r.campaign_id, deviceId); break;
        case 'resume': q.resume.run(step.reason, r.campaign_id, deviceId); break;
        case 'failed': q.failed.run('failed', step.reason, now, r.campaign_id, deviceId); break;
        case 'waiting': q.waiting.run(step.reason, r.campaign_id, deviceId); break;
        case 'working': q.working.run(now, r.campaign_id, deviceId); break;
        case 'ignore': break;
      }
    }
  }

  /**
   * What a device report needs of its campaign (maxRetries, a release's set), fixed at the campaign's
   * creation: read and parsed once per campaign, not once per status.
   */
  private readonly fixed = new Map<string, { maxRetries: number; set: string[] | null }>();
  private fixedSql: Statement | null = null;
  private campaignFixed(campaignId: string): { maxRetries: number; set: string[] | null } {
    let f = this.fixed.get(campaignId);
    if (f === undefined) {
      this.fixedSql ??= this.deps.db.prepare('SELECT config_json, release_json FROM campaigns WHERE campaign_id = ?');
      const row = this.fixedSql.get(campaignId) as { config_json: string; release_json: string | null };
      const release = this.releaseOf({ campaign_id: campaignId, release_json: row.release_json });
      f = { maxRetries: (JSON.parse(row.config_json) as { maxRetries?: number }).maxRetries ?? 0, set: release ? release.models.map((m) => m.manifestSha256) : null };
      if (this.fixed.size > 1000) this.fixed.clear();
      this.fixed.set(campaignId, f);
    }
    return f;
  }

  // ---- revert --------------------------------------------------------------------------------

  private async startRevert(c: CampaignRow, actor: string, why: string): Promise<void> {
    const now = this.now();
    this.store.setStatus(c.campaign_id, 'reverting', now, { haltedAt: now });
    this.store.event(c.campaign_id, 'revert_started', actor, { reason: why });
    await this.continueRevert({ ...c, status: 'reverting', halted_at: now });
  }

  /** Send every touched device back to its previous model through a newly signed, higher version. */
  private async continueRevert(c: CampaignRow): Promise<void> {
    const db = this.deps.db;
    const id = c.campaign_id;
    const release = this.releaseOf(c);
    if (release) await this.revertRelease(c, release);
    const todo = release ? [] : db.prepare(`SELECT device_id, previous_manifest_sha256 FROM campaign_devices WHERE campaign_id = ? AND state != 'pending' AND revert_state IS NULL`).all(id) as
      { device_id: string; previous_manifest_sha256: string | null }[];
    const byPrevious = new Map<string, string[]>();
    const none: string[] = [];
    for (const t of todo) {
      if (!t.previous_manifest_sha256) none.push(t.device_id);
      else {
        // pushed in place: copying the list per device was quadratic in a 10,000-device revert (issue 13)
        const list = byPrevious.get(t.previous_manifest_sha256);
        if (list) list.push(t.device_id); else byPrevious.set(t.previous_manifest_sha256, [t.device_id]);
      }
    }
    if (none.length) {
      const mark = db.prepare(`UPDATE campaign_devices SET revert_state = 'no_previous' WHERE campaign_id = ? AND device_id = ?`);
      db.transaction(() => none.forEach((d) => mark.run(id, d)))();
    }
    for (const [previous, deviceIds] of byPrevious) {
      const existing = db.prepare(`SELECT revert_manifest_sha256 AS m FROM campaign_devices WHERE campaign_id = ? AND previous_manifest_sha256 = ? AND revert_manifest_sha256 IS NOT NULL LIMIT 1`).get(id, previous) as { m: string } | undefined;
      const revertManifest = existing?.m ?? reissueBundle({ db, keys: this.deps.keys, manifestTtlDays: this.deps.manifestTtlDays }, previous, { revertOf: true }).manifestSha256;
      const mark = db.prepare(`UPDATE campaign_devices SET revert_state = 'assigned', revert_manifest_sha256 = ?, revert_seq = ? WHERE campaign_id = ? AND device_id = ?`);
      await this.deps.director.assign(revertManifest, deviceIds, (assigned) => assigned.forEach((a) => mark.run(revertManifest, a.seq, id, a.deviceId)));
    }
    const open = (db.prepare(`SELECT COUNT(*) AS n FROM campaign_devices WHERE campaign_id = ? AND revert_state = 'assigned'`).get(id) as { n: number }).n;
    if (open === 0) {
      const now = this.now();
      this.store.setStatus(id, 'reverted', now);
      const rows = db.prepare(`SELECT revert_state AS s, COUNT(*) AS n FROM campaign_devices WHERE campaign_id = ? AND revert_state IS NOT NULL GROUP BY revert_state`).all(id) as { s: string; n: number }[];
      this.store.event(id, 'reverted', 'engine', { ...Object.fromEntries(rows.map((r) => [r.s, r.n])), durationMs: now - (c.halted_at ?? now) });
    }
  }

  /**
   * [#19] A release campaign's revert: every touched device gets back the set it ran before, all models as
   * one signed assignment (with its release and that release's chain), models the release replaced signed
   * again at higher versions (release-campaign.ts revertSet). Devices with the same previous set share one.
   */
  private async revertRelease(c: CampaignRow, release: CampaignRelease): Promise<void> {
    const db = this.deps.db;
    const id = c.campaign_id;
    const shas = release.models.map((m) => m.manifestSha256);
    const todo = db.prepare(`SELECT device_id, previous_set_json FROM campaign_devices WHERE campaign_id = ? AND state != 'pending' AND revert_state IS NULL`).all(id) as
      { device_id: string; previous_set_json: string | null }[];
    const none = todo.filter((t) => !t.previous_set_json).map((t) => t.device_id);
    if (none.length) {
      const mark = db.prepare(`UPDATE campaign_devices SET revert_state = 'no_previous' WHERE campaign_id = ? AND device_id = ?`);
      db.transaction(() => none.forEach((d) => mark.run(id, d)))();
    }
    const byPrevious = new Map<string, string[]>();
    for (const t of todo) if (t.previous_set_json) byPrevious.set(t.previous_set_json, [...(byPrevious.get(t.previous_set_json) ?? []), t.device_id]);
    const reissued = new Map<string, string>();
    const reissue = (sha: string) => {
      let n = reissued.get(sha);
      if (!n) reissued.set(sha, n = reissueBundle({ db, keys: this.deps.keys, manifestTtlDays: this.deps.manifestTtlDays }, sha, { revertOf: true }).manifestSha256);
      return n;
    };
    for (const [previousJson, deviceIds] of byPrevious) {
      const existing = db.prepare(`SELECT revert_set_json AS s FROM campaign_devices WHERE campaign_id = ? AND previous_set_json = ? AND revert_set_json IS NOT NULL LIMIT 1`).get(id, previousJson) as { s: string } | undefined;
      const back: DeviceSet = existing ? JSON.parse(existing.s) : revertSet(JSON.parse(previousJson) as DeviceSet, shas, reissue);
      const backJson = existing?.s ?? JSON.stringify(back);
      const { set } = this.deps.director.setOf(back.models, back.release ?? undefined, releaseChain(db, back.release));
      const mark = db.prepare(`UPDATE campaign_devices SET revert_state = 'assigned', revert_manifest_sha256 = ?, revert_seq = ?, revert_set_json = ? WHERE campaign_id = ? AND device_id = ?`);
      await this.deps.director.assign(back.models[0], deviceIds, (assigned) => assigned.forEach((a) => mark.run(back.models[0], a.seq, backJson, id, a.deviceId)), { set });
    }
  }

  // ---- targets -------------------------------------------------------------------------------

  resolveTarget(t: CampaignTarget): DeviceRow[] {
    return matchTarget(this.deps.db.prepare('SELECT device_id, hardware, tags_json, active_model_id, active_version, active_manifest_sha256 FROM devices ORDER BY device_id').all() as DeviceRow[], t);
  }
  private outsideSql: Statement | null = null;
}

/** The devices among `rows` that a campaign's target names. */
function matchTarget(rows: DeviceRow[], t: CampaignTarget): DeviceRow[] {
  const ids = t.deviceIds ? new Set(t.deviceIds) : null;
  return rows.filter((d) => {
    if (ids && !ids.has(d.device_id)) return false;
    if (t.hardware && !t.hardware.includes(d.hardware ?? '')) return false;
    if (t.tags) {
      const tags = JSON.parse(d.tags_json) as string[];
      if (!t.tags.every((tag) => tags.includes(tag))) return false;
    }
    if (t.currentModel) {
      if (d.active_model_id !== t.currentModel.modelId) return false;
      if (t.currentModel.version !== undefined && d.active_version !== t.currentModel.version) return false;
    }
    return true;
  });
}

/**
 * Order devices so that every prefix spreads over hardware classes (round-robin, each class in a stable
 * pseudo-random order): a canary of five devices covers up to five classes, so a model that breaks on one
 * class halts in the first wave.
 */
export function spreadByHardware<T extends { device_id: string; hardware: string | null }>(devices: T[], salt: string): T[] {
  const key = (d: T) => createHash('sha256').update(`${salt}:${d.device_id}`).digest('hex');
  const groups = new Map<string, T[]>();
  for (const d of devices) {
    const list = groups.get(d.hardware ?? '');
    if (list) list.push(d); else groups.set(d.hardware ?? '', [d]);
  }
  const lists = [...groups.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([, list]) => list.map((d) => ({ d, k: key(d) })).sort((a, b) => a.k.localeCompare(b.k)).map((x) => x.d));
  const out: T[] = [];
  for (let i = 0; out.length < devices.length; i++) for (const l of lists) if (i < l.length) out.push(l[i]);
  return out;
}
