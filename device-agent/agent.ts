// The device agent: takes the retained desired state over MQTT, verifies everything before it touches
// the bytes, installs into the inactive slot, health-checks, switches atomically, watches the new model
// through a probation window (reverting to the previous slot if it misbehaves), and reports why.
// The constructor does nothing; start() repairs what a crash left, restores the last good model and
// connects; stop() undoes it.
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { b64, sha256Hex } from '../shared/crypto.ts';
import { envelopeDigest } from '../shared/envelope.ts';
import { DesiredMessage, type ActiveModel, type Manifest, type Status, type Telemetry, type UpdateState } from '../shared/messages.ts';
import { UpdateRefused, type ReasonCode } from '../shared/reason-codes.ts';
import { topics } from '../shared/topics.ts';
import { verifyDesired, verifyKeySet, SignatureCache, type TrustState, type VerifiedDesired } from '../shared/verify-desired.ts';
import { AGENT_VERSION } from '../shared/version.ts';
import { connectBounded } from './bounded-mqtt.ts';
import { subscribeChecked } from './subscribe-check.ts';
import { pinnedFetch, readCaFile } from './pinned-fetch.ts';
import type { AgentConfig } from './config.ts';
import { stageArtifact } from './artifact-fetch.ts';
import { disk } from './disk.ts';
import { FreshnessWatch } from './freshness.ts';
import { fsyncDir, writeFileDurable } from './durable-file.ts';
import { healthVectors } from './golden-set.ts';
import { DeviceIdentity, enrollDevice, isEnrolled, readDeviceKey } from './identity.ts';
import { runHealthCheck } from './health-check.ts';
import { deviceMsOf, isNotAModelError, OrtRuntime, type LoadedModel, type ModelRuntime } from './model-runtime.ts';
import { Probation, type ProbationVerdict } from './probation.ts';
import { checkFeeds } from './input-check.ts';
import { planRecovery } from './recovery.ts';
import { realSleep } from './backoff.ts';
import { checkSlots, refetchSlot } from './slot-repair.ts';
import { StatusReporter } from './status-reporter.ts';
import { abandonUpdate, claimSlot, failProbation, finishRepair, switchTo } from './update-steps.ts';
import type { Feeds, Outputs } from '../runtime/onnx-session.ts';
import { SlotFiles } from './slot-files.ts';
import { Staging } from './staging.ts';
import { StateStore, type AgentState, type ProbationRecord, type RepairRecord, type SlotName, type SlotRecord } from './state-store.ts';
import { TelemetryOutbox } from './telemetry-outbox.ts';
import { TelemetryWindow } from './telemetry-window.ts';

/**
 * Points of an update where deps.onPhase is called, in order. The crash test kills the process at each
 * of them; the simulator may hook them for fault profiles. The agent itself never acts on them.
 */
export type UpdatePhase =
  | 'download:start' | 'download:chunk' | 'download:done' | 'verify:done' | 'health:done' | 'write:manifest' | 'write:artifact'
  | 'switch:before' | 'switch:after' | 'probation:start' | 'probation:inference' | 'probation:end'
  | 'revert:before' | 'revert:after';

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
}

