// Shadow mode (issue 17): a candidate model held next to the active one and run on a sample of the live
// infer() inputs, its outputs never returned. It is fetched and verified through the same chain as an
// update (staging, SHA-256, golden health check) into its own slot (`shadow`: slots/shadow.*, so the
// inactive slot keeps the previous model as the revert target), recorded in the state record in one
// durable write after its files (state.shadow with the files' record), and restored from there after a
// restart. Promotion is an ordinary desired state naming the candidate as the active model: the install
// takes the artifact from this slot (stageForPromotion, a rename into staging), so nothing is
// downloaded again.
//
// Off the caller's critical path: infer() answers first, then offers the input here. By default
// (`shadow.thread`) the candidate's session lives in a worker thread with its own onnxruntime-web
// instance (device-agent/shadow-worker.ts), so a caller never waits in the WASM queue behind a shadow
// run; a sampled input is copied into the thread's ring in shared memory, which the thread reads on its
// own, one input at a time (inputs the ring cannot carry go through the queue below). Inline (the
// simulator's shared runtime, or `shadow.thread: false`) the candidate shares the caller's WASM queue and
// a sampled input runs only when that queue is idle, so a caller waits at most for one candidate run
// that started while the runtime was idle. Inputs that wait longer than shadow.maxWaitMs, or find the
// queue full, are dropped and counted.
import { readFileSync } from 'node:fs';
import { runtimeQueueStats, type Feeds, type Outputs } from '../runtime/onnx-session.ts';
import type { DesiredMessage, Manifest, ShadowOutputSums, ShadowTelemetry, Status } from '../shared/messages.ts';
import { UpdateRefused } from '../shared/reason-codes.ts';
import { sha256Hex } from '../shared/crypto.ts';
import { addSample, emptySums, outputKind } from '../shared/shadow-figures.ts';
import { verifyShadow, type VerifiedShadow } from '../shared/verify-shadow.ts';
import type { DeviceIdentity, SignatureCache, TrustState, VerifiedDesired } from '../shared/verify-desired.ts';
import { stageArtifact } from './artifact-fetch.ts';
import type { AgentConfig } from './config.ts';
import { disk } from './disk.ts';
import { fsyncDir, writeFileDurable } from './durable-file.ts';
import { healthVectors } from './golden-set.ts';
import { runHealthCheck } from './health-check.ts';
import { deviceMsOf, isNotAModelError, type LoadedModel, type ModelRuntime } from './model-runtime.ts';
import type { SlotFiles } from './slot-files.ts';
import type { Staging } from './staging.ts';
import type { AgentState, ShadowRecord, SlotName } from './state-store.ts';
import { ThreadRuntime } from './shadow-worker.ts';
import type { StatusReporter } from './status-reporter.ts';
import { TelemetryWindow } from './telemetry-window.ts';

/** Points of a shadow's life where the agent's onPhase is called (crash tests kill the process there). */
export type ShadowPhase =
  | 'shadow:download:start' | 'shadow:download:chunk' | 'shadow:download:done' | 'shadow:health:done'
  | 'shadow:write:manifest' | 'shadow:write:artifact' | 'shadow:loaded' | 'shadow:sample' | 'shadow:unloaded';

export interface ShadowHost {
  deviceId: string;
  config: AgentConfig;
  now(): number;
  random(): number;
  log(event: string, fields: Record<string, unknown>): void;
  phase(phase: ShadowPhase, info: { modelId?: string; version?: number; artifactSha256?: string; n?: number }): void;
  state(): AgentState;
  save(): void;
  status: StatusReporter;
  slots: SlotFiles;
  staging: Staging;
  runtime: ModelRuntime;
  fetch: typeof fetch | undefined;
  authorization: () => string | undefined;
  signal: AbortSignal;
  /** resident memory now (default process.memoryUsage.rss) */
  rss?: () => number;
  /** true while the runtime has calls waiting or running (default: the WASM queue's figures; never with a thread) */
  busy?: () => boolean;
  /** run the candidate in its own worker thread (config shadow.thread; the agent passes false when its runtime is injected) */
  thread?: boolean;
}

interface Held {
  record: ShadowRecord;
  model: LoadedModel;
  manifest: Manifest;
  kinds: Map<string, ShadowOutputSums['kind']>;
  sums: Record<string, ShadowOutputSums>;
  samples: number; errors: number; dropped: number; activeMs: number; candidateMs: number;
  /** the candidate's drift histograms, by its own baseline */
  window: TelemetryWindow;
  /** since it was loaded: compared samples (phase counter), and dropped inputs and errors of windows already cut */
  total: number;
  totalDropped: number;
  totalErrors: number;
}

