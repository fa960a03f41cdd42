// A simulated fleet: N real FleetAgent instances in one process, each with its own id, data folder and
// MQTT connection. Devices with the same model share one onnxruntime-web session (SharedOrtRuntime) and
// one signature cache, so memory and crypto cost stay bounded as N grows.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { FleetAgent, type AgentDeps } from '../device-agent/agent.ts';
import { parseAgentConfig, type AgentConfigInput } from '../device-agent/config.ts';
import { SharedOrtRuntime, type ModelRuntime } from '../device-agent/model-runtime.ts';
import type { Feeds } from '../runtime/onnx-session.ts';
import type { Status } from '../shared/messages.ts';
import { isNotAModelError } from '../device-agent/model-runtime.ts';
import { applyInputDrift, applyInputMix, FaultyRuntime, noFaults, type FaultProfile, type SimulatorHealth } from './faults.ts';
import { SignatureCache } from '../shared/verify-desired.ts';

export interface FleetOptions {
  count: number;
  baseDir: string;
  mqttUrl: string;
  serverUrl: string;
  rootPublicKey: string;
  /** the CA every device pins for mqtts:// and https:// (agent caFile) */
  caFile?: string;
  idPrefix?: string;
  /** hardware class of device i (default 'generic') */
  hardware?: (i: number) => string;
  tags?: (i: number) => string[];
  telemetryWindowMs?: number;
  /** how many agents connect at once while starting */
  startConcurrency?: number;
  runtime?: ModelRuntime;
  agentOverrides?: Partial<AgentConfigInput>;
  /** the enrolled secret of each device (POST /v1/enroll); without one a device connects with no credential */
  credentials?: (deviceId: string) => string | undefined;
  /** fault profile of device i; read on every inference, so a test may change it while the fleet runs */
  faults?: (i: number) => FaultProfile;
  /** index of the first device (device ids are <idPrefix>-<index>), for fleets split over processes */
  firstIndex?: number;
  /** a different broker address for device i (a flaky-network proxy) */
  mqttUrlFor?: (i: number) => string | undefined;
  /** extra agent dependencies for device i (a skewed clock, a faulty fetch) */
  agentDeps?: (i: number) => Partial<AgentDeps>;
}

export interface WorkloadOptions {
  /** inferences per second per device */
  ratePerSecond: number;
  /** the inputs device i sends on its n-th call */
  inputs: (i: number, n: number) => Feeds;
}

export class SimulatedFleet {
  readonly agents: FleetAgent[] = [];
  readonly runtime: ModelRuntime;
  readonly signatureCache = new SignatureCache(4096);
  /** faults injected so far by the runtime wrapper and the workload (the owner of other faults adds its own) */
  readonly faultCounts = noFaults();
  /** failures of the simulator itself (its shared runtime), never counted against a model */
  readonly health: SimulatorHealth = { infraFailures: 0, firstInfraFailure: null, releasedRuns: 0 };

  constructor(private readonly opts: FleetOptions) {
    this.runtime = opts.runtime ?? new SharedOrtRuntime();
  }

  async start(): Promise<void> {
    const o = this.opts;
    for (let i = 0; i < o.count; i++) this.agents.push(this.makeAgent(i));
    const concurrency = o.startConcurrency ?? 50;
    for (let i = 0; i < this.agents.length; i += concurrency) {
      const batch = this.agents.slice(i, i + concurrency);
      await Promise.all(batch.map((a) => this.startAgent(a)));
    }
  }

  private async startAgent(a: FleetAgent): Promise<void> {
    const connected = new Promise<void>((resolve) => a.once('connected', () => resolve()));
    await a.start();
    await connected;
  }

  /** Replace device i with a fresh agent on the same data folder (a device coming back after being off). */
  async restartAgent(i: number): Promise<FleetAgent> {
    await this.agents[i].stop();
    this.agents[i] = this.makeAgent(i);
    await this.startAgent(this.agents[i]);
    return this.agents[i];
  }

  private makeAgent(i: number): FleetAgent {
    const o = this.opts;
    const deviceId = `${o.idPrefix ?? 'sim'}-${String((o.firstIndex ?? 0) + i).padStart(5, '0')}`;
    const dataDir = join(o.baseDir, deviceId);
    mkdirSync(dataDir, { recursive: true });
    const config = parseAgentConfig({
      deviceId, dataDir, mqttUrl: o.mqttUrlFor?.(i) ?? o.mqttUrl, serverUrl: o.serverUrl, rootPublicKey: o.rootPublicKey,
      hardware: o.hardware?.(i) ?? 'generic', tags: o.tags?.(i) ?? [],
      telemetryWindowMs: o.telemetryWindowMs ?? 60_000,
      reconnectMinMs: 200,
      download: { retries: 3, backoffMs: 100, timeoutMs: 30_000 },
      ...(o.credentials?.(deviceId) ? { deviceSecret: o.credentials(deviceId) } : {}),
      ...(o.caFile ? { caFile: o.caFile } : {}),
      ...o.agentOverrides,
    });
    const runtime = o.faults ? new FaultyRuntime(this.runtime, () => o.faults!(i), this.faultCounts, this.health) : this.runtime;
    return new FleetAgent(config, { runtime, signatureCache: this.signatureCache, ...o.agentDeps?.(i) });
  }

