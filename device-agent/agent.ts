// The device agent: takes the retained desired state over MQTT, verifies everything before it touches
// the bytes, installs into the inactive slot, health-checks, switches atomically, watches the new model
// through a probation window (reverting to the previous slot if it misbehaves), and reports why.
// The constructor does nothing; start() repairs what a crash left, restores the last good model and
// connects; stop() undoes it.
// A device may run several models (issue 19): a slot then holds a set (the primary model plus others,
// possibly a release), installed, switched (one state write), probed and reverted as one. Each model is
// served by name (infer(modelId, feeds)); a model the new set keeps unchanged keeps its loaded session,
// so updating one model never interrupts another.
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { b64, sha256Hex } from '../shared/crypto.ts';
import { envelopeDigest } from '../shared/envelope.ts';
import { DesiredMessage, type ActiveModel, type Chain, type Manifest, type Status, type Telemetry, type UpdateState } from '../shared/messages.ts';
import { UpdateRefused, type ReasonCode } from '../shared/reason-codes.ts';
import { topics } from '../shared/topics.ts';
import { verifyDesired, verifyKeySet, SignatureCache, type TrustState, type VerifiedDesired } from '../shared/verify-desired.ts';
import { AGENT_VERSION } from '../shared/version.ts';
import { connectBounded } from './bounded-mqtt.ts';
import { subscribeChecked } from './subscribe-check.ts';
import { pinnedFetch, readCaFile } from './pinned-fetch.ts';
import type { AgentConfig } from './config.ts';
import { stageArtifact, type Staged } from './artifact-fetch.ts';
import { stageFromDelta } from './delta.ts'; // [#18 delta hook]
import { freeDiskBytes, UpdateGate, WaitInterrupted } from './conditions.ts'; // [#18 conditions hook]
import type { UpdateStep } from '../shared/update-policy.ts';
import { disk } from './disk.ts';
import { FreshnessWatch } from './freshness.ts';
import { fsyncDir, writeFileDurable } from './durable-file.ts';
import { healthVectors } from './golden-set.ts';
import { DeviceIdentity, enrollDevice, isEnrolled, readDeviceKey } from './identity.ts';
import { runHealthCheck } from './health-check.ts';
import { deviceMsOf, isNotAModelError, OrtRuntime, type LoadedModel, type ModelRuntime } from './model-runtime.ts';
import { Probation, type ProbationVerdict } from './probation.ts';
import { checkFeeds } from './input-check.ts';
import { checkChainHealth } from './chain-check.ts';
import { runChain } from '../shared/chain.ts';
import { planRecovery } from './recovery.ts';
import { realSleep } from './backoff.ts';
import { checkSlots, refetchSlot } from './slot-repair.ts';
import { StatusReporter } from './status-reporter.ts';
import { abandonUpdate, claimSlot, failProbation, finishRepair, switchTo } from './update-steps.ts';
import type { Feeds, Outputs } from '../runtime/onnx-session.ts';
import { SlotFiles } from './slot-files.ts';
import { Staging } from './staging.ts';
import { slotModels, StateStore, type AgentState, type ProbationRecord, type RepairRecord, type SlotModel, type SlotName, type SlotRecord } from './state-store.ts';
import { TelemetryOutbox } from './telemetry-outbox.ts';
import { TelemetryWindow } from './telemetry-window.ts';
import { timedChain } from './chain-telemetry.ts';
import { ShadowRunner, type ShadowPhase } from './shadow.ts'; // shadow mode (issue 17)

/**
 * Points of an update where deps.onPhase is called, in order. The crash test kills the process at each
 * of them; the simulator may hook them for fault profiles. The agent itself never acts on them.
 */
export type UpdatePhase =
  | 'download:start' | 'download:chunk' | 'download:done' | 'verify:done' | 'health:done' | 'write:manifest' | 'write:artifact'
  | 'switch:before' | 'switch:after' | 'probation:start' | 'probation:inference' | 'probation:end'
  | 'revert:before' | 'revert:after'
  | ShadowPhase; // shadow mode (device-agent/shadow.ts)

/** `n`: the chunk (download:chunk), the inference (probation:inference), or which model of a set (the other install phases of a multi-model install) */
export interface PhaseInfo { modelId?: string; version?: number; artifactSha256?: string; n?: number }

export interface AgentDeps {
  runtime?: ModelRuntime;
  /** shared between simulated devices so a fleet-wide manifest is verified once per process */
  signatureCache?: SignatureCache;
  /** transport for artifact downloads (fault injection: slow, truncated, tampered); it replaces the caFile-pinned one */
  fetch?: typeof fetch;
  now?: () => number;
  random?: () => number;
  /** the clock retries wait on (slot repair backoff); tests pass one they move themselves */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  log?: (event: string, fields: Record<string, unknown>) => void;
  /** called synchronously at each UpdatePhase */
  onPhase?: (phase: UpdatePhase, info: PhaseInfo) => void;
  /** [#18] the clock maintenance windows are judged by (tests move it; defaults to `now`) */
  windowClock?: () => number;
}

/** One model being served: its own session and in-flight count (a model kept by the next set keeps both). */
interface Unit { record: SlotModel; model: LoadedModel; manifest: Manifest; inflight: number; retired: boolean }
/** The active slot, loaded: its models, the primary first (`manifest` is the primary's). */
interface Current { slot: SlotName; record: SlotRecord; units: Unit[]; manifest: Manifest }

/** infer(modelId, …) for a model the device does not run */
export class UnknownModel extends Error {
  readonly code = 'UNKNOWN_MODEL';
  constructor(readonly modelId: string, running: string[]) {
    super(`this device runs no model ${modelId} (it runs: ${running.join(', ') || 'none'})`);
    this.name = 'UnknownModel';
  }
}

/** What identifies a set: every manifest in order, and the release; a single model is its manifest digest. */
function setKey(primarySha256: string, extras: readonly string[], release?: { name: string; version: number }, chain?: unknown): string {
  return [primarySha256, ...extras].join('+') + (release ? `@${release.name}:${release.version}` : '') + (chain ? `|${sha256Hex(JSON.stringify(chain))}` : '');
}
const withoutGolden = (c: Chain | undefined) => (c ? { steps: c.steps } : undefined);
const recordKey = (r: SlotRecord) => setKey(r.manifestSha256, (r.extra ?? []).map((m) => m.manifestSha256), r.release, r.chain);
/** `record` is replaced, never changed in place, when the revert target goes away */
interface OnProbation { tracker: Probation; record: ProbationRecord; current: Current; settling: boolean }

const TELEMETRY_SEQ_BLOCK = 1000;
/** Node's TLS verification failures: the server is not who the pinned CA vouches for */
const TLS_REFUSALS: ReadonlySet<string> = new Set([
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_UNTRUSTED', 'CERT_REJECTED',
]);
/** how long stop() waits for an update or a probation decision in progress, then for the broker */
const STOP_WORK_MS = 2000;
const STOP_LINK_MS = 1500;

/** true if `p` settled within `ms` */
function within(ms: number, p: Promise<unknown>): Promise<boolean> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.then(() => true, () => true),
    new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), ms); }),
  ]).finally(() => clearTimeout(timer));
}
/** reasons that mean "could not install" rather than "refused to trust" */
const FAILED_REASONS: ReadonlySet<ReasonCode> = new Set(['HEALTH_CHECK_FAILED', 'LATENCY_BUDGET', 'LOAD_FAILED', 'DOWNLOAD_FAILED', 'DISK_FULL']);

