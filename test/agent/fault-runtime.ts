// A ModelRuntime for tests: the real onnxruntime-web underneath, plus faults that switch on for a given
// artifact only once its health check has passed (so the model gets through install and misbehaves in
// probation), and a record of which loaded instance has passed its health check.
import type { AgentDeps, PhaseInfo, UpdatePhase } from '../../device-agent/agent.ts';
import { DEVICE_MS, OrtRuntime, type LoadedModel, type ModelRuntime } from '../../device-agent/model-runtime.ts';
import type { Feeds } from '../../runtime/onnx-session.ts';

export type Fault = { kind: 'error' } | { kind: 'slow'; ms: number };

export class FaultRuntime implements ModelRuntime {
  private readonly inner = new OrtRuntime();

  /**
   * With `deviceMs`, every inference reports that device time (a 'slow' fault reports its `ms` instead,
   * without sleeping), as simulated hardware does (DEVICE_MS): a latency limit then judges the modelled
   * device, not how busy the test machine is. Without it, latency is the host's wall time.
   */
  constructor(private readonly opts: { deviceMs?: number } = {}) {}

  readonly faults = new Map<string, Fault>();
  /** the instance most recently loaded per artifact, and whether its health check has passed */
  private readonly latest = new Map<string, { healthy: boolean }>();
  /** runs of `watched` inputs answered by an instance that had not passed its health check */
  unhealthyAnswers = 0;
  watched: Feeds | null = null;

  async load(artifact: Uint8Array, key: { sha256: string; sessionConfig: Record<string, string> }): Promise<LoadedModel> {
    const model = await this.inner.load(artifact, key);
    const tag = { healthy: false };
    this.latest.set(key.sha256, tag);
    return {
      run: async (feeds) => {
        if (this.watched && feeds === this.watched && !tag.healthy) this.unhealthyAnswers++;
        const fault = tag.healthy ? this.faults.get(key.sha256) : undefined;
        if (fault?.kind === 'error') throw new Error('injected fault: inference failed');
        const deviceMs = this.opts.deviceMs === undefined ? undefined : fault?.kind === 'slow' ? fault.ms : this.opts.deviceMs;
        if (fault?.kind === 'slow' && deviceMs === undefined) await new Promise((r) => setTimeout(r, fault.ms));
        const out = await model.run(feeds);
        return deviceMs === undefined ? out : Object.assign({ [DEVICE_MS]: deviceMs }, out);
      },
      release: () => model.release(),
    };
  }

  /** deps for the agent: this runtime, and the health:done hook that marks instances healthy */
  deps(): AgentDeps {
    return {
      runtime: this,
      onPhase: (phase: UpdatePhase, info: PhaseInfo) => {
        if (phase === 'health:done' && info.artifactSha256) this.latest.get(info.artifactSha256)!.healthy = true;
      },
    };
  }

  /** Models restored from disk at start passed their health check when they were installed. */
  markAllHealthy(): void {
    for (const tag of this.latest.values()) tag.healthy = true;
  }
}