  async stop(): Promise<void> {
    this.stopWorkload();
    await Promise.all(this.agents.map((a) => a.stop()));
  }

  private workload: NodeJS.Timeout | null = null;
  /**
   * calls: infer() calls made; answered / errors: their outcomes (errors include the faults a profile
   * injects); infraFailures: calls the simulator's runtime failed (not counted by the agent);
   * busy: calls due while the device's previous call was still running (skipped, as a real device's loop
   * would, never queued); late: calls missed because the simulator's event loop woke the device's loop
   * too late (host over capacity); noModel: calls due before the device had an active model.
   */
  readonly workloadStats = { calls: 0, answered: 0, errors: 0, infraFailures: 0, busy: 0, late: 0, noModel: 0 };

  /**
   * The devices' own code: every device with an active model calls infer() at the given rate, with its
   * fault profile's input drift applied, one call at a time per device. One timer drives the whole fleet
   * (spread over the period).
   */
  startWorkload(w: WorkloadOptions): void {
    this.stopWorkload();
    const tickMs = 50;
    // credit from the time that really passed: calls a delayed tick could not make are counted (late),
    // so a host that cannot keep up shows as a shortfall, never as a silently lower rate
    let last = performance.now();
    const credit = new Array<number>(this.agents.length).fill(0).map((_, i) => (i % 10) / 10);
    const calls = new Array<number>(this.agents.length).fill(0);
    const busy = new Array<boolean>(this.agents.length).fill(false);
    const st = this.workloadStats;
    this.workload = setInterval(() => {
      const now = performance.now();
      const perTick = (w.ratePerSecond * Math.min(now - last, 5000)) / 1000;
      last = now;
      this.agents.forEach((agent, i) => {
        credit[i] += perTick;
        if (credit[i] < 1) return;
        // a device's loop that wakes up late runs once, as a real one would: the calls it missed are 'late'
        const due = Math.floor(credit[i]);
        credit[i] -= due;
        st.late += due - 1;
        if (!agent.active) { st.noModel++; return; }
        if (busy[i]) { st.busy++; return; }
        const drift = this.opts.faults?.(i).inputDrift;
        if (drift) this.faultCounts.driftedInputs++;
        const mix = this.opts.faults?.(i).inputMix;
        if (mix && calls[i] % mix.every === mix.every - 1) this.faultCounts.mixedInputs++;
        const feeds = applyInputDrift(applyInputMix(w.inputs(i, calls[i]), mix, (this.opts.firstIndex ?? 0) + i, calls[i]++), drift);
        st.calls++;
        busy[i] = true;
        agent.infer(feeds).then(
          () => { st.answered++; },
          (err) => { if (isNotAModelError(err)) st.infraFailures++; else st.errors++; },
        ).finally(() => { busy[i] = false; });
      });
    }, tickMs);
  }

  stopWorkload(): void {
    if (this.workload) clearInterval(this.workload);
    this.workload = null;
  }

  /** Resolve when every agent's latest status satisfies pred; reject after timeoutMs with the stragglers. */
  async waitAll(pred: (s: Status, agent: FleetAgent) => boolean, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const pending = this.agents.filter((a) => !(a.lastStatus && pred(a.lastStatus, a)));
      if (pending.length === 0) return;
      if (Date.now() > deadline) {
        throw new Error(`${pending.length} of ${this.agents.length} devices not there after ${timeoutMs} ms; first: ${pending[0].deviceId} ${JSON.stringify(pending[0].lastStatus)}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Tally of the latest status of every device. */
  summary(manifestSha256?: string): { devices: number; updated: number; reverted: number; failed: number; rejected: number; byReason: Record<string, number> } {
    const s = { devices: this.agents.length, updated: 0, reverted: 0, failed: 0, rejected: 0, byReason: {} as Record<string, number> };
    for (const a of this.agents) {
      const st = a.lastStatus;
      if (manifestSha256 ? a.active?.manifestSha256 === manifestSha256 : st?.state === 'active') s.updated++;
      if (st?.state === 'reverted') s.reverted++;
      if (st?.state === 'failed') s.failed++;
      if (st?.state === 'rejected') s.rejected++;
      if (st?.reason) s.byReason[st.reason] = (s.byReason[st.reason] ?? 0) + 1;
    }
    return s;
  }
}