export class FleetAgent extends EventEmitter {
  private readonly store: StateStore;
  private readonly slots: SlotFiles;
  private readonly staging: Staging;
  private readonly runtime: ModelRuntime;
  private readonly cache: SignatureCache;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly log: (event: string, fields: Record<string, unknown>) => void;
  private readonly onPhase: (phase: UpdatePhase, info: PhaseInfo) => void;
  /** the pinned CA (config.caFile), for the broker's and the artifact server's certificates */
  private readonly ca: string | undefined;
  private readonly fetch: typeof fetch | undefined;
  private state!: AgentState;
  private current: Current | null = null;
  private probation: OnProbation | null = null;
  private probationTimer: NodeJS.Timeout | null = null;
  private client: MqttClient | null = null;
  private pending: Buffer | null = null;
  private working: Promise<void> | null = null;
  // Installs and probation decisions (a revert) touch the same slots and state: never both at once.
  private updating: Promise<void> | null = null;
  private deciding: Promise<void> | null = null;
  /** damaged slots fetched again after the start; installs wait for it */
  private repairing: Promise<void> | null = null;
  private window!: TelemetryWindow;
  private outbox!: TelemetryOutbox;
  /** outbox seq -> connection generation it was published on (resent after a reconnect) */
  private readonly inflight = new Map<number, number>();
  private generation = 0;
  private telemetryTimer: NodeJS.Timeout | null = null;
  private telemetrySeq = 0;
  private stopped = false;
  private readonly stopping = new AbortController();
  private readonly status: StatusReporter;
  /** shadow mode (issue 17): the candidate held next to the active model */
  private readonly shadow: ShadowRunner;
  /** how the agent proves who it is: tokens from its key pair, a legacy secret, or nothing; null until start() */
  identity: DeviceIdentity | null = null;
  private lastClockCheck = -Infinity;
  private clockCheck: Promise<number | null> | null = null;
  /** freeze detection (device-agent/freshness.ts): null until start() */
  freshness: FreshnessWatch | null = null;
  /** [#18] maintenance windows and conditions: the device's code reports power, network and busy here */
  readonly gate: UpdateGate;

  constructor(readonly config: AgentConfig, private readonly deps: AgentDeps = {}) {
    super();
    this.store = new StateStore(config.dataDir);
    this.slots = new SlotFiles(config.dataDir);
    this.staging = new Staging(config.dataDir);
    this.runtime = deps.runtime ?? new OrtRuntime();
    this.cache = deps.signatureCache ?? new SignatureCache(64);
    this.now = deps.now ?? Date.now;
    this.random = deps.random ?? Math.random;
    this.log = deps.log ?? (() => {});
    this.onPhase = deps.onPhase ?? (() => {});
    this.ca = config.caFile ? readCaFile(config.caFile) : undefined;
    this.fetch = deps.fetch ?? (this.ca ? pinnedFetch(this.ca) : undefined);
    this.status = new StatusReporter({
      deviceId: config.deviceId, now: this.now, state: () => this.state, save: (fsync) => this.store.save(this.state, fsync),
      client: () => this.client, generation: () => this.generation, active: () => this.active, log: this.log,
      emit: (s) => this.emit('status', s),
    });
    this.gate = new UpdateGate({ timeZone: config.timeZone, now: deps.windowClock ?? this.now, freeDiskBytes: () => freeDiskBytes(config.dataDir), pollMs: config.conditionPollSeconds * 1000 });
    // shadow hook: the runner gets the agent's parts; it never touches `current` or probation
    this.shadow = new ShadowRunner({
      deviceId: config.deviceId, config, now: this.now, random: this.random, status: this.status,
      log: this.log, phase: (p, info) => this.phase(p, info), state: () => this.state, save: () => this.store.save(this.state),
      slots: this.slots, staging: this.staging, runtime: this.runtime, fetch: this.fetch, authorization: this.authorization,
      signal: this.stopping.signal,
      thread: config.shadow.thread && !deps.runtime, // shadow hook: an injected runtime (the simulator's shared one) keeps the candidate inline
    });
  }

  /** the candidate held in shadow (issue 17), or null */
  get shadowCandidate() { return this.shadow.candidate; }
  /** shadow inputs compared, dropped and failed since the candidate was loaded (null without one) */
  get shadowCounts() { return this.shadow.counts; }
  /** true when a shadow candidate runs in its own worker thread (config shadow.thread) */
  get shadowInThread(): boolean { return this.shadow.inThread; }

  /** the last status reported (progress or outcome) */
  get lastStatus(): Status | null { return this.status.last; }

  get deviceId(): string { return this.config.deviceId; }

  get active(): ActiveModel | null {
    return this.current ? { modelId: this.current.record.modelId, version: this.current.record.version, manifestSha256: this.current.record.manifestSha256 } : null;
  }

  /** every model the device serves, the primary first (one entry on a single-model device, none before the first install) */
  get activeSet(): ActiveModel[] {
    return (this.current?.units ?? []).map((u) => ({ modelId: u.record.modelId, version: u.record.version, manifestSha256: u.record.manifestSha256 }));
  }

  /** the release the active set is, if it is one */
  get release(): { name: string; version: number } | null { return this.current?.record.release ?? null; }

  /** true while the active model is still on probation */
  get onProbation(): boolean { return this.probation !== null; }

  /** telemetry windows on disk waiting for the broker's acknowledgement */
  get outboxSize(): number { return this.outbox?.size ?? 0; }

  /** Repair what a crash left, restore the last good model from disk, then connect. */
  async start(): Promise<void> {
    this.slots.ensure();
    this.staging.ensure();
    this.slots.removeTemps();
    await this.setUpIdentity();
    const found = this.store.load(this.config.rootPublicKey);
    // check every recorded slot before deciding anything (reads only: a damaged slot whose signed
    // manifest is intact is fetched again after the start, while the device serves what it fell back to)
    const disk = checkSlots(found, this.slots, (event, fields) => this.log(event, { deviceId: this.deviceId, ...fields }));
    const recovery = planRecovery(found, this.now(), disk.checks, disk.repairable.map((r) => r.slot));
    this.state = recovery.state;
    // Telemetry sequence numbers are reserved in blocks so a crash never reuses one.
    this.telemetrySeq = this.state.telemetrySeq;
    this.state.telemetrySeq += TELEMETRY_SEQ_BLOCK;
    // what recovery found and decided is reported from the same write that records it
    const boot = recovery.reports.map((r) => this.status.queue(r.state, r.extra));
    this.store.save(this.state);
    for (const slot of recovery.clearSlots) this.slots.clear(slot);
    for (const r of recovery.reports) this.log('crash_recovery', { deviceId: this.deviceId, state: r.state, ...r.extra });

    await this.restoreActive();
    await this.shadow.restore(); // shadow hook: a candidate on record is loaded again from its slot
    this.window = new TelemetryWindow(this.now);
    this.window.setBaseline(this.current?.manifest.driftBaseline);
    const p = this.state.probation;
    if (p && this.current?.slot === p.slot) this.beginProbation(this.current, p);
    else if (p) { this.state.probation = null; this.store.save(this.state); }

    for (const b of boot) this.status.announce(b);
    this.outbox = new TelemetryOutbox(join(this.config.dataDir, 'outbox'), this.config.telemetryOutboxMax);
    this.outbox.open();
    this.freshness = new FreshnessWatch({
      maxAgeMs: this.config.freshnessMaxAgeSeconds * 1000, now: () => this.now(), trust: () => this.trust(), cache: this.cache,
      log: (event, fields) => this.log(event, { deviceId: this.deviceId, ...fields }),
      onChange: () => void this.client?.publish(topics.presence(this.deviceId), JSON.stringify(this.presence(true)), { qos: 1, retain: true }),
    });
    this.freshness.start();
    this.connect();
    this.telemetryTimer = setInterval(() => this.sendTelemetry(), this.config.telemetryWindowMs * (0.9 + 0.2 * this.random()));
    if (this.state.repairs.length) this.repairing = this.runRepairs().finally(() => { this.repairing = null; });
  }

