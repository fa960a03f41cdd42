// Device code keeps calling infer() from several loops while the agent installs, swaps and finishes
// probation twice: no call fails, every answer comes from one of the two signed models, and no call is
// answered by a model instance before its health check passed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetAgent } from '../../device-agent/agent.ts';
import { createSession, runSession, type Feeds } from '../../runtime/onnx-session.ts';
import { assign, pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { FaultRuntime } from './fault-runtime.ts';
import { settled, startAgent } from './fixture.ts';

const feeds: Feeds = { x: { data: Float32Array.from([0.1, -0.4, 0.9, 0.3, -0.7, 0.2, 0.5, -0.1]), dims: [1, 8] } };

async function reference(bytes: Uint8Array): Promise<number[]> {
  const session = await createSession(bytes);
  try {
    return Array.from((await runSession(session, feeds)).probs.data as Float32Array);
  } finally {
    await session.release();
  }
}

describe('hot swap under load', () => {
  let server: TestServer;
  let agent: FleetAgent;
  const runtime = new FaultRuntime();
  runtime.watched = feeds;

  beforeAll(async () => { server = await startTestServer(); }, 60_000);
  afterAll(async () => { await agent?.stop(); await server?.close(); });

  it('no infer() fails and none is answered by an unchecked model during two swaps', async () => {
    const [m1, m2] = [tinyClassifier(1), tinyClassifier(2)];
    const expected = [await reference(m1), await reference(m2)];
    const v1 = await pushBundle(server, 'tiny', m1);
    const v2 = await pushBundle(server, 'tiny', m2);
    const v3 = await pushBundle(server, 'tiny', m1); // a new version of the first model: a second swap
    agent = await startAgent(server, 'swapper-1', { probationInferences: 200, probationSeconds: 0 }, runtime.deps());
    const first = settled(agent, v1.manifestSha256, ['probation_passed', 'failed', 'reverted']);
    await assign(server, v1.manifestSha256, [agent.deviceId]);
    await agent.waitForStatus((s) => s.state === 'active');

    let running = true;
    let calls = 0, failures = 0, foreign = 0;
    const loop = async () => {
      while (running) {
        try {
          const out = Array.from((await agent.infer(feeds)).probs.data as Float32Array);
          calls++;
          if (!expected.some((e) => e.every((x, i) => Math.abs(x - out[i]) < 1e-6))) foreign++;
        } catch {
          failures++;
        }
        await new Promise((r) => setImmediate(r));
      }
    };
    const loops = Array.from({ length: 4 }, loop);
    try {
      expect((await first).state).toBe('probation_passed');
      for (const v of [v2, v3]) {
        const done = settled(agent, v.manifestSha256, ['probation_passed', 'failed', 'reverted', 'rejected'], 30_000);
        await assign(server, v.manifestSha256, [agent.deviceId]);
        expect((await done).state).toBe('probation_passed');
      }
    } finally {
      running = false;
      await Promise.all(loops);
    }
    expect(failures).toBe(0);
    expect(foreign).toBe(0);
    expect(runtime.unhealthyAnswers).toBe(0);
    expect(calls).toBeGreaterThan(400);
    expect(agent.active?.manifestSha256).toBe(v3.manifestSha256);
  });
});