interface Current { slot: SlotName; record: SlotRecord; model: LoadedModel; manifest: Manifest; inflight: number; retired: boolean }
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
  /** how the agent proves who it is: tokens from its key pair, a legacy secret, or nothing; null until start() */
  identity: DeviceIdentity | null = null;
  private lastClockCheck = -Infinity;
  private clockCheck: Promise<number | null> | null = null;
  /** freeze detection (device-agent/freshness.ts): null until start() */
  freshness: FreshnessWatch | null = null;

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
  }

  /** the last status reported (progress or outcome) */
  get lastStatus(): Status | null { return this.status.last; }

  get deviceId(): string { return this.config.deviceId; }

  get active(): ActiveModel | null {
    return this.current ? { modelId: this.current.record.modelId, version: this.current.record.version, manifestSha256: this.current.record.manifestSha256 } : null;
  }

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
    if (this.current) {
      const c = this.current;
      this.current = null;
      await c.model.release();
    }
  }

  /**
   * Inference for the device's own code; never answered by a model that has not passed its health check.
   * Throws InputMismatch (input-check.ts) for inputs that do not fit the manifest's io signature.
   */
  async infer(feeds: Feeds): Promise<Outputs> {
    const c = this.current;
    if (!c) throw new Error('no model is active on this device yet');
    // a caller's mistake is refused here: it must not count against the model (probation, telemetry)
    checkFeeds(feeds, c.manifest.io.inputs);
    c.inflight++;
    const t0 = performance.now();
    try {
      const out = await c.model.run(feeds);
      const ms = deviceMsOf(out) ?? performance.now() - t0;
      this.window.record(ms, true, feeds, out);
      if (this.probation) this.probe(c, ms, true);
      return out;
    } catch (err) {
      if (isNotAModelError(err)) throw err; // the simulator's own failure (model-runtime.ts): not the model's
      this.window.record(0, false);
      if (this.probation) this.probe(c, 0, false);
      throw err;
    } finally {
      c.inflight--;
      if (c.retired && c.inflight === 0) void c.model.release();
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

  /** "Bearer <token>" for one artifact request (a fresh token each time), or undefined */
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
      subscribeChecked(client, [topics.desired(this.deviceId), topics.freshness()], { onRefused: (why, attempt) => this.log('mqtt_subscribe_refused', { deviceId: this.deviceId, why, attempt }) });
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
    try {
      this.outbox.add(t, !this.client?.connected);
    } catch (err) {
      this.log('outbox_error', { deviceId: this.deviceId, err: (err as Error).message });
    }
    this.emit('telemetry', t);
    this.publishWindow(t);
  }

  private publishWindow(t: Telemetry): void {
    const client = this.client;
    // offline: leave it in the outbox (mqtt.js would queue it in memory only)
    if (!client?.connected) return;
    const generation = this.generation;
    this.inflight.set(t.seq, generation);
    client.publish(topics.telemetry(this.deviceId), JSON.stringify(t), { qos: 1 }, (err) => {
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
    const news = this.current?.record.manifestSha256 !== v.manifestSha256;
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
    if (already) return this.status.announce(already);

    try {
      await this.install(v, msg.manifest.signed, slot, base);
    } catch (err) {
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
  private stageFromSlot(a: Manifest['artifact'], base: Partial<Status>): { path: string; bytes: Uint8Array } | null {
    for (const name of ['a', 'b'] as const) {
      const rec = this.state.slots[name];
      if (!rec || rec.artifactSha256 !== a.sha256 || rec.length !== a.length) continue;
      let bytes: Buffer;
      try { bytes = readFileSync(this.slots.path(name, 'onnx')); } catch { continue; }
      if (bytes.byteLength !== a.length || sha256Hex(bytes) !== a.sha256) continue; // damaged: download instead
      this.staging.removeExcept(a.sha256);
      const path = this.staging.path(a.sha256);
      const fd = disk.openSync(path, 'w');
      try {
        disk.writeSync(fd, bytes);
        disk.fsyncSync(fd);
      } finally {
        disk.closeSync(fd);
      }
      this.log('artifact_from_slot', { deviceId: this.deviceId, slot: name, artifactSha256: a.sha256, bytes: a.length });
      this.status.progress('verifying', base);
      return { path, bytes };
    }
    return null;
  }

  private async install(v: VerifiedDesired, manifestText: string, slot: SlotName, base: Partial<Status>): Promise<void> {
    const m = v.manifest;
    const info: PhaseInfo = { modelId: m.modelId, version: m.version, artifactSha256: m.artifact.sha256 };
    // Into staging, never into a slot: until the bytes verify, both slots stay what they were.
    this.status.progress('downloading', base);
    this.phase('download:start', info);
    let chunks = 0;
    // A slot that already holds these bytes (a fleet revert sends a device back to the model in its
    // other slot, signed again under a new version): staged from there, checked against this manifest
    // like a download, and nothing is fetched.
    const { path: part, bytes } = this.stageFromSlot(m.artifact, base) ?? await stageArtifact({
      staging: this.staging, config: this.config, authorization: this.authorization, artifact: m.artifact, fetch: this.fetch, random: this.random, signal: this.stopping.signal,
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
      throw new UpdateRefused('LOAD_FAILED', `onnxruntime could not load the model: ${(err as Error).message}`);
    }
    try {
      const health = await runHealthCheck(model, m.healthCheck, goldenVectors);
      this.log('health_check_passed', { deviceId: this.deviceId, ...health });
      this.phase('health:done', info);
      // Only now is the inactive slot overwritten.
      this.claimSlot(slot);
      writeFileDurable(this.slots.path(slot, 'manifest.json'), manifestText);
      this.phase('write:manifest', info);
      disk.renameSync(part, this.slots.path(slot, 'onnx'));
      fsyncDir(this.slots.dir);
      this.phase('write:artifact', info);
    } catch (err) {
      await model.release();
      throw err;
    }
    const record: SlotRecord = { manifestSha256: v.manifestSha256, modelId: m.modelId, version: m.version, artifactSha256: m.artifact.sha256, length: m.artifact.length };
    this.activate(slot, record, model, m, v.desired.seq, base);
  }

  /** The switch: one atomic state write (which also opens probation), then the in-memory pointer. */
  private activate(slot: SlotName, record: SlotRecord, model: LoadedModel, m: Manifest, directorSeq: number, base: Partial<Status>): void {
    const previous = this.current ? this.current.slot : null;
    const probation: ProbationRecord | null = Probation.enabled(this.limits(m)) ? {
      slot, previous, manifestSha256: record.manifestSha256, modelId: m.modelId, version: m.version, directorSeq, startedAt: this.now(), cleanStop: false,
    } : null;
    this.state = switchTo(this.state, slot, record, previous, probation);
    const outcome = this.status.queue('active', base);
    const info = { modelId: m.modelId, version: m.version, artifactSha256: m.artifact.sha256 };
    this.phase('switch:before', info);
    this.store.save(this.state);
    this.phase('switch:after', info);
    const next: Current = { slot, record, model, manifest: m, inflight: 0, retired: false };
    this.swapTo(next);
    this.status.announce(outcome);
    if (probation) this.beginProbation(next, probation);
  }

  /** New requests go to `next` at once; the old model finishes its in-flight calls, then is released. */
  private swapTo(next: Current): void {
    const old = this.current;
    this.current = next;
    this.window?.setBaseline(next.manifest.driftBaseline);
    if (old) {
      old.retired = true;
      if (old.inflight === 0) void old.model.release();
    }
  }

  // ---- probation --------------------------------------------------------------------------

  private limits(m: Manifest) {
    const c = this.config;
    return {
      inferences: c.probationInferences, seconds: c.probationSeconds, maxErrorRate: c.probationMaxErrorRate,
      maxLatencyMs: c.probationMaxLatencyMs ?? c.probationLatencyFactor * m.healthCheck.latencyBudgetMs,
    };
  }

  private beginProbation(current: Current, record: ProbationRecord): void {
    const tracker = new Probation(this.limits(current.manifest), record.startedAt);
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
    if (this.stopped) { await back?.model.release(); return; }
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
        loaded = { slot: job.slot, record: job.record, model, manifest, inflight: 0, retired: false };
      } catch (err) {
        why = (err as Error).message;
      }
      if (this.stopped) { await loaded?.model.release(); return; } // the job stays on disk for the next start
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
      void loaded?.model.release(); // a revert target is loaded when it is needed
      if (this.probation && this.state.probation?.previous === job.slot) this.probation.record = { ...this.probation.record, previous: job.slot };
    }
    this.status.announce(outcome);
  }

  // ---- start-up ---------------------------------------------------------------------------

  /** A slot's model, loaded only if its bytes and manifest still match the state record. */
  private async loadSlot(slot: SlotName): Promise<Current | null> {
    const record = this.state.slots[slot];
    if (!record) return null;
    const read = this.slots.readVerified(slot, record);
    if ('error' in read) {
      this.log('slot_damaged', { deviceId: this.deviceId, slot, err: read.error });
      return null;
    }
    try {
      const model = await this.runtime.load(read.bytes, { sha256: record.artifactSha256, sessionConfig: read.manifest.quantization.sessionConfig });
      return { slot, record, model, manifest: read.manifest, inflight: 0, retired: false };
    } catch (err) {
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