  /** true while damaged slots are being fetched again */
  get repairsPending(): boolean { return this.repairing !== null; }

  /** Wait until the background slot repairs (if any) are over. */
  async repaired(): Promise<void> { await this.repairing; }

  /**
   * Bounded whatever the broker does (unreachable, half-open): a download in progress is aborted (its
   * partial file stays in staging), other work gets STOP_WORK_MS, the link STOP_LINK_MS, then it is cut.
   * Unsent outcomes are in the state record and unsent telemetry in its outbox, both on disk.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.stopping.abort();
    if (this.telemetryTimer) clearInterval(this.telemetryTimer);
    this.freshness?.stop();
    this.clearProbationTimer();
    this.pending = null;
    await within(STOP_WORK_MS, Promise.allSettled([this.working, this.deciding, this.repairing]));
    if (!this.state) return; // never started
    if (this.state.probation) {
      // a deliberate stop is not a crash: the next start watches the model again instead of reverting
      this.state.probation.cleanStop = true;
      this.store.save(this.state);
    }
    // the unfinished window goes to the outbox, to be sent after the next start
    if (this.window && this.outbox && this.window.count > 0) this.outbox.add(this.window.cut(this.deviceId, this.nextTelemetrySeq(), this.active));
    if (this.client) {
      const client = this.client;
      this.client = null;
      const closed = await within(STOP_LINK_MS, new Promise<void>((resolve) => {
        const done = () => resolve();
        // a clean disconnect: publish offline ourselves, since the will only fires on an unclean one
        if (client.connected) client.publish(topics.presence(this.deviceId), JSON.stringify(this.presence(false)), { qos: 1, retain: true }, () => client.end(false, {}, done));
        else client.end(true, {}, done);
      }));
      // a broker that never answers (half-open link): cut the socket instead of waiting for it
      if (!closed) await within(500, new Promise<void>((resolve) => client.end(true, {}, () => resolve())));
    }
    this.probation = null;
    await this.shadow.stop(); // shadow hook
    if (this.current) {
      const c = this.current;
      this.current = null;
      await Promise.all(c.units.map((u) => u.model.release()));
    }
  }

  /**
   * Inference for the device's own code; never answered by a model that has not passed its health check.
   * Throws InputMismatch (input-check.ts) for inputs that do not fit the manifest's io signature.
   */
  async infer(feeds: Feeds): Promise<Outputs>;
  /** One model of a multi-model device, by id (throws UnknownModel for a model it does not run). */
  async infer(modelId: string, feeds: Feeds): Promise<Outputs>;
  async infer(a: Feeds | string, b?: Feeds): Promise<Outputs> {
    const c = this.current;
    if (!c) throw new Error('no model is active on this device yet');
    const feeds = typeof a === 'string' ? b! : a;
    const u = typeof a === 'string' ? c.units.find((x) => x.record.modelId === a) : c.units[0];
    if (!u) throw new UnknownModel(a as string, c.units.map((x) => x.record.modelId));
    return this.runUnit(c, u, feeds);
  }

  /**
   * The active set's chain in one call (its outputs are the last step's). Every step runs on the set that
   * was active when the call began, even if a switch happens meanwhile: a chain never mixes two sets.
   */
  async inferChain(feeds: Feeds): Promise<Outputs> {
    const c = this.current;
    if (!c) throw new Error('no model is active on this device yet');
    const chain = c.record.chain;
    if (!chain) throw new UnknownModel('chain', c.units.map((x) => x.record.modelId));
    // [#19] per-chain telemetry hook (device-agent/chain-telemetry.ts): the call end to end, once
    return timedChain(this.window, () => runChain(chain, feeds, (id, f) => this.runUnit(c, c.units.find((x) => x.record.modelId === id)!, f as Feeds)));
  }

  /** true if the active set has a chain */
  get hasChain(): boolean { return !!this.current?.record.chain; }

  private async runUnit(c: Current, u: Unit, feeds: Feeds): Promise<Outputs> {
    // a caller's mistake is refused here: it must not count against the model (probation, telemetry)
    checkFeeds(feeds, u.manifest.io.inputs);
    u.inflight++;
    const inCall = this.shadow.enterCall(); // shadow hook: a candidate's thread waits while the caller runs a model
    const t0 = performance.now();
    // the window's drift histograms are the primary model's (its baseline); [#19] each model of a set has its own in its per-model figures
    const primary = u === c.units[0];
    try {
      const out = await u.model.run(feeds);
      const ms = deviceMsOf(out) ?? performance.now() - t0;
      // s15-flake: a call that began on a set switched out meanwhile is the previous model's answer; the histograms are
      // the new model's since the switch (swapTo), so it is counted but not binned (under load nearly every device had
      // one in flight at its switch: the drift gate's false alarms on good candidates; test/agent/switch-histograms.test.ts)
      const binned = primary && this.current === c;
      this.window.record(ms, true, binned ? feeds : undefined, binned ? out : undefined);
      if (c.units.length > 1) this.window.recordModel(u.record, ms, true, feeds, out, u.manifest.driftBaseline); // [#19] per-model telemetry hook (with the model's own drift histograms)
      if (this.probation) this.probe(c, ms, true);
      // shadow hook: maybe queue this input for the candidate (no await); a shadow candidate is for the primary model
      if (binned) this.shadow.offer(feeds, out, ms); // (not a call that began on a set switched out meanwhile: its answer is the previous model's)
      return out;
    } catch (err) {
      if (isNotAModelError(err)) throw err; // the simulator's own failure (model-runtime.ts): not the model's
      this.window.record(0, false);
      if (c.units.length > 1) this.window.recordModel(u.record, 0, false); // [#19] per-model telemetry hook
      if (this.probation) this.probe(c, 0, false);
      throw err;
    } finally {
      this.shadow.leaveCall(inCall); // shadow hook
      u.inflight--;
      if (u.retired && u.inflight === 0) void u.model.release();
    }
  }