interface Sample { feeds: Feeds; active: Outputs; activeMs: number; at: number }

/** memory a model takes while loaded, estimated before anything is fetched: the bytes and the session built from them */
const LOAD_FACTOR = 2;
/**
 * what the shadow thread itself adds before any model (a V8 isolate and a second onnxruntime-web WASM
 * instance: ~34 MB of compiled code for its 14 MB WASM module, its heap and the session; measured with
 * the digits model on x86-64 Node 20: 122 to 179 MB in three runs, bench/shadow.ts `memory.threadBytes`).
 */
export const THREAD_RSS_BYTES = 176 * 1024 * 1024;

/**
 * The one thing done on the caller's path for a sampled input: a copy the runner owns (the caller may
 * reuse its buffers once it has its answer). A typed array's copy owns its whole buffer, so the thread
 * can take it over (transferred, not cloned again).
 */
function copyFeeds(feeds: Feeds): Feeds {
  const out: Feeds = {};
  for (const name in feeds) {
    const t = feeds[name];
    const copy: Feeds[string] = { data: t.data.slice(), dims: t.dims.slice() };
    if (t.type !== undefined) copy.type = t.type;
    out[name] = copy;
  }
  return out;
}

export class ShadowRunner {
  private held: Held | null = null;
  private readonly queue: Sample[] = [];
  private pumping = false;
  private timer: NodeJS.Timeout | NodeJS.Immediate | null = null;
  private stopped = false;
  /** inputs taken by the sample since the start (queued or dropped; the bench tells sampled calls apart with it) */
  private sampled = 0;
  private readonly rss: () => number;
  private readonly busy: () => boolean;
  /** where the candidate's session lives: its own thread, or the agent's runtime */
  private readonly runtime: ModelRuntime;
  private readonly threaded: ThreadRuntime | null;

  constructor(private readonly host: ShadowHost) {
    this.rss = host.rss ?? (() => process.memoryUsage.rss());
    this.threaded = host.thread ? new ThreadRuntime(undefined, { ringSlots: host.config.shadow.queue }) : null;
    this.runtime = this.threaded ?? host.runtime;
    // a thread has its own WASM queue: the caller's queue being busy is no reason to wait
    this.busy = host.busy ?? (this.threaded ? () => false : () => { const q = runtimeQueueStats(); return q.waiting + q.running > 0; });
  }

  /** true when the candidate runs in its own thread (the bench and tests read it) */
  get inThread(): boolean { return this.threaded !== null; }

  /** the candidate held in shadow, or null */
  get candidate(): { modelId: string; version: number; manifestSha256: string; sampleRate: number } | null {
    const r = this.held?.record;
    return r ? { modelId: r.modelId, version: r.version, manifestSha256: r.manifestSha256, sampleRate: r.sampleRate } : null;
  }

  // ---- on the caller's path: constant time, no await -----------------------------------------

  /**
   * A model run starts on the caller's thread (agent hook; what it returns goes to leaveCall when the run
   * ends). With a candidate in a thread, the thread waits for the caller's runs to end before it starts
   * one of its own, so the two rarely share the machine mid-call. One atomic add, nothing else.
   */
  enterCall(): Int32Array | null { return this.threaded?.enterCall() ?? null; }

  /** the run begun with enterCall has ended */
  leaveCall(token: Int32Array | null): void { if (token) this.threaded!.leaveCall(token); }

  /** since the candidate was loaded: inputs compared, dropped, and candidate errors (the bench reads these) */
  get counts(): { compared: number; dropped: number; errors: number; sampled: number } | null {
    const h = this.held;
    return h ? { compared: h.total, dropped: h.totalDropped + h.dropped, errors: h.totalErrors + h.errors, sampled: this.sampled } : null;
  }

