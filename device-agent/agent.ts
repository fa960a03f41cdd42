// The device agent: takes the retained desired state over MQTT, verifies everything before it touches
// the bytes, installs into the inactive slot, health-checks, switches atomically, and reports why.
// The constructor does nothing; start() restores the last good model and connects; stop() undoes it.
import { EventEmitter } from 'node:events';
import { mkdirSync, readFileSync, renameSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { b64, sha256Hex } from '../shared/crypto.ts';
import { DesiredMessage, type ActiveModel, type Manifest, type Status, type UpdateState } from '../shared/messages.ts';
import { UpdateRefused, type ReasonCode } from '../shared/reason-codes.ts';
import { topics } from '../shared/topics.ts';
import { verifyDesired, SignatureCache, type TrustState, type VerifiedDesired } from '../shared/verify-desired.ts';
import { AGENT_VERSION } from '../shared/version.ts';
import type { AgentConfig } from './config.ts';
import { downloadArtifact, removeIfExists } from './downloader.ts';
import { writeFileDurable } from './durable-file.ts';
import { runHealthCheck } from './health-check.ts';
import { OrtRuntime, type LoadedModel, type ModelRuntime } from './model-runtime.ts';
import type { Feeds, Outputs } from './runtime/onnx-session.ts';
import { StateStore, type AgentState, type SlotName, type SlotRecord } from './state-store.ts';
import { TelemetryWindow } from './telemetry-window.ts';

export interface AgentDeps {
  runtime?: ModelRuntime;
  /** shared between simulated devices so a fleet-wide manifest is verified once per process */
  signatureCache?: SignatureCache;
  now?: () => number;
  random?: () => number;
  log?: (event: string, fields: Record<string, unknown>) => void;
}

interface Current { slot: SlotName; record: SlotRecord; model: LoadedModel; inflight: number; retired: boolean }

const TELEMETRY_SEQ_BLOCK = 1000;

export class FleetAgent extends EventEmitter {
  private readonly store: StateStore;
  private readonly runtime: ModelRuntime;
  private readonly cache: SignatureCache;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly log: (event: string, fields: Record<string, unknown>) => void;
  private state!: AgentState;
  private current: Current | null = null;
  private client: MqttClient | null = null;
  private pending: Buffer | null = null;
  private working: Promise<void> | null = null;
  private window!: TelemetryWindow;
  private telemetryTimer: NodeJS.Timeout | null = null;
  private telemetrySeq = 0;
  private stopped = false;
  lastStatus: Status | null = null;

  constructor(readonly config: AgentConfig, deps: AgentDeps = {}) {
    super();
    this.store = new StateStore(config.dataDir);
    this.runtime = deps.runtime ?? new OrtRuntime();
    this.cache = deps.signatureCache ?? new SignatureCache(64);
    this.now = deps.now ?? Date.now;
    this.random = deps.random ?? Math.random;
    this.log = deps.log ?? (() => {});
  }

  get deviceId(): string { return this.config.deviceId; }

  get active(): ActiveModel | null {
    return this.current ? { modelId: this.current.record.modelId, version: this.current.record.version, manifestSha256: this.current.record.manifestSha256 } : null;
  }

  /** Restore the last good model from disk, then connect. */
  async start(): Promise<void> {
    mkdirSync(join(this.config.dataDir, 'slots'), { recursive: true });
    this.state = this.store.load(this.config.rootPublicKey);
    // Telemetry sequence numbers are reserved in blocks so a crash never reuses one.
    this.telemetrySeq = this.state.telemetrySeq;
    this.state.telemetrySeq += TELEMETRY_SEQ_BLOCK;
    this.store.save(this.state);
    await this.restoreActive();
    this.window = new TelemetryWindow(this.now);
    this.connect();
    this.telemetryTimer = setInterval(() => this.sendTelemetry(), this.config.telemetryWindowMs * (0.9 + 0.2 * this.random()));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.telemetryTimer) clearInterval(this.telemetryTimer);
    this.pending = null;
    await this.working?.catch(() => {});
    if (this.client) {
      const client = this.client;
      this.client = null;
      await new Promise<void>((resolve) => {
        const done = () => resolve();
        // a clean disconnect: publish offline ourselves, since the will only fires on an unclean one
        if (client.connected) client.publish(topics.presence(this.deviceId), JSON.stringify(this.presence(false)), { qos: 1, retain: true }, () => client.end(false, {}, done));
        else client.end(true, {}, done);
      });
    }
    if (this.current) {
      const c = this.current;
      this.current = null;
      await c.model.release();
    }
  }

  /** Inference for the device's own code; never answered by a model that has not passed its health check. */
  async infer(feeds: Feeds): Promise<Outputs> {
    const c = this.current;
    if (!c) throw new Error('no model is active on this device yet');
    c.inflight++;
    const t0 = performance.now();
    try {
      const out = await c.model.run(feeds);
      this.window.record(performance.now() - t0, true);
      return out;
    } catch (err) {
      this.window.record(0, false);
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

  // ---- connection -------------------------------------------------------------------------

  private connect(): void {
    const reconnectPeriod = Math.round(this.config.reconnectMinMs * (1 + this.random())); // jitter: no reconnect storms
    const client = mqtt.connect(this.config.mqttUrl, {
      clientId: this.deviceId,
      clean: true,
      keepalive: this.config.keepaliveSeconds,
      reconnectPeriod,
      connectTimeout: 10_000,
      protocolVersion: 4,
      will: { topic: topics.presence(this.deviceId), payload: Buffer.from(JSON.stringify(this.presence(false))), qos: 1, retain: true },
    });
    this.client = client;
    client.on('connect', () => {
      client.publish(topics.presence(this.deviceId), JSON.stringify(this.presence(true)), { qos: 1, retain: true });
      this.report(this.current ? 'active' : 'idle', {});
      client.subscribe(topics.desired(this.deviceId), { qos: 1 });
      this.emit('connected');
    });
    client.on('message', (_topic, payload) => this.onDesired(payload));
    client.on('error', (err) => this.log('mqtt_error', { deviceId: this.deviceId, err: err.message }));
  }

  private presence(online: boolean) {
    return { deviceId: this.deviceId, online, ts: new Date(this.now()).toISOString(), hardware: this.config.hardware, tags: [...this.config.tags], agentVersion: AGENT_VERSION };
  }

  private report(state: UpdateState, extra: Partial<Status>): void {
    const status: Status = {
      deviceId: this.deviceId, ts: new Date(this.now()).toISOString(), state, active: this.active, agentVersion: AGENT_VERSION, ...extra,
    };
    this.lastStatus = status;
    this.log('status', { deviceId: this.deviceId, state, reason: extra.reason, detail: extra.detail });
    this.client?.publish(topics.status(this.deviceId), JSON.stringify(status), { qos: 1 });
    this.emit('status', status);
  }

  private sendTelemetry(): void {
    if (!this.client) return;
    const t = this.window.cut(this.deviceId, this.nextTelemetrySeq(), this.active);
    this.client.publish(topics.telemetry(this.deviceId), JSON.stringify(t), { qos: 1 });
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
      const payload = this.pending;
      this.pending = null;
      try {
        await this.applyDesired(payload);
      } catch (err) {
        this.log('update_error', { deviceId: this.deviceId, err: (err as Error).stack });
        this.report('failed', { reason: 'MALFORMED', detail: `agent error: ${(err as Error).message}`.slice(0, 1000) });
      }
    }
  }

  private trust(): TrustState {
    const t = this.state.trust;
    return { rootPublicKey: b64.decode(t.rootPublicKey), keysetVersion: t.keysetVersion, lastSeq: t.lastSeq, versionFloors: t.versionFloors, timeFloor: t.timeFloor };
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
      if (err instanceof UpdateRefused) return this.refuse(err.reason, err.message);
      throw err;
    }
    // Accepted: this assignment can never be replayed, and the clock never goes back before it.
    const t = this.state.trust;
    t.lastSeq = v.desired.seq;
    t.lastDirectorSig = msg.director.sig;
    t.keysetVersion = Math.max(t.keysetVersion, v.keyset.version);
    t.timeFloor = Math.max(t.timeFloor, Date.parse(v.desired.issuedAt));
    this.store.save(this.state);

    const base = { directorSeq: v.desired.seq, manifestSha256: v.manifestSha256, modelId: v.manifest.modelId, version: v.manifest.version };
    if (this.current?.record.manifestSha256 === v.manifestSha256) return this.report('active', base);
    try {
      await this.install(v, msg.manifest.signed, base);
    } catch (err) {
      if (err instanceof UpdateRefused) {
        const state: UpdateState = ['HEALTH_CHECK_FAILED', 'LATENCY_BUDGET', 'LOAD_FAILED', 'DOWNLOAD_FAILED', 'DISK_FULL'].includes(err.reason) ? 'failed' : 'rejected';
        return this.report(state, { ...base, reason: err.reason, detail: err.message.slice(0, 1000) });
      }
      throw err;
    }
  }

  private refuse(reason: ReasonCode, detail: string): void {
    this.report('rejected', { reason, detail: detail.slice(0, 1000) });
  }

  private slotPath(slot: SlotName, ext: 'onnx' | 'part' | 'manifest.json'): string {
    return join(this.config.dataDir, 'slots', `${slot}.${ext}`);
  }

  private async install(v: VerifiedDesired, manifestText: string, base: Partial<Status>): Promise<void> {
    const m = v.manifest;
    const slot: SlotName = this.state.active === 'a' ? 'b' : 'a';
    // Before touching a slot's files, make sure the state record no longer points at them.
    if (this.state.slots[slot] || this.state.previous === slot) {
      this.state.slots[slot] = null;
      if (this.state.previous === slot) this.state.previous = null;
      this.store.save(this.state);
    }
    const part = this.slotPath(slot, 'part');
    this.report('downloading', base);
    await downloadArtifact({
      url: `${this.config.serverUrl.replace(/\/$/, '')}/v1/artifacts/${m.artifact.sha256}`,
      dest: part, expectedLength: m.artifact.length, ...this.config.download, random: this.random,
    });
    this.report('verifying', base);
    const bytes = new Uint8Array(readFileSync(part));
    if (bytes.byteLength !== m.artifact.length) {
      removeIfExists(part);
      throw new UpdateRefused('SIZE_MISMATCH', `artifact is ${bytes.byteLength} bytes, the manifest says ${m.artifact.length}`);
    }
    const digest = sha256Hex(bytes);
    if (digest !== m.artifact.sha256) {
      removeIfExists(part);
      throw new UpdateRefused('HASH_MISMATCH', `artifact SHA-256 ${digest.slice(0, 16)}… differs from the manifest's ${m.artifact.sha256.slice(0, 16)}…`);
    }
    writeFileDurable(this.slotPath(slot, 'manifest.json'), manifestText);
    renameSync(part, this.slotPath(slot, 'onnx'));

    this.report('health_check', base);
    let model: LoadedModel;
    try {
      model = await this.runtime.load(bytes, { sha256: m.artifact.sha256, sessionConfig: m.quantization.sessionConfig });
    } catch (err) {
      throw new UpdateRefused('LOAD_FAILED', `onnxruntime could not load the model: ${(err as Error).message}`);
    }
    try {
      await runHealthCheck(model, m.healthCheck);
    } catch (err) {
      await model.release();
      throw err;
    }
    this.activate(slot, { manifestSha256: v.manifestSha256, modelId: m.modelId, version: m.version, artifactSha256: m.artifact.sha256, length: m.artifact.length }, model, m);
    this.report('active', base);
  }

  /** The switch: one atomic state write, then the in-memory pointer; the old model is kept on disk. */
  private activate(slot: SlotName, record: SlotRecord, model: LoadedModel, m: Manifest): void {
    this.state.slots[slot] = record;
    this.state.previous = this.state.active;
    this.state.active = slot;
    this.state.trust.versionFloors[m.modelId] = Math.max(this.state.trust.versionFloors[m.modelId] ?? 0, m.version);
    this.store.save(this.state);
    const old = this.current;
    this.current = { slot, record, model, inflight: 0, retired: false };
    if (old) {
      old.retired = true;
      if (old.inflight === 0) void old.model.release();
    }
  }

  /** After a restart: the active slot if its bytes still match, else the previous one, else nothing. */
  private async restoreActive(): Promise<void> {
    for (const slot of [this.state.active, this.state.previous]) {
      if (!slot) continue;
      const record = this.state.slots[slot];
      const path = this.slotPath(slot, 'onnx');
      if (!record || !existsSync(path)) continue;
      const bytes = new Uint8Array(readFileSync(path));
      if (bytes.byteLength !== record.length || sha256Hex(bytes) !== record.artifactSha256) {
        this.log('slot_damaged', { deviceId: this.deviceId, slot });
        continue;
      }
      const manifest = JSON.parse(readFileSync(this.slotPath(slot, 'manifest.json'), 'utf8')) as Manifest;
      try {
        const model = await this.runtime.load(bytes, { sha256: record.artifactSha256, sessionConfig: manifest.quantization.sessionConfig });
        if (slot !== this.state.active) {
          this.state.previous = null;
          this.state.active = slot;
          this.store.save(this.state);
        }
        this.current = { slot, record, model, inflight: 0, retired: false };
        return;
      } catch (err) {
        this.log('slot_load_failed', { deviceId: this.deviceId, slot, err: (err as Error).message });
      }
    }
  }
}