  /** Wait until the agent reports a status matching the predicate. */
  waitForStatus(pred: (s: Status) => boolean, timeoutMs = 30_000): Promise<Status> {
    if (this.lastStatus && pred(this.lastStatus)) return Promise.resolve(this.lastStatus);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.off('status', on); reject(new Error(`${this.deviceId}: no matching status within ${timeoutMs} ms (last: ${JSON.stringify(this.lastStatus)})`)); }, timeoutMs);
      const on = (s: Status) => { if (pred(s)) { clearTimeout(timer); this.off('status', on); resolve(s); } };
      this.on('status', on);
    });
  }

  // ---- identity ---------------------------------------------------------------------------

  /**
   * Enroll on first start when the config carries an enrollment token, then load the credential: the
   * key pair in the data folder (tokens), or the legacy secret from the config, or none (development:
   * the server must allow unenrolled devices).
   */
  private async setUpIdentity(): Promise<void> {
    const { dataDir, deviceId, deviceSecret, enrollmentToken, serverUrl } = this.config;
    if (!deviceSecret && enrollmentToken && !isEnrolled(dataDir)) {
      const { publicKey } = await enrollDevice({ serverUrl, deviceId, dataDir, enrollmentToken, fetch: this.fetch });
      this.log('enrolled', { deviceId, publicKey });
    }
    this.identity = new DeviceIdentity(deviceId, deviceSecret ? null : readDeviceKey(dataDir), deviceSecret, () => this.now(), this.config.deviceTokenLifetimeSeconds);
  }

  /** "Bearer <token>" for an artifact request (one token for the requests of up to 30 s: identity.ts), or undefined */
  private readonly authorization = (): string | undefined => this.identity?.bearer();

  /** after a refused CONNECT: align token times with the server's clock (at most every 30 s) */
  private async checkClock(): Promise<void> {
    if (this.clockCheck || performance.now() - this.lastClockCheck < 30_000 || !this.identity) return;
    this.clockCheck = this.identity.learnServerClock(this.config.serverUrl, this.fetch);
    const offset = await this.clockCheck;
    this.clockCheck = null;
    this.lastClockCheck = performance.now();
    if (offset) this.log('clock_offset', { deviceId: this.deviceId, offsetMs: offset });
  }

  // ---- connection and reports -------------------------------------------------------------

  private connect(): void {
    // Reconnects back off exponentially from reconnectMinMs to reconnectMaxMs, with jitter, and start
    // over after a good connection: a fleet that lost its broker must not come back all at once.
    const jittered = (ms: number) => Math.round(ms * (1 + this.random()));
    let backoff = this.config.reconnectMinMs;
    const reconnectPeriod = jittered(backoff);
    const refused = (why: string) => this.log('mqtt_packet_refused', { deviceId: this.deviceId, why });
    const client = connectBounded(this.config.mqttUrl, this.config.maxIncomingPacketBytes, refused, {
      clientId: this.deviceId,
      clean: true,
      keepalive: this.config.keepaliveSeconds,
      reconnectPeriod,
      connectTimeout: 10_000,
      protocolVersion: 4,
      // a refused CONNECT (bad, expired or revoked credential) is retried with the same backoff, each
      // time with a fresh token: the clock may have been corrected, or an admin registered a new key
      reconnectOnConnackError: true,
      ...(this.identity?.kind !== 'none' ? { username: this.deviceId, password: this.identity?.credential('mqtt') } : {}),
      // mqtts:// with a pinned CA trusts that CA only; without one, Node's default store (rejectUnauthorized is Node's default too)
      ...(this.ca ? { ca: this.ca, rejectUnauthorized: true } : {}),
      will: { topic: topics.presence(this.deviceId), payload: Buffer.from(JSON.stringify(this.presence(false))), qos: 1, retain: true },
    });
    this.client = client;
    // mqtt.js sends options.password on every CONNECT: a device token is good for one session, so each
    // reconnect gets a fresh one ('reconnect' is emitted just before the CONNECT is written)
    client.on('reconnect', () => {
      if (this.identity?.kind === 'key') client.options.password = this.identity.credential('mqtt');
    });
    client.on('close', () => {
      // mqtt.js reads options.reconnectPeriod each time it schedules the next attempt
      backoff = Math.min(backoff * 2, this.config.reconnectMaxMs);
      client.options.reconnectPeriod = Math.min(jittered(backoff), this.config.reconnectMaxMs * 2);
    });
    client.on('connect', () => {
      backoff = this.config.reconnectMinMs;
      client.options.reconnectPeriod = jittered(backoff);
      this.generation++;
      client.publish(topics.presence(this.deviceId), JSON.stringify(this.presence(true)), { qos: 1, retain: true });
      // a hello says where the device stands; then the outcomes not yet acknowledged, oldest first
      this.status.progress(this.current ? 'active' : 'idle', {});
      this.status.flush();
      // issue 15 hook: a refused SUBACK (a broker cluster mid-failover) is retried, then the link dropped
      subscribeChecked(client, [topics.desired(this.deviceId), topics.freshness()], { qos: this.config.mqttSubscribeQos, onRefused: (why, attempt) => this.log('mqtt_subscribe_refused', { deviceId: this.deviceId, why, attempt }) });
      this.flushOutbox();
      this.emit('connected');
    });
    client.on('message', (topic, payload) => (topic === topics.freshness() ? this.freshness?.onMessage(payload) : this.onDesired(payload)));
    client.on('error', (err) => {
      const code = (err as { code?: unknown }).code;
      if (typeof code === 'string' && TLS_REFUSALS.has(code)) {
        // the broker's certificate does not chain to the pinned CA (or names another host): refuse, retry later
        this.log('mqtt_tls_refused', { deviceId: this.deviceId, code, err: err.message, caFile: this.config.caFile ?? null });
        return;
      }
      this.log('mqtt_error', { deviceId: this.deviceId, err: err.message });
      // CONNACK 4/5: the broker refused the credential; a clock far off is the one cause the device can fix
      if ((code === 4 || code === 5) && this.identity?.kind === 'key') void this.checkClock();
    });
  }

  private presence(online: boolean) {
    return { deviceId: this.deviceId, online, ts: new Date(this.now()).toISOString(), hardware: this.config.hardware, tags: [...this.config.tags], agentVersion: AGENT_VERSION,
      ...(this.freshness ? { freshness: this.freshness.view() } : {}) };
  }

  private phase(phase: UpdatePhase, info: PhaseInfo = {}): void {
    this.onPhase(phase, info);
  }

  // ---- telemetry: window -> durable outbox -> QoS 1 publish -> removed on PUBACK -------------

  private sendTelemetry(): void {
    if (this.stopped) return;
    const t = this.window.cut(this.deviceId, this.nextTelemetrySeq(), this.active);
    const shadow = this.shadow.cut(); // shadow hook: the candidate's figures ride with the window
    if (shadow) t.shadow = shadow;
    let text: string | undefined;
    try {
      text = this.outbox.add(t, !this.client?.connected);
    } catch (err) {
      this.log('outbox_error', { deviceId: this.deviceId, err: (err as Error).message });
    }
    this.emit('telemetry', t);
    this.publishWindow(t, text);
  }

  // [s15-agent] `text`: the window's JSON as the outbox stored it (one stringify per window, not two)
  private publishWindow(t: Telemetry, text = JSON.stringify(t)): void {
    const client = this.client;
    // offline: leave it in the outbox (mqtt.js would queue it in memory only)
    if (!client?.connected) return;
    const generation = this.generation;
    this.inflight.set(t.seq, generation);
    client.publish(topics.telemetry(this.deviceId), text, { qos: 1 }, (err) => {
      if (this.inflight.get(t.seq) === generation) this.inflight.delete(t.seq);
      if (!err) this.outbox.remove(t.seq);
    });
  }

  /** After a (re)connect: everything in the outbox not already sent on this connection. */
  private flushOutbox(): void {
    for (const seq of [...this.outbox.pending()]) {
      if (this.inflight.get(seq) === this.generation) continue;
      const t = this.outbox.read(seq);
      if (t) this.publishWindow(t);
    }
  }

  private nextTelemetrySeq(): number {
    const seq = this.telemetrySeq++;
    if (this.telemetrySeq >= this.state.telemetrySeq) {
      this.state.telemetrySeq += TELEMETRY_SEQ_BLOCK;
      this.store.save(this.state);
    }
    return seq;
  }

  // ---- updates ----------------------------------------------------------------------------

  /** Updates run one at a time; a newer desired state that arrives meanwhile replaces any queued one. */
  private onDesired(payload: Buffer): void {
    if (this.stopped) return;
    this.pending = payload;
    this.gate.poke(); // [#18] an update waiting for its window gives way to a newer assignment
    if (!this.working) this.working = this.drain().finally(() => { this.working = null; });
  }

  private async drain(): Promise<void> {
    while (this.pending && !this.stopped) {
      if (this.deciding) { await this.deciding; continue; }
      if (this.repairing) { await this.repairing; continue; }
      const payload = this.pending;
      this.pending = null;
      this.updating = this.applyDesired(payload).catch((err) => {
        this.log('update_error', { deviceId: this.deviceId, err: (err as Error).stack });
        this.status.durable('failed', { reason: 'MALFORMED', detail: `agent error: ${(err as Error).message}` });
      });
      await this.updating;
      this.updating = null;
    }
  }

  private trust(): TrustState {
    const t = this.state.trust;
    return { rootPublicKey: b64.decode(t.rootPublicKey), keysetVersion: t.keysetVersion, lastSeq: t.lastSeq, versionFloors: t.versionFloors, timeFloor: t.timeFloor };
  }

  /**
   * A refused assignment may still carry a newer key set the root signed: keep its version (Uptane
   * updates metadata apart from targets), so a later replay of an older key set, one that still lists a
   * revoked key, is refused as a rollback even by a device that never accepted an assignment since.
   */
  private learnKeySet(msg: DesiredMessage): void {
    const t = this.state.trust;
    try {
      const keyset = verifyKeySet(msg.keyset, this.trust(), Math.max(this.now(), t.timeFloor), this.cache);
      if (keyset.version > t.keysetVersion) {
        t.keysetVersion = keyset.version;
        this.store.save(this.state);
      }
    } catch {
      // a key set that does not verify teaches nothing
    }
  }

  private async applyDesired(payload: Buffer): Promise<void> {
    let msg: DesiredMessage;
    try {
      const parsed = DesiredMessage.safeParse(JSON.parse(payload.toString('utf8')));
      if (!parsed.success) throw new Error(`${parsed.error.issues[0].path.join('.')}: ${parsed.error.issues[0].message}`);
      msg = parsed.data;
    } catch (err) {
      return this.refuse('MALFORMED', `desired state does not parse: ${(err as Error).message}`);
    }
    // The retained message comes again on every reconnect: the same signed assignment is not news.
    if (msg.director.sig === this.state.trust.lastDirectorSig) return;

    let v: VerifiedDesired;
    try {
      v = verifyDesired(msg, this.trust(), { deviceId: this.deviceId, hardware: this.config.hardware, agentVersion: AGENT_VERSION }, this.now(), this.cache);
    } catch (err) {
      if (err instanceof UpdateRefused) {
        this.learnKeySet(msg);
        // which manifest the refused assignment named (unverified, for the operator's view only)
        return this.refuse(err.reason, err.message, { manifestSha256: envelopeDigest(msg.manifest) });
      }
      throw err;
    }
    const m = v.manifest;
    const base = { directorSeq: v.desired.seq, manifestSha256: v.manifestSha256, modelId: m.modelId, version: m.version };
    // a set is news if any of its manifests (or its release) differs from what the active slot holds
    const news = !this.current || recordKey(this.current.record) !== setKey(v.manifestSha256, v.extras.map((e) => e.manifestSha256), v.desired.release, withoutGolden(v.desired.chain));
    const slot: SlotName = this.state.active === 'a' ? 'b' : 'a';
    // Accepted: this assignment can never be replayed, and the clock never goes back before it. In the
    // same atomic write: an update is under way (no slot touched yet: it downloads into staging).
    const t = this.state.trust;
    t.lastSeq = v.desired.seq;
    t.lastDirectorSig = msg.director.sig;
    t.keysetVersion = Math.max(t.keysetVersion, v.keyset.version);
    t.timeFloor = Math.max(t.timeFloor, Date.parse(v.desired.issuedAt));
    if (news) this.state.update = { slot: null, manifestSha256: v.manifestSha256, modelId: m.modelId, version: m.version, artifactSha256: m.artifact.sha256, directorSeq: v.desired.seq };
    // already running it: that is the outcome, in the same write
    const already = news ? null : this.status.queue('active', base);
    this.store.save(this.state);
    const device = { deviceId: this.deviceId, hardware: this.config.hardware, agentVersion: AGENT_VERSION };
    if (already) {
      this.status.announce(already);
      return this.shadow.reconcile(msg, v, this.trust(), device, this.cache); // shadow hook
    }

    try {
      await this.install(v, msg.manifest.signed, slot, base);
      await this.shadow.reconcile(msg, v, this.trust(), device, this.cache); // shadow hook
    } catch (err) {
      if (err instanceof WaitInterrupted) return; // [#18] stopped while waiting: left to the next start, as a crash would be
      // only a slot the update had claimed is cleared; before that, both slots are as they were
      const abandoned = abandonUpdate(this.state);
      this.state = abandoned.state;
      if (abandoned.clear) this.slots.clear(abandoned.clear);
      const outcome = err instanceof UpdateRefused ? this.status.queue(FAILED_REASONS.has(err.reason) ? 'failed' : 'rejected', { ...base, reason: err.reason, detail: err.message }) : null;
      this.store.save(this.state);
      if (outcome) return this.status.announce(outcome);
      throw err;
    }
  }

  /**
   * The state record stops naming `slot` (and stops offering it as a revert target) in one durable
   * write, before its files are touched. A newer assignment does not wait for a probation to end (a
   * fleet revert must not be held up): the model on probation stays watched, but if its revert target
   * is this slot, a failure now keeps it.
   */
  private claimSlot(slot: SlotName): void {
    this.state = claimSlot(this.state, slot);
    this.shadow.onSlotClaimed(slot); // shadow hook: a candidate held there is released (the record dropped it)
    if (this.probation?.record.previous === slot) this.probation.record = { ...this.probation.record, previous: null };
    this.store.save(this.state);
    this.slots.clear(slot);
  }

  private refuse(reason: ReasonCode, detail: string, extra: Partial<Status> = {}): void {
    this.status.durable('rejected', { ...extra, reason, detail });
  }

  /**
   * The artifact staged from a slot holding the same bytes, or null (then it is downloaded). The bytes
   * are read once and must have the signed manifest's length and SHA-256; they are written to staging
   * (durably) because the slot they came from may be the one this update claims.
   */
  private stageFromSlot(a: Manifest['artifact'], base: Partial<Status>, keep: readonly string[] = []): { path: string; bytes: Uint8Array } | null {
    for (const name of ['a', 'b'] as const) {
      const slotRecord = this.state.slots[name];
      if (!slotRecord) continue;
      for (const [index, rec] of slotModels(slotRecord).entries()) {
        if (rec.artifactSha256 !== a.sha256 || rec.length !== a.length) continue;
        let bytes: Buffer;
        try { bytes = readFileSync(this.slots.path(name, 'onnx', index)); } catch { continue; }
        if (bytes.byteLength !== a.length || sha256Hex(bytes) !== a.sha256) continue; // damaged: download instead
        const path = this.staging.writeDurable(a.sha256, bytes, keep);
        this.log('artifact_from_slot', { deviceId: this.deviceId, slot: name, artifactSha256: a.sha256, bytes: a.length });
        this.status.progress('verifying', base);
        return { path, bytes };
      }
    }
    return null;
  }

  // [#18 conditions hook] Wait until the desired state's policy lets `step` run (device-agent/conditions.ts),
  // reporting `waiting` with the reasons; a newer assignment, a probation decision or a stop ends the wait (SUPERSEDED).
  private async waitForStep(step: UpdateStep, v: VerifiedDesired, base: Partial<Status>, bytes: number): Promise<void> {
    const newer = () => { try { return !!this.pending && JSON.parse(this.pending.toString('utf8')).director?.sig !== this.state.trust.lastDirectorSig; } catch { return false; } };
    const revertDue = () => !!this.probation?.settling && this.probation.tracker.verdict(this.now()).kind === 'fail';
    const r = await this.gate.until(v.desired.policy, step, bytes,
      (why) => this.status.progress('waiting', { ...base, reason: why[0], detail: `${step} waits: ${why.join(', ')}` }), () => this.stopped || newer() || revertDue(), this.stopping.signal);
    if (r === 'stopped' && this.stopped) throw new WaitInterrupted();
    if (r === 'stopped') throw new UpdateRefused('SUPERSEDED', revertDue() ? 'the model on probation failed and is reverted first (a revert never waits for a window)' : 'a newer assignment arrived while this one waited');
  }

  // [#18 delta hook] The artifact rebuilt from a slot and the delta the signed desired state offers
  // (device-agent/delta.ts), or null: then the full artifact is downloaded, and a delta that failed is
  // reported (progress, DELTA_FAILED) with why.
  private async stageFromDelta(v: VerifiedDesired, base: Partial<Status>, keep: readonly string[]): Promise<Staged | null> {
    const delta = v.desired.delta;
    if (!delta) return null;
    const r = await stageFromDelta({
      delta, artifact: v.manifest.artifact, slots: this.slots, records: this.state.slots, staging: this.staging,
      download: (blob) => stageArtifact({ staging: this.staging, config: this.config, authorization: this.authorization, artifact: blob, fetch: this.fetch, random: this.random, signal: this.stopping.signal, keep }),
    });
    if ('staged' in r) {
      this.log('artifact_from_delta', { deviceId: this.deviceId, baseSlot: r.baseSlot, deltaBytes: r.deltaBytes, artifactBytes: v.manifest.artifact.length });
      this.status.progress('verifying', base);
      return r.staged;
    }
    this.log('delta_failed', { deviceId: this.deviceId, err: r.failed });
    this.status.progress('downloading', { ...base, reason: 'DELTA_FAILED', detail: `${r.failed}; downloading the full artifact` });
    return null;
  }

  /**
   * Every model of the assignment (one, or a set) is staged, verified, loaded and health-checked before
   * any slot is touched; then the inactive slot is claimed, written whole, and activated by one state
   * write. A model the active set already runs with the same signed manifest is not checked again and
   * keeps its loaded session (its bytes are still copied into the new slot, which must hold the whole set).
   */
  private async install(v: VerifiedDesired, manifestText: string, slot: SlotName, base: Partial<Status>): Promise<void> {
    const wanted = [{ manifest: v.manifest, sha: v.manifestSha256, text: manifestText }, ...v.extras.map((e) => ({ manifest: e.manifest, sha: e.manifestSha256, text: e.envelope.signed }))];
    const ready: { unit: Unit; part: string; text: string; reused: boolean }[] = [];
    const keep: string[] = [];
    const release = () => Promise.all(ready.filter((r) => !r.reused).map((r) => r.unit.model.release()));
    await this.waitForStep('download', v, base, wanted.reduce((n, w) => n + w.manifest.artifact.length, 0)); // [#18 conditions hook]
    try {
      for (const [index, w] of wanted.entries()) {
        const m = w.manifest;
        // in a set, `n` says which model of it (1-based) reached the phase: crash tests kill at the second or third
        const info: PhaseInfo = { modelId: m.modelId, version: m.version, artifactSha256: m.artifact.sha256, ...(wanted.length > 1 ? { n: index + 1 } : {}) };
        const record: SlotModel = { manifestSha256: w.sha, modelId: m.modelId, version: m.version, artifactSha256: m.artifact.sha256, length: m.artifact.length };
        const running = wanted.length > 1 ? this.current?.units.find((u) => u.record.manifestSha256 === w.sha && !u.retired) : undefined;
        if (running) {
          const staged = this.stageFromSlot(m.artifact, base, keep);
          if (staged) {
            keep.push(m.artifact.sha256);
            ready.push({ unit: running, part: staged.path, text: w.text, reused: true });
            continue;
          }
        }
        // the delta the desired state offers is for its primary model (the first)
        const staged = await this.stageModel(m, base, info, keep, index === 0 ? v : undefined);
        keep.push(m.artifact.sha256);
        ready.push({ unit: { record, model: staged.model, manifest: m, inflight: 0, retired: false }, part: staged.path, text: w.text, reused: false });
      }
      // The chain, if the set has one, end to end on its golden inputs with exactly these loaded models.
      if (v.desired.chain) {
        const byId = new Map(ready.map((r) => [r.unit.record.modelId, r.unit]));
        const chain = await checkChainHealth(v.desired.chain, [...byId.keys()], (id, feeds) => byId.get(id)!.model.run(feeds as Feeds));
        this.log('chain_health_check_passed', { deviceId: this.deviceId, ...chain });
      }
      await this.waitForStep('switch', v, base, 0); // [#18 conditions hook]
      // Only now is the inactive slot overwritten: every model verified and passed its health check.
      const info: PhaseInfo = { modelId: v.manifest.modelId, version: v.manifest.version, artifactSha256: v.manifest.artifact.sha256 };
      this.claimSlot(slot);
      // [s15-agent] the manifests' data fsynced here; their renames reach the disk with the artifacts' by the
      // one folder fsync below, before the switch write names the slot (one folder fsync per model fewer)
      for (const [i, r] of ready.entries()) writeFileDurable(this.slots.path(slot, 'manifest.json', i), r.text, 'data');
      this.phase('write:manifest', info);
      for (const [i, r] of ready.entries()) disk.renameSync(r.part, this.slots.path(slot, 'onnx', i));
      fsyncDir(this.slots.dir);
      this.phase('write:artifact', info);
    } catch (err) {
      await release();
      throw err;
    }
    const [primary, ...others] = ready.map((r) => r.unit);
    const record: SlotRecord = {
      ...primary.record,
      ...(others.length ? { extra: others.map((u) => u.record) } : {}),
      ...(v.desired.release ? { release: v.desired.release } : {}),
      ...(v.desired.chain ? { chain: withoutGolden(v.desired.chain) } : {}),
    };
    this.activate(slot, { slot, record, units: ready.map((r) => r.unit), manifest: v.manifest }, v.desired.seq, base);
  }

  /** One model into staging, verified, loaded and health-checked; no slot touched. */
  private async stageModel(m: Manifest, base: Partial<Status>, info: PhaseInfo, keep: readonly string[], withDelta?: VerifiedDesired): Promise<{ path: string; model: LoadedModel }> {
    // Into staging, never into a slot: until the bytes verify, both slots stay what they were.
    this.status.progress('downloading', base);
    this.phase('download:start', info);
    let chunks = 0;
    // A slot that already holds these bytes (a fleet revert sends a device back to the model in its
    // other slot, signed again under a new version): staged from there, checked against this manifest
    // like a download, and nothing is fetched.
    const { path: part, bytes } = this.shadow.stageForPromotion(m.artifact, keep) /* shadow hook: a promotion moves the candidate's bytes */ ?? this.stageFromSlot(m.artifact, base, keep) ?? (withDelta ? await this.stageFromDelta(withDelta, base, keep) : null) ?? await stageArtifact({
      staging: this.staging, config: this.config, authorization: this.authorization, artifact: m.artifact, fetch: this.fetch, random: this.random, signal: this.stopping.signal, keep,
      onChunk: () => this.phase('download:chunk', { ...info, n: ++chunks }),
      onDownloaded: (dl) => {
        this.log('download_done', { deviceId: this.deviceId, ...dl });
        this.phase('download:done', info);
        this.status.progress('verifying', base);
      },
    });
    // verified: the staged bytes have the manifest's length and SHA-256; a golden set the manifest names
    // as a blob is fetched and checked against its own digest the same way
    const goldenVectors = await healthVectors(m, { ...this.config, authorization: this.authorization, dest: `${part}.golden.tmp`, random: this.random, fetch: this.fetch });
    this.phase('verify:done', info);

    // Load and health-check the staged bytes before any slot is touched: a model that fails here leaves
    // the revert target in place as well.
    this.status.progress('health_check', base);
    let model: LoadedModel;
    try {
      model = await this.runtime.load(bytes, { sha256: m.artifact.sha256, sessionConfig: m.quantization.sessionConfig });
    } catch (err) {
      throw new UpdateRefused('LOAD_FAILED', `onnxruntime could not load ${m.modelId} v${m.version}: ${(err as Error).message}`);
    }
    try {
      // s15-flake: the budget judges the device time a runtime reports (DEVICE_MS: simulated hardware, a thread's own
      // timing), as telemetry and probation do; onnxruntime on a device reports none, so there it is the wall time
      // (a simulated device's wall time is its host's load: good updates failed LATENCY_BUDGET on a loaded host)
      const health = await runHealthCheck(model, m.healthCheck, goldenVectors, { runtimeTime: true });
      this.log('health_check_passed', { deviceId: this.deviceId, modelId: m.modelId, ...health });
      this.phase('health:done', info);
    } catch (err) {
      await model.release();
      if (err instanceof UpdateRefused && base.modelId !== m.modelId) throw new UpdateRefused(err.reason, `${m.modelId} v${m.version}: ${err.message}`);
      throw err;
    }
    return { path: part, model };
  }

  /** The switch: one atomic state write (which also opens probation), then the in-memory pointer. */
  private activate(slot: SlotName, next: Current, directorSeq: number, base: Partial<Status>): void {
    const previous = this.current ? this.current.slot : null;
    const record = next.record;
    const m = next.manifest;
    const probation: ProbationRecord | null = Probation.enabled(this.limits(next)) ? {
      slot, previous, manifestSha256: record.manifestSha256, modelId: m.modelId, version: m.version, directorSeq, startedAt: this.now(), cleanStop: false,
    } : null;
    this.state = switchTo(this.state, slot, record, previous, probation);
    const outcome = this.status.queue('active', base);
    const info = { modelId: m.modelId, version: m.version, artifactSha256: m.artifact.sha256 };
    this.phase('switch:before', info);
    this.store.save(this.state);
    this.phase('switch:after', info);
    this.swapTo(next);
    this.status.announce(outcome);
    if (probation) this.beginProbation(next, probation);
  }

  /** New requests go to `next` at once; models it does not keep finish their in-flight calls, then are released. */
  private swapTo(next: Current): void {
    const old = this.current;
    this.current = next;
    this.window?.setBaseline(next.manifest.driftBaseline);
    if (old) {
      for (const u of old.units) {
        if (next.units.includes(u)) continue;
        u.retired = true;
        if (u.inflight === 0) void u.model.release();
      }
    }
  }

  /** A loaded set that did not become current: release the models it does not share with the current one. */
  private async discard(set: Current | null): Promise<void> {
    if (!set) return;
    await Promise.all(set.units.filter((u) => !this.current?.units.includes(u)).map((u) => u.model.release()));
  }

  // ---- probation --------------------------------------------------------------------------

  /** one probation for the whole set: calls of any of its models count; latency against the largest budget among them */
  private limits(set: Current) {
    const c = this.config;
    const budget = Math.max(...set.units.map((u) => u.manifest.healthCheck.latencyBudgetMs));
    return {
      inferences: c.probationInferences, seconds: c.probationSeconds, maxErrorRate: c.probationMaxErrorRate,
      maxLatencyMs: c.probationMaxLatencyMs ?? c.probationLatencyFactor * budget,
    };
  }

  private beginProbation(current: Current, record: ProbationRecord): void {
    const tracker = new Probation(this.limits(current), record.startedAt);
    this.probation = { tracker, record, current, settling: false };
    this.phase('probation:start', { modelId: record.modelId, version: record.version });
    this.armProbationTimer();
  }

  private armProbationTimer(): void {
    this.clearProbationTimer();
    const deadline = this.probation?.tracker.deadline;
    if (deadline == null || this.stopped) return;
    this.probationTimer = setTimeout(() => {
      this.probationTimer = null;
      const p = this.probation;
      if (!p || p.settling) return;
      const v = p.tracker.verdict(this.now());
      if (v.kind === 'continue') this.armProbationTimer();
      else void this.settleProbation(p, v);
    }, Math.max(10, deadline - this.now()));
  }

  private clearProbationTimer(): void {
    if (this.probationTimer) clearTimeout(this.probationTimer);
    this.probationTimer = null;
  }

  /** Count one inference answered by the model on probation. */
  private probe(c: Current, ms: number, ok: boolean): void {
    const p = this.probation;
    if (!p || p.current !== c || p.settling) return;
    p.tracker.record(ms, ok);
    this.phase('probation:inference', { modelId: p.record.modelId, version: p.record.version, n: p.tracker.calls });
    const v = p.tracker.verdict(this.now());
    if (v.kind !== 'continue') void this.settleProbation(p, v);
  }

  private async settleProbation(p: OnProbation, v: Exclude<ProbationVerdict, { kind: 'continue' }>): Promise<void> {
    if (p.settling || this.stopped) return;
    p.settling = true;
    this.gate.poke(); // [#18] an update waiting for its window gives way to this decision
    this.clearProbationTimer();
    // after any install in progress: it may replace this model (then there is nothing to decide) or
    // take away its revert target (then a failure keeps it)
    while (this.updating) await this.updating;
    if (this.deciding) return; // (cannot happen: one model on probation at a time)
    this.deciding = this.decideProbation(p, v).finally(() => { this.deciding = null; });
    await this.deciding;
  }

  private async decideProbation(p: OnProbation, v: Exclude<ProbationVerdict, { kind: 'continue' }>): Promise<void> {
    if (this.probation !== p || this.stopped) return;
    const r = p.record;
    const base = { directorSeq: r.directorSeq, manifestSha256: r.manifestSha256, modelId: r.modelId, version: r.version };
    try {
      if (v.kind === 'pass') {
        this.phase('probation:end', { modelId: r.modelId, version: r.version });
        this.state.probation = null;
        const outcome = this.status.queue('probation_passed', { ...base, detail: v.detail });
        this.store.save(this.state);
        this.probation = null;
        this.status.announce(outcome);
      } else {
        await this.revert(p, 'PROBATION_FAILED', v.detail, base);
      }
    } catch (err) {
      this.log('probation_error', { deviceId: this.deviceId, err: (err as Error).stack });
    } finally {
      if (this.probation === p) this.probation = null;
    }
  }

  /** Back to the previous slot, re-verified from disk; the failed slot is cleared for good. */
  private async revert(p: OnProbation, reason: ReasonCode, detail: string, base: Partial<Status>): Promise<void> {
    const r = p.record;
    this.phase('revert:before', { modelId: r.modelId, version: r.version });
    const back = r.previous ? await this.loadSlot(r.previous) : null;
    if (this.stopped) { await this.discard(back); return; }
    const step = failProbation(this.state, r, back !== null);
    this.state = step.state;
    if (step.outcome === 'kept' || !back) {
      // The model on probation passed its health check and there is nothing sound to go back to: keep it.
      const why = r.previous ? 'the previous model did not verify or load' : 'no previous model to revert to';
      const outcome = this.status.queue('failed', { ...base, reason, detail: `${detail}; ${why}, keeping this one` });
      this.store.save(this.state);
      if (step.clear) this.slots.clear(step.clear);
      this.probation = null;
      this.status.announce(outcome);
      return;
    }
    const outcome = this.status.queue('reverted', { ...base, reason, detail });
    this.store.save(this.state);
    this.phase('revert:after', { modelId: r.modelId, version: r.version });
    this.probation = null;
    this.swapTo(back);
    if (step.clear) this.slots.clear(step.clear);
    this.status.announce(outcome);
  }

  // ---- slot repair (after the start, in the background) -----------------------------------

  /** Each repair job: fetch again (bounded retries with backoff), load, then one write that puts the slot back in its role. */
  private async runRepairs(): Promise<void> {
    for (const job of [...this.state.repairs]) {
      if (this.stopped) return;
      let loaded: Current | null = null;
      let why = '';
      try {
        const manifest = await refetchSlot(job, {
          slots: this.slots, staging: this.staging, config: this.config, authorization: this.authorization, fetch: this.fetch,
          policy: { attempts: this.config.repair.attempts, baseMs: this.config.repair.backoffMs, maxMs: this.config.repair.backoffMaxMs },
          retry: {
            random: this.random, sleep: this.deps.sleep ?? realSleep, signal: this.stopping.signal,
            onRetry: (retry, delayMs, err) => this.log('slot_repair_retry', { deviceId: this.deviceId, slot: job.slot, retry, delayMs, err: (err as Error).message }),
          },
        });
        const read = this.slots.readVerified(job.slot, job.record);
        if ('error' in read) throw new Error(read.error);
        const model = await this.runtime.load(read.bytes, { sha256: job.record.artifactSha256, sessionConfig: manifest.quantization.sessionConfig });
        loaded = { slot: job.slot, record: job.record, units: [{ record: job.record, model, manifest, inflight: 0, retired: false }], manifest };
      } catch (err) {
        why = (err as Error).message;
      }
      if (this.stopped) { await this.discard(loaded); return; } // the job stays on disk for the next start
      while (this.deciding) await this.deciding;
      this.finishRepair(job, loaded, why);
    }
  }

  private finishRepair(job: RepairRecord, loaded: Current | null, why: string): void {
    const step = finishRepair(this.state, job, loaded !== null);
    this.state = step.state;
    const r = job.record;
    const about = { manifestSha256: r.manifestSha256, modelId: r.modelId, version: r.version };
    const p = this.probation?.record;
    const outcome = {
      activated: () => this.status.queue('recovered', { ...about, reason: 'SLOT_DAMAGED', detail: `slot ${job.slot} (${r.modelId} v${r.version}) fetched again and verified; active again` }),
      previous: () => this.status.queue('recovered', { ...about, reason: 'SLOT_DAMAGED', detail: `slot ${job.slot} (${r.modelId} v${r.version}) fetched again and verified; kept as the previous model` }),
      reverted: () => this.status.queue('reverted', {
        ...(p ? { directorSeq: p.directorSeq, manifestSha256: p.manifestSha256, modelId: p.modelId, version: p.version } : about), reason: 'CRASH_RECOVERY',
        detail: `agent restarted while ${p?.modelId} v${p?.version} was on probation; the previous model (${r.modelId} v${r.version}) was fetched again and verified; reverted to it`,
      }),
      failed: () => this.status.queue('failed', { ...about, reason: 'SLOT_DAMAGED', detail: `slot ${job.slot} (${r.modelId} v${r.version}) could not be fetched again: ${why || 'the slot was taken by an update'}` }),
    }[step.outcome]();
    this.store.save(this.state);
    for (const slot of step.clear) this.slots.clear(slot);
    this.log('slot_repair', { deviceId: this.deviceId, slot: job.slot, role: job.role, outcome: step.outcome, err: why || undefined });
    if (step.outcome === 'activated' || step.outcome === 'reverted') {
      if (step.outcome === 'reverted') { this.clearProbationTimer(); this.probation = null; }
      this.swapTo(loaded!);
    } else {
      void this.discard(loaded); // a revert target is loaded when it is needed
      if (this.probation && this.state.probation?.previous === job.slot) this.probation.record = { ...this.probation.record, previous: job.slot };
    }
    this.status.announce(outcome);
  }

  // ---- start-up ---------------------------------------------------------------------------

  /**
   * A slot's models, loaded only if every model's bytes and manifest still match the state record. A
   * model the current set runs with the same signed manifest is shared, not loaded again (a revert of one
   * model of a set does not interrupt the others).
   */
  private async loadSlot(slot: SlotName): Promise<Current | null> {
    const record = this.state.slots[slot];
    if (!record) return null;
    const read = this.slots.readVerifiedSet(slot, record);
    if ('error' in read) {
      this.log('slot_damaged', { deviceId: this.deviceId, slot, err: read.error });
      return null;
    }
    const units: Unit[] = [];
    try {
      for (const m of read.models) {
        const running = this.current?.units.find((u) => u.record.manifestSha256 === m.record.manifestSha256 && u.record.artifactSha256 === m.record.artifactSha256 && !u.retired);
        if (running) { units.push(running); continue; }
        const model = await this.runtime.load(m.bytes, { sha256: m.record.artifactSha256, sessionConfig: m.manifest.quantization.sessionConfig });
        units.push({ record: m.record, model, manifest: m.manifest, inflight: 0, retired: false });
      }
      return { slot, record, units, manifest: read.models[0].manifest };
    } catch (err) {
      await this.discard({ slot, record, units, manifest: read.models[0].manifest });
      this.log('slot_load_failed', { deviceId: this.deviceId, slot, err: (err as Error).message });
      return null;
    }
  }

  /** After a restart: the active slot if its bytes still match, else the previous one, else nothing. */
  private async restoreActive(): Promise<void> {
    for (const slot of [this.state.active, this.state.previous]) {
      if (!slot) continue;
      const loaded = await this.loadSlot(slot);
      if (!loaded) continue;
      if (slot !== this.state.active) {
        // the active slot verified but onnxruntime would not load it: say so, from the same write
        const failed = this.state.active ? this.state.slots[this.state.active] : null;
        this.state.previous = null;
        this.state.active = slot;
        this.state.probation = null;
        const outcome = failed ? this.status.queue('reverted', {
          manifestSha256: failed.manifestSha256, modelId: failed.modelId, version: failed.version, reason: 'LOAD_FAILED',
          detail: `the active model (${failed.modelId} v${failed.version}) would not load at start; back on the previous model`,
        }) : null;
        this.store.save(this.state);
        if (outcome) this.status.announce(outcome);
      }
      this.current = loaded;
      return;
    }
  }
}