  /**
   * After infer() has its answer: maybe queue this input for the candidate. In a thread, the input is
   * copied into the thread's sample ring in shared memory, which the thread reads on its own
   * (shadow-worker.ts `submit`): nothing is allocated for it and nothing scheduled on this thread; the
   * comparison runs when the thread's answer arrives. Otherwise (inline, or an input the ring does not
   * take) a copy is queued and the pump scheduled once (a setImmediate). Either way what a sampled call
   * pays is a few dozen operations, each 1 to 3 µs on the cold cache of a device that slept between
   * calls (bench/shadow.ts `alternating.sampledCall`: +0.03 to +0.05 ms on a 0.12 to 0.16 ms call).
   */
  offer(feeds: Feeds, active: Outputs, activeMs: number): void {
    const h = this.held;
    if (!h || this.stopped || !(this.host.random() < h.record.sampleRate)) return;
    this.sampled++;
    const ring = h.model.submit?.(feeds, this.host.config.shadow.maxWaitMs, (err, out) => (out ? this.compare(h, active, activeMs, out, 0) : this.failed(h, err)));
    if (ring === 'queued') return;
    if (ring === 'full') { h.dropped++; return; }
    if (this.queue.length >= this.host.config.shadow.queue) { h.dropped++; return; }
    this.queue.push({ feeds: copyFeeds(feeds), active, activeMs, at: performance.now() });
    if (!this.pumping && !this.timer) this.schedule(0);
  }

