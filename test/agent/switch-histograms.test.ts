// A call still running on the previous model when the device switches must not land in the new model's
// drift histograms (the drift gate's false alarms on good candidates under load, session 13/14): the
// window's histograms start empty at the switch (agent.ts swapTo), but a call begun before it finished
// after it and was binned there, with the previous model's outputs. Under load nearly every device has
// one call in flight at its switch, and against a candidate whose baseline is almost one class, one
// foreign output per device moves the output PSI past the alert level (0.2) on a few hundred calls.
// Real parts: a test server, one agent, onnxruntime-web sessions; the only addition is a runtime wrapper
// that holds one call of the previous model until the switch is done.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetAgent } from '../../device-agent/agent.ts';
import { SharedOrtRuntime, type LoadedModel, type ModelRuntime } from '../../device-agent/model-runtime.ts';
import type { Feeds, Outputs } from '../../runtime/onnx-session.ts';
import { tinyReference } from '../../firmware-sim/sample-models.ts';
import { assign, pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { waitFor } from '../helpers/wait.ts';
import { outcome, startAgent } from './fixture.ts';

/** The real runtime; the next call of one artifact waits (after it started) until released. */
class HoldingRuntime implements ModelRuntime {
  private readonly inner = new SharedOrtRuntime();
  private hold: { sha256: string; started: () => void; released: Promise<void> } | null = null;

  holdNext(sha256: string): { started: Promise<void>; release: () => void } {
    let release!: () => void;
    let started!: () => void;
    const startedP = new Promise<void>((r) => { started = r; });
    this.hold = { sha256, started, released: new Promise<void>((r) => { release = r; }) };
    return { started: startedP, release };
  }

  async load(artifact: Uint8Array, key: { sha256: string; sessionConfig: Record<string, string> }): Promise<LoadedModel> {
    const model = await this.inner.load(artifact, key);
    return {
      release: () => model.release(),
      run: async (feeds: Feeds): Promise<Outputs> => {
        const h = this.hold;
        if (h && h.sha256 === key.sha256) {
          this.hold = null;
          h.started();
          await h.released;
        }
        return model.run(feeds);
      },
    };
  }
}

const x = (k: number) => ({ x: { data: Float32Array.from({ length: 8 }, (_, i) => ((k * 8 + i) * 0.618034) % 1), dims: [1, 8] } });
const argmax = (o: Outputs) => {
  const d = o.probs.data as Float32Array;
  return d.indexOf(Math.max(...d));
};

describe('a call in flight across a model switch', { timeout: 60_000 }, () => {
  let server: TestServer;
  let agent: FleetAgent;
  const runtime = new HoldingRuntime();
  beforeAll(async () => { server = await startTestServer(); }, 60_000);
  afterAll(async () => {
    await agent?.stop();
    await server?.close();
  });

  it("is answered by the previous model and is not binned in the new model's drift histograms", async () => {
    const body = { quantize: 'none' as const, reference: tinyReference(), healthCheck: { latencyBudgetMs: 60_000 } };
    // seed 14 answers class 1 on 95% of the reference inputs; seed 16 answers class 2 on all of them
    const v1 = await pushBundle(server, 'tiny', tinyClassifier(14), body);
    const v2 = await pushBundle(server, 'tiny', tinyClassifier(16), body);
    agent = await startAgent(server, 'switch-1', { telemetryWindowMs: 200 }, { runtime });
    await assign(server, v1.manifestSha256, ['switch-1']);
    expect((await outcome(agent, v1.manifestSha256, 30_000)).state).toBe('active');

    const held = runtime.holdNext(v1.manifest.artifact.sha256);
    const stray = agent.infer(x(0));
    await held.started;
    await assign(server, v2.manifestSha256, ['switch-1']);
    expect((await outcome(agent, v2.manifestSha256, 30_000)).state).toBe('active');
    expect(agent.active?.manifestSha256).toBe(v2.manifestSha256);
    held.release();
    // the previous model answered it: a class the new model never gives on these inputs
    expect(argmax(await stray)).toBe(1);

    const answers: number[] = [];
    for (let k = 1; k <= 5; k++) answers.push(argmax(await agent.infer(x(k))));
    expect(answers).toEqual([2, 2, 2, 2, 2]);

    // every window since the switch, as the server stored it for the drift gate: the stray is counted
    // (the window's count covers the device's calls) but only the new model's five calls are binned
    const rows = () => server.app.fleet.db.prepare('SELECT count, histograms_json FROM telemetry WHERE device_id = ? AND manifest_sha256 = ?')
      .all('switch-1', v2.manifestSha256) as { count: number; histograms_json: string | null }[];
    await waitFor(() => rows().reduce((a, r) => a + r.count, 0) >= 6, 20_000, 'six calls in the new model\'s windows');
    expect(rows().reduce((a, r) => a + r.count, 0)).toBe(6);
    const sum = (side: 'inputs' | 'outputs', name: string) => {
      const acc: number[] = [];
      for (const r of rows()) {
        const h = r.histograms_json ? (JSON.parse(r.histograms_json) as Record<string, Record<string, { counts: number[] }>>)[side]?.[name] : undefined;
        h?.counts.forEach((c, i) => { acc[i] = (acc[i] ?? 0) + c; });
      }
      return acc;
    };
    expect(sum('outputs', 'probs')).toEqual([0, 0, 5, 0]);
    expect(sum('inputs', 'x').reduce((a, b) => a + b, 0)).toBe(5 * 8);
    // the baseline the gate compares them with: class 2 only, so any foreign class weighs heavily in the PSI
    expect(server.app.fleet.director.bundleEnvelope(v2.manifestSha256).manifest.driftBaseline?.outputs.probs.counts).toEqual([0, 0, 1000, 0]);
  });
});
