// A slice of a scenario's fleet, built from plain data so it can run in a child process: devices
// [first, first + count) of `total`, their groups' hardware and faults, and the state a scenario changes
// while it runs (which artifact is the candidate).
import { FleetAgent } from '../device-agent/agent.ts';
import { type FaultCounts, type FaultProfile } from './faults.ts';
import { concurrencyLimited, faultyFetch, FlakyProxy } from './flaky-proxy.ts';

const DOWNLOADS_PER_PROCESS = 64;
/**
 * Modelled inference time of a device with no latency fault, reported as device time (DEVICE_MS). Without
 * it a device would report the simulator host's wall time, and a busy host made latency gates fail
 * scenarios that have no latency fault at all (0.92 ms before, 3.53 ms after: "3.8x slower").
 */
const DEFAULT_DEVICE_MS = 1;
const limitedFetch = concurrencyLimited(DOWNLOADS_PER_PROCESS);
import { latencySampler } from './latency-model.ts';
import { SimulatedFleet } from './fleet.ts';
import { deviceUrlList } from './brokers/broker-mode.ts';
import { groupOf, type DeviceGroup } from './scenario.ts';

export interface DeviceFleetSpec {
  first: number;
  count: number;
  total: number;
  idPrefix: string;
  baseDir: string;
  mqttUrl: string;
  /** a broker cluster's nodes: device i lists them all, starting at node i % n (overrides mqttUrl) */
  mqttUrls?: string[];
  serverUrl: string;
  rootPublicKey: string;
  groups: DeviceGroup[];
  telemetryWindowMs: number;
  /** the agents' mqttSubscribeQos (default 1; 0 on a NATS cluster) */
  mqttSubscribeQos?: 0 | 1;
  /** device id -> enrolled secret */
  credentials?: Record<string, string>;
  /** artifact SHA-256 -> its measured cost over the baseline artifact's (latency-model.ts measureCosts) */
  costRatioByArtifact?: Record<string, number>;
}

export interface DeviceSummary { deviceId: string; group: number; hardware: string; active: string | null; state: string | null; reason: string | null }

export class DeviceFleet {
  readonly fleet: SimulatedFleet;
  private readonly proxies: FlakyProxy[] = [];
  private readonly offlineTimers: NodeJS.Timeout[] = [];
  private readonly profiles: FaultProfile[];
  private readonly groupIndex: number[];

  constructor(readonly spec: DeviceFleetSpec, private readonly proxyPorts: Map<number, number> = new Map()) {
    const s = spec;
    // each device's group, worked out once
    this.groupIndex = Array.from({ length: s.count }, (_, local) => groupOf(s.groups, s.first + local, s.total));
    const groupIndex = (local: number) => this.groupIndex[local];
    this.profiles = Array.from({ length: s.count }, (_, local) => {
      const lm = s.groups[groupIndex(local)].latencyModel;
      // a hardware class's latency model, seeded per device: the same figures on every run of a scenario
      const latency = lm
        ? { baseMs: lm.baseMs, factorByArtifact: {}, sample: latencySampler(lm, 0x9e3779b1 ^ (s.first + local) * 7919), costRatioByArtifact: s.costRatioByArtifact ?? {} }
        : { baseMs: DEFAULT_DEVICE_MS, factorByArtifact: {} };
      const inputMix = s.groups[groupIndex(local)].inputs;
      return { brokenArtifacts: {}, latency, ...(inputMix ? { inputMix } : {}) };
    });
    this.fleet = new SimulatedFleet({
      count: s.count, firstIndex: s.first, baseDir: s.baseDir, idPrefix: s.idPrefix,
      mqttUrl: s.mqttUrl, serverUrl: s.serverUrl, rootPublicKey: s.rootPublicKey,
      telemetryWindowMs: s.telemetryWindowMs, startConcurrency: 100,
      hardware: (local) => s.groups[groupIndex(local)].hardware,
      tags: (local) => s.groups[groupIndex(local)].tags,
      credentials: s.credentials ? (id) => s.credentials![id] : undefined,
      ...(s.mqttSubscribeQos !== undefined ? { agentOverrides: { mqttSubscribeQos: s.mqttSubscribeQos } } : {}),
      faults: (local) => this.profiles[local],
      mqttUrlFor: (local) => {
        const port = this.proxyPorts.get(groupIndex(local));
        if (port) return `mqtt://127.0.0.1:${port}`;
        return s.mqttUrls ? deviceUrlList(s.mqttUrls, s.first + local) : undefined;
      },
      agentDeps: (local) => {
        const f = s.groups[groupIndex(local)].faults;
        return {
          ...(f.clockSkewMs ? { now: () => { this.fleet.faultCounts.skewedClockReads++; return Date.now() + f.clockSkewMs!; } } : {}),
          fetch: f.download ? concurrencyLimited(DOWNLOADS_PER_PROCESS, faultyFetch(f.download, this.fleet.faultCounts)) : limitedFetch,
        };
      },
    });
  }