  private schedule(ms: number): void {
    if (this.pumping || this.timer || this.stopped) return;
    // At once (setImmediate: after the caller's answer and its continuation), so the run is over long
    // before a device's next timer-driven call; when the runtime was busy, again in a millisecond.
    const fire = () => { this.timer = null; void this.pump(); };
    this.timer = ms === 0 ? setImmediate(fire) : setTimeout(fire, ms);
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length && this.held && !this.stopped) {
        const maxWait = this.host.config.shadow.maxWaitMs;
        while (this.queue.length && performance.now() - this.queue[0].at > maxWait) { this.queue.shift(); this.held.dropped++; }
        if (!this.queue.length) break;
        if (this.busy()) { this.pumping = false; this.schedule(1); return; }
        await this.runOne(this.held, this.queue.shift()!);
      }
    } finally {
      this.pumping = false;
    }
  }

  private async runOne(h: Held, s: Sample): Promise<void> {
    const t0 = performance.now();
    let out: Outputs;
    try {
      out = await h.model.run(s.feeds, { transfer: true }); // the copies are ours: a thread takes them over
    } catch (err) {
      return this.failed(h, err);
    }
    this.compare(h, s.active, s.activeMs, out, t0);
  }

  /** A candidate run that failed: the thread's or the simulator's failure is a dropped input, anything else the candidate's error. */
  private failed(h: Held, err: unknown): void {
    if (this.held !== h) return;
    if (isNotAModelError(err)) h.dropped++;
    else { h.errors++; h.window.record(0, false); }
  }

  /** The candidate's answer next to the active one's on the same input (`t0`: when the run began, for runtimes that do not time it). */
  private compare(h: Held, active: Outputs, activeMs: number, out: Outputs, t0: number): void {
    if (this.held !== h) return;
    const ms = deviceMsOf(out) ?? performance.now() - t0;
    let comparable = true;
    for (const [name, a] of Object.entries(active)) {
      const c = out[name];
      if (!c) { comparable = false; break; }
      const kind = h.kinds.get(name) ?? 'fidelity';
      const sums = h.sums[name] ??= emptySums(kind);
      if (!addSample(sums, a, c)) comparable = false;
    }
    if (!comparable) { h.errors++; h.window.record(0, false); return; }
    h.samples++;
    h.total++;
    h.activeMs += activeMs;
    h.candidateMs += ms;
    h.window.record(ms, true, undefined, out);
    this.host.phase('shadow:sample', { modelId: h.record.modelId, version: h.record.version, n: h.total });
  }

  /** The window's figures (and fresh counters for the next one); undefined without a shadow. */
  cut(): ShadowTelemetry | undefined {
    const h = this.held;
    if (!h) return undefined;
    const w = h.window.cut(this.host.deviceId, 0, null);
    const t: ShadowTelemetry = {
      modelId: h.record.modelId, version: h.record.version, manifestSha256: h.record.manifestSha256,
      samples: h.samples, errors: h.errors, dropped: h.dropped, activeMs: h.activeMs, candidateMs: h.candidateMs,
      outputs: h.sums,
      ...(w.outputHistograms ? { outputHistograms: w.outputHistograms } : {}),
    };
    h.sums = {};
    h.totalDropped += h.dropped; h.totalErrors += h.errors;
    h.samples = 0; h.errors = 0; h.dropped = 0; h.activeMs = 0; h.candidateMs = 0;
    return t;
  }

  // ---- desired states (serialised with installs by the agent) ------------------------------

  /**
   * After the active part of a verified desired state is settled: hold the shadow it names (fetch,
   * verify, load), keep the one already held, or unload it when the desired state names none.
   */
  async reconcile(msg: DesiredMessage, v: VerifiedDesired, trust: TrustState, device: DeviceIdentity, cache: SignatureCache): Promise<void> {
    if (this.stopped) return;
    const state = this.host.state();
    let vs: VerifiedShadow | null;
    try {
      vs = verifyShadow(msg, v, trust, device, this.host.now(), cache);
    } catch (err) {
      if (!(err instanceof UpdateRefused)) throw err;
      const named = v.desired.shadow!;
      await this.unload(null);
      this.host.status.durable('shadow_failed', { directorSeq: v.desired.seq, manifestSha256: named.manifestSha256, modelId: named.modelId, version: named.version, reason: err.reason, detail: err.message });
      return;
    }
    if (!vs) {
      if (state.shadow) await this.unload({ directorSeq: v.desired.seq, detail: 'the desired state names no shadow any more' });
      return;
    }
    const base = { directorSeq: v.desired.seq, manifestSha256: vs.manifestSha256, modelId: vs.manifest.modelId, version: vs.manifest.version };
    if (state.shadow?.manifestSha256 === vs.manifestSha256 && this.held) {
      // already held: only the sample rate (and the assignment it answers) may change
      state.shadow = { ...state.shadow, sampleRate: vs.sampleRate, directorSeq: v.desired.seq };
      this.held.record = state.shadow;
      this.host.status.durable('shadow_loaded', { ...base, detail: `already held in shadow; sample rate ${vs.sampleRate}` });
      return;
    }
    if (state.shadow) await this.unload({ directorSeq: v.desired.seq, detail: `replaced by ${vs.manifest.modelId} v${vs.manifest.version}` });
    try {
      await this.load(vs, v.desired.seq);
    } catch (err) {
      if (!(err instanceof UpdateRefused)) throw err;
      this.host.status.durable('shadow_failed', { ...base, reason: err.reason, detail: err.message });
    }
  }

  private checkMemory(m: Manifest, when: 'before' | 'after'): void {
    const ceiling = this.host.config.shadow.maxRssBytes;
    if (ceiling === undefined) return;
    const rss = this.rss();
    const thread = when === 'before' && this.threaded && !this.threaded.running ? THREAD_RSS_BYTES : 0;
    const need = when === 'before' ? rss + thread + LOAD_FACTOR * m.artifact.length : rss;
    if (need > ceiling) {
      throw new UpdateRefused('SHADOW_MEMORY', when === 'before'
        ? `holding ${m.modelId} v${m.version} in shadow needs about ${mb(need)} (resident ${mb(rss)} + ${thread ? `${mb(thread)} shadow thread + ` : ''}${LOAD_FACTOR} x ${mb(m.artifact.length)} artifact), over the ceiling of ${mb(ceiling)} (shadow.maxRssBytes)`
        : `with ${m.modelId} v${m.version} loaded in shadow the agent holds ${mb(rss)}, over the ceiling of ${mb(ceiling)} (shadow.maxRssBytes); unloaded`);
    }
  }

  private async load(vs: VerifiedShadow, directorSeq: number): Promise<void> {
    const h = this.host;
    const m = vs.manifest;
    const state = h.state();
    if (!state.active) throw new UpdateRefused('MALFORMED', 'no active model to compare a shadow with');
    this.checkMemory(m, 'before');
    const slot = 'shadow' as const; // its own place: the inactive slot keeps the previous model (the revert target)
    const info = { modelId: m.modelId, version: m.version, artifactSha256: m.artifact.sha256 };
    h.phase('shadow:download:start', info);
    let chunks = 0;
    const { path: part, bytes } = await stageArtifact({
      staging: h.staging, config: h.config, authorization: h.authorization, artifact: m.artifact, fetch: h.fetch, random: h.random, signal: h.signal,
      onChunk: () => h.phase('shadow:download:chunk', { ...info, n: ++chunks }),
      onDownloaded: (dl) => { h.log('shadow_download_done', { deviceId: h.deviceId, ...dl }); h.phase('shadow:download:done', info); },
    });
    const golden = await healthVectors(m, { ...h.config, authorization: h.authorization, dest: `${part}.golden.tmp`, random: h.random, fetch: h.fetch });
    let model: LoadedModel;
    try {
      model = await this.runtime.load(bytes, { sha256: m.artifact.sha256, sessionConfig: m.quantization.sessionConfig });
    } catch (err) {
      h.staging.remove(m.artifact.sha256);
      throw new UpdateRefused('LOAD_FAILED', `onnxruntime could not load the shadow candidate: ${(err as Error).message}`);
    }
    try {
      this.checkMemory(m, 'after');
      // in a thread: the run's time inside the thread (a loaded host's event loop is not the candidate's latency)
      const health = await runHealthCheck(model, m.healthCheck, golden, { runtimeTime: this.threaded !== null });
      h.log('shadow_health_check_passed', { deviceId: h.deviceId, ...health });
      h.phase('shadow:health:done', info);
      if (this.stopped) throw new Error('agent stopping');
      // files first, record after: until the record names them, a crash leaves files the next start clears
      h.slots.clear(slot);
      writeFileDurable(h.slots.path(slot, 'manifest.json'), vs.manifestText);
      h.phase('shadow:write:manifest', info);
      disk.renameSync(part, h.slots.path(slot, 'onnx'));
      fsyncDir(h.slots.dir);
      h.phase('shadow:write:artifact', info);
    } catch (err) {
      await model.release();
      h.staging.remove(m.artifact.sha256);
      h.slots.clear(slot); // no record names it: nothing else to undo
      throw err;
    }
    const files = { manifestSha256: vs.manifestSha256, modelId: m.modelId, version: m.version, artifactSha256: m.artifact.sha256, length: m.artifact.length };
    const record: ShadowRecord = { slot, model: files, manifestSha256: vs.manifestSha256, modelId: m.modelId, version: m.version, directorSeq, sampleRate: vs.sampleRate };
    const s = h.state();
    s.shadow = record;
    const outcome = h.status.queue('shadow_loaded', { directorSeq, manifestSha256: vs.manifestSha256, modelId: m.modelId, version: m.version, detail: `held in shadow in its own slot; sample rate ${vs.sampleRate}` });
    h.save();
    h.phase('shadow:loaded', info);
    this.hold(record, model, m);
    h.status.announce(outcome);
  }

  private hold(record: ShadowRecord, model: LoadedModel, m: Manifest): void {
    const window = new TelemetryWindow(this.host.now);
    window.setBaseline(m.driftBaseline ? { inputs: {}, outputs: m.driftBaseline.outputs } : undefined);
    const kinds = new Map(m.io.outputs.map((o) => [o.name, outputKind(o)] as const));
    this.held = { record, model, manifest: m, kinds, sums: {}, samples: 0, errors: 0, dropped: 0, activeMs: 0, candidateMs: 0, window, total: 0, totalDropped: 0, totalErrors: 0 };
    model.warm?.(m.io.inputs); // the sampled call's path compiled before the first sample (shadow-worker.ts warm)
  }

  /** Drop the shadow: record and slot in one write (reported unless `report` is null), then its files and session. */
  async unload(report: { directorSeq: number; detail: string } | null): Promise<void> {
    const h = this.host;
    const s = h.state();
    const r = s.shadow;
    const held = this.held;
    this.held = null;
    this.queue.length = 0;
    if (r) {
      s.shadow = null;
      const legacy = r.slot !== 'shadow' ? r.slot : null; // held in the inactive slot (records of older agents)
      if (legacy && s.slots[legacy] && s.active !== legacy) s.slots[legacy] = null;
      const outcome = report ? h.status.queue('shadow_unloaded', { directorSeq: report.directorSeq, manifestSha256: r.manifestSha256, modelId: r.modelId, version: r.version, detail: report.detail }) : null;
      h.save();
      if (!legacy || s.active !== legacy) h.slots.clear(r.slot);
      h.phase('shadow:unloaded', { modelId: r.modelId, version: r.version });
      if (outcome) h.status.announce(outcome);
    }
    await held?.model.release();
  }

  /** The agent claimed `slot` (an install): a candidate held there (old layout) is gone from the record already. */
  onSlotClaimed(slot: SlotName): void {
    const held = this.held;
    if (held?.record.slot !== slot) return;
    this.held = null;
    this.queue.length = 0;
    void held.model.release();
  }

  /**
   * A promotion (an install of the candidate held here, agent.ts stageModel): its bytes, checked again
   * against the signed artifact, are moved (renamed, not copied, not fetched) into staging, from where
   * the install puts them in a slot like a finished download. The shadow ends first, in one durable
   * write; a crash before the rename leaves files no record names (cleared at the next start), a crash
   * after it an abandoned update (the device stays on its active model). Null when the candidate is not
   * these bytes (or not in its own slot): the install stages them another way.
   */
  stageForPromotion(a: Manifest['artifact'], keep: readonly string[] = []): { path: string; bytes: Uint8Array } | null {
    const h = this.host;
    const s = h.state();
    const r = s.shadow;
    if (r?.slot !== 'shadow' || !r.model || r.model.artifactSha256 !== a.sha256 || r.model.length !== a.length) return null;
    let bytes: Uint8Array;
    try { bytes = readFileSync(h.slots.path('shadow', 'onnx')); } catch { return null; }
    if (bytes.byteLength !== a.length || sha256Hex(bytes) !== a.sha256) return null; // damaged: the install fetches it
    s.shadow = null;
    h.save();
    const held = this.held;
    this.held = null;
    this.queue.length = 0;
    void held?.model.release();
    h.staging.removeExcept(a.sha256, keep);
    const path = h.staging.path(a.sha256);
    disk.renameSync(h.slots.path('shadow', 'onnx'), path);
    h.slots.clear('shadow');
    fsyncDir(h.staging.dir);
    fsyncDir(h.slots.dir);
    h.log('shadow_promoted', { deviceId: h.deviceId, modelId: r.modelId, version: r.version, artifactSha256: a.sha256, bytes: a.length });
    return { path, bytes };
  }

  // ---- start and stop ----------------------------------------------------------------------

  /**
   * At start, after the active model is restored: a shadow on record is loaded again from its slot (its
   * bytes and manifest checked against the record). One that does not verify, load or fit is dropped, said why.
   */
  async restore(): Promise<void> {
    const h = this.host;
    const s = h.state();
    const r = s.shadow;
    // files of the shadow's own slot that no record names: a crash before the record was written (a
    // load), or after it stopped naming them (a promotion moving the bytes, an unload)
    if (r?.slot !== 'shadow') h.slots.clear('shadow');
    if (!r) return;
    const legacy = r.slot !== 'shadow' ? r.slot : null; // held in the inactive slot (records of older agents)
    const rec = legacy ? s.slots[legacy] : r.model;
    const about = { directorSeq: r.directorSeq, manifestSha256: r.manifestSha256, modelId: r.modelId, version: r.version };
    const drop = (reason: Status['reason'], detail: string) => {
      s.shadow = null;
      if (legacy && s.active !== legacy && s.previous !== legacy) s.slots[legacy] = null;
      const outcome = h.status.queue('shadow_failed', { ...about, reason, detail });
      h.save();
      if (!legacy || !s.slots[legacy]) h.slots.clear(r.slot);
      h.status.announce(outcome);
    };
    if (!rec || rec.manifestSha256 !== r.manifestSha256 || (legacy && (s.active === legacy || s.previous === legacy))) return drop('SLOT_DAMAGED', `the shadow candidate's slot ${r.slot} no longer holds it; dropped`);
    const read = h.slots.readVerified(r.slot, rec);
    if ('error' in read) return drop('SLOT_DAMAGED', `the shadow candidate's slot ${r.slot} does not verify (${read.error}); dropped`);
    try {
      this.checkMemory(read.manifest, 'before');
    } catch (err) {
      return drop('SHADOW_MEMORY', (err as Error).message);
    }
    let model: LoadedModel;
    try {
      model = await this.runtime.load(read.bytes, { sha256: rec.artifactSha256, sessionConfig: read.manifest.quantization.sessionConfig });
    } catch (err) {
      return drop('LOAD_FAILED', `the shadow candidate would not load at start: ${(err as Error).message}`);
    }
    if (this.stopped) { await model.release(); return; }
    this.hold(r, model, read.manifest);
    h.log('shadow_restored', { deviceId: h.deviceId, slot: r.slot, modelId: r.modelId, version: r.version });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) { clearTimeout(this.timer as NodeJS.Timeout); clearImmediate(this.timer as NodeJS.Immediate); }
    this.timer = null;
    this.queue.length = 0;
    const held = this.held;
    this.held = null;
    await held?.model.release();
  }
}

function mb(n: number): string {
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
