// The health check's latency budget judges the device time a runtime reports (DEVICE_MS: simulated
// hardware), as telemetry and probation do, and the wall time when the runtime reports none (onnxruntime on
// a real device). A simulated device's wall time is its host's load: on a loaded 2-core host good updates
// failed LATENCY_BUDGET (campaigns.test.ts pushes with a 5 s budget; run-scenario.ts had raised its budgets
// to 600 s for the same reason). Real parts: a test server, one agent, onnxruntime-web underneath; the
// runtime wrapper stands for a busy host (every call takes 300 ms of wall time) and a modelled device.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetAgent } from '../../device-agent/agent.ts';
import { DEVICE_MS, OrtRuntime, type LoadedModel, type ModelRuntime } from '../../device-agent/model-runtime.ts';
import type { Feeds, Outputs } from '../../runtime/onnx-session.ts';
import { assign, pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { outcome, startAgent } from './fixture.ts';

class BusyHostRuntime implements ModelRuntime {
  private readonly inner = new OrtRuntime();
  /** the device time each call reports (undefined: none, as onnxruntime on a device) */
  deviceMs: number | undefined = 2;
  constructor(private readonly wallMs: number) {}

  async load(artifact: Uint8Array, key: { sha256: string; sessionConfig: Record<string, string> }): Promise<LoadedModel> {
    const model = await this.inner.load(artifact, key);
    return {
      release: () => model.release(),
      run: async (feeds: Feeds): Promise<Outputs> => {
        await new Promise((r) => setTimeout(r, this.wallMs));
        const out = await model.run(feeds);
        return this.deviceMs === undefined ? out : Object.assign({ [DEVICE_MS]: this.deviceMs }, out);
      },
    };
  }
}

describe('the health check latency budget', { timeout: 90_000 }, () => {
  let server: TestServer;
  let agent: FleetAgent;
  const runtime = new BusyHostRuntime(300);
  const push = (seed: number) => pushBundle(server, 'tiny', tinyClassifier(seed), { quantize: 'none', healthCheck: { latencyBudgetMs: 100 } });
  beforeAll(async () => {
    server = await startTestServer();
    agent = await startAgent(server, 'hc-time-1', {}, { runtime });
  }, 60_000);
  afterAll(async () => {
    await agent?.stop();
    await server?.close();
  });

  it('a simulated device within its budget passes on a host slower than the budget', async () => {
    runtime.deviceMs = 2;
    const v = await push(1);
    await assign(server, v.manifestSha256, [agent.deviceId]);
    const s = await outcome(agent, v.manifestSha256, 30_000);
    expect([s.state, s.reason]).toEqual(['active', undefined]);
  });

  it('a simulated device over its budget fails LATENCY_BUDGET, naming its device time', async () => {
    runtime.deviceMs = 150;
    const v = await push(2);
    await assign(server, v.manifestSha256, [agent.deviceId]);
    const s = await outcome(agent, v.manifestSha256, 30_000);
    expect([s.state, s.reason]).toEqual(['failed', 'LATENCY_BUDGET']);
    expect(s.detail).toContain('took up to 150.0 ms, budget 100 ms');
  });

  it('a runtime that reports no device time is judged on the wall time', async () => {
    runtime.deviceMs = undefined;
    const v = await push(3);
    await assign(server, v.manifestSha256, [agent.deviceId]);
    const s = await outcome(agent, v.manifestSha256, 30_000);
    expect([s.state, s.reason]).toEqual(['failed', 'LATENCY_BUDGET']);
    expect(s.detail).toMatch(/took up to \d{3,}\.\d ms, budget 100 ms/);
  });
});