  /** Start flaky-network proxies for the groups that have them; call before start(). */
  static async withProxies(spec: DeviceFleetSpec): Promise<DeviceFleet> {
    const ports = new Map<number, number>();
    const proxies: FlakyProxy[] = [];
    for (const [g, group] of spec.groups.entries()) {
      if (!group.faults.flakyNetwork) continue;
      const url = new URL(spec.mqttUrl); // one broker: the embedded one (run-scenario refuses the fault on external brokers)
      const p = new FlakyProxy({ host: url.hostname, port: Number(url.port) }, group.faults.flakyNetwork.dropEveryMs);
      ports.set(g, await p.start());
      proxies.push(p);
    }
    const df = new DeviceFleet(spec, ports);
    df.proxies.push(...proxies);
    return df;
  }

  async start(): Promise<void> {
    await this.fleet.start();
  }

  /** The candidate is known once it is pushed: faults that name it apply from now on. */
  setCandidate(artifactSha256: string, campaignStart = Date.now()): void {
    this.fleet.agents.forEach((agent, local) => {
      const f = this.spec.groups[this.groupIndex[local]].faults;
      const p = this.profiles[local];
      if (f.candidateBroken) p.brokenArtifacts = { [artifactSha256]: f.candidateBroken };
      if (f.baseLatencyMs !== undefined || f.candidateLatencyFactor !== undefined) {
        // the factor applies on top of a latency model (which keeps its sampler and measured costs)
        p.latency = { ...p.latency, baseMs: f.baseLatencyMs ?? p.latency?.baseMs ?? DEFAULT_DEVICE_MS, factorByArtifact: f.candidateLatencyFactor ? { [artifactSha256]: f.candidateLatencyFactor } : {} };
      }
      if (f.inputDrift) p.inputDrift = f.inputDrift;
      if (f.offline) this.scheduleOffline(agent, local, f.offline, campaignStart);
    });
  }

  /** Baseline faults (latency) before any candidate exists. */
  applyBaselineFaults(): void {
    this.fleet.agents.forEach((_a, local) => {
      const f = this.spec.groups[this.groupIndex[local]].faults;
      if (f.baseLatencyMs !== undefined) this.profiles[local].latency = { ...this.profiles[local].latency, baseMs: f.baseLatencyMs, factorByArtifact: {} };
    });
  }

  private scheduleOffline(agent: FleetAgent, local: number, o: { afterMs: number; forMs: number }, campaignStart: number): void {
    const wait = Math.max(0, campaignStart + o.afterMs - Date.now());
    this.offlineTimers.push(setTimeout(() => {
      this.fleet.faultCounts.offlineStops++;
      void agent.stop().then(() => {
        this.offlineTimers.push(setTimeout(() => { this.fleet.faultCounts.offlineRestarts++; void this.fleet.restartAgent(local); }, o.forMs));
      });
    }, wait));
  }

  /** Faults injected so far in this slice (the proxies' cuts included). */
  faults(): FaultCounts {
    return { ...this.fleet.faultCounts, connectionsCut: this.fleet.faultCounts.connectionsCut + this.proxies.reduce((n, p) => n + p.connectionsCut, 0) };
  }

  summary(): DeviceSummary[] {
    return this.fleet.agents.map((a, local) => ({
      deviceId: a.deviceId, group: this.groupIndex[local], hardware: a.config.hardware,
      active: a.active?.manifestSha256 ?? null, state: a.lastStatus?.state ?? null, reason: a.lastStatus?.reason ?? null,
    }));
  }

  async stop(): Promise<void> {
    for (const t of this.offlineTimers) clearTimeout(t);
    await this.fleet.stop();
    await Promise.all(this.proxies.map((p) => p.stop()));
  }
}
