// Every model of the third-party corpus (test/corpus/corpus.ts) as an operator ships it: `fleetctl push
// --samples` against a real server (INT8 behind the gate wherever the weights allow), a signed
// assignment to enrolled agents (security on: allowUnenrolledDevices off), install with its health
// check, then inference through the agent's infer() and its local HTTP endpoint, compared with a bare
// onnxruntime-web session on the float model: within the gate's figures for an INT8 bundle, exactly
// equal for a float bundle, and the HTTP answer exactly the infer() answer.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startLocalHttp } from '../../device-agent/local-http.ts';
import type { SimulatedFleet } from '../../firmware-sim/fleet.ts';
import { createSession, runSession, type Feeds, type Outputs } from '../../runtime/onnx-session.ts';
import { decodeTensor } from '../../shared/tensor-codec.ts';
import type { Sample } from '../../shared/samples.ts';
import { runFleetctl } from '../helpers/fleetctl.ts';
import { startFleet, startTestServer, tempDir, type TestServer } from '../helpers/harness.ts';
import { CORPUS, type CorpusModel } from './corpus.ts';

/**
 * What each push must give: the bundle kind, and how many weights the quantizer must have taken
 * (exact counts: a quantizer that silently skips a weight source fails here).
 */
const EXPECT: Record<string, { outcome: 'int8' | 'nothing-quantized'; quantizedNodes?: number }> = {
  'ppocr-cls': { outcome: 'int8', quantizedNodes: 45 },
  'silero-vad-v5': { outcome: 'int8', quantizedNodes: 14 },
  'silero-vad-v4': { outcome: 'int8', quantizedNodes: 42 },
  'ppocr-rec': { outcome: 'int8', quantizedNodes: 46 },
  'ppocr-det': { outcome: 'int8', quantizedNodes: 54 },
  'oww-melspectrogram': { outcome: 'int8', quantizedNodes: 3 },
  'oww-embedding': { outcome: 'int8', quantizedNodes: 19 },
  'oww-hey-jarvis': { outcome: 'int8', quantizedNodes: 4 },
};

interface PushResult {
  manifestSha256: string; version: number;
  manifest: { quantization: { scheme: string; sessionConfig: Record<string, string> }; healthCheck: { vectors: unknown[]; golden?: { sha256: string } } };
  report: {
    outcome: string; floatBytes: number; artifactBytes: number; quantizationSummary: string;
    quantization: { quantized: unknown[] } | null;
    gate: { passed: boolean; thresholds: { minSqnrDb: number; minCosine: number; minAgreement: number }; outputs: { name: string; kind: 'classifier' | 'fidelity'; passed: boolean }[] } | null;
    healthCheck: { source: string };
  };
}

function feedsOf(s: Sample): Feeds {
  return Object.fromEntries(Object.entries(s.inputs).map(([name, t]) => {
    const d = decodeTensor(t);
    return [name, { data: d.data, dims: d.dims, type: d.dtype }];
  }));
}

function argmaxRows(data: ArrayLike<number>, width: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < data.length / width; r++) {
    let best = 0;
    for (let k = 1; k < width; k++) if (data[r * width + k] > data[r * width + best]) best = k;
    out.push(best);
  }
  return out;
}

function fidelity(ref: ArrayLike<number>, got: ArrayLike<number>): { sqnrDb: number; cosine: number } {
  let sig = 0, noise = 0, dot = 0, gg = 0;
  for (let i = 0; i < ref.length; i++) {
    sig += ref[i] ** 2; noise += (ref[i] - got[i]) ** 2; dot += ref[i] * got[i]; gg += got[i] ** 2;
  }
  return { sqnrDb: noise === 0 ? Infinity : 10 * Math.log10(sig / noise), cosine: sig === 0 || gg === 0 ? (sig === gg ? 1 : 0) : dot / Math.sqrt(sig * gg) };
}

describe('third-party corpus end to end: fleetctl push, signed rollout to enrolled agents, inference', () => {
  let server: TestServer;
  let fleet: SimulatedFleet;
  let http: Awaited<ReturnType<typeof startLocalHttp>>;
  let dir: string;

  const fleetctl = (...args: string[]) => runFleetctl(server.baseUrl, server.adminToken, ...args);

  async function viaHttp(feeds: Feeds): Promise<Record<string, { dims: number[]; data: number[] }>> {
    const inputs = Object.fromEntries(Object.entries(feeds).map(([name, f]) => [name, { dims: f.dims, type: f.type, data: Array.from(f.data as ArrayLike<number | bigint>, Number) }]));
    const res = await fetch(`http://127.0.0.1:${http.port}/v1/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs }) });
    const body = await res.json() as { outputs: Record<string, { dims: number[]; data: number[] }> };
    expect(res.status, JSON.stringify(body).slice(0, 300)).toBe(200);
    return body.outputs;
  }

  beforeAll(async () => {
    server = await startTestServer({ config: { allowUnenrolledDevices: false } });
    fleet = await startFleet(server, { count: 2, idPrefix: 'corpus', hardware: (i) => (i ? 'gateway' : 'camera') });
    http = await startLocalHttp(fleet.agents[0], 0);
    dir = tempDir('corpus-');
  }, 120_000);

  afterAll(async () => {
    await http?.close();
    await fleet?.stop();
    await server?.close();
  });

  it('has at least six third-party models covering the required kinds', () => {
    expect(CORPUS.length).toBeGreaterThanOrEqual(6);
    const covers = CORPUS.flatMap((m) => m.covers).join(' | ');
    for (const kind of [/PaddlePaddle/, /opset < 11/, /stateful/, /not batch-first/, /scalar/, /If subgraph/, /LSTM/, /transformer|embedding/, /Constant nodes/]) {
      expect(covers).toMatch(kind);
    }
    expect(Object.keys(EXPECT).sort()).toEqual(CORPUS.map((m) => m.id).sort());
  });

  for (const model of CORPUS) {
    it(`${model.id} (${model.pkg}): pushed, gated, signed, rolled out, and answers as the float model does`, async () => {
      await shipAndCompare(model);
    }, 240_000);
  }

  async function shipAndCompare(model: CorpusModel): Promise<void> {
    const expected = EXPECT[model.id];
    const samples = await model.samples();
    const samplesFile = join(dir, `${model.id}.samples.json`);
    writeFileSync(samplesFile, JSON.stringify({ samples }));
    const kindArgs = Object.entries(model.gateOutputs ?? {}).flatMap(([name, kind]) => ['--gate-output', `${name}=${kind}`]);
    const push = await fleetctl('--json', 'push', model.file, '--model-id', model.id, '--samples', samplesFile, ...kindArgs);
    expect(push.code, push.stderr + push.stdout.slice(0, 2000)).toBe(0);
    const res = JSON.parse(push.stdout) as PushResult;
    expect(res.report.outcome, res.report.quantizationSummary).toBe(expected.outcome);
    expect(res.report.healthCheck.source).toBe('samples');
    const int8 = expected.outcome === 'int8';
    if (int8) {
      expect(res.manifest.quantization.scheme).toBe('int8-weight-symmetric');
      expect(res.report.gate?.passed).toBe(true);
      expect(res.report.gate!.outputs.every((o) => o.passed)).toBe(true);
      if (expected.quantizedNodes !== undefined) expect(res.report.quantization!.quantized).toHaveLength(expected.quantizedNodes);
    } else {
      expect(res.manifest.quantization.scheme).toBe('none');
      expect(res.report.gate).toBeNull();
    }

    const ids = fleet.agents.map((a) => a.deviceId);
    const assigned = await fleetctl('--json', 'assign', res.manifestSha256, '--devices', ids.join(','));
    expect(assigned.code, assigned.stderr).toBe(0);
    await fleet.waitAll((s) => s.state === 'active' && s.active?.manifestSha256 === res.manifestSha256, 120_000);

    const bare = await createSession(new Uint8Array(readFileSync(model.file)));
    try {
      const kinds = Object.fromEntries((res.report.gate?.outputs ?? []).map((o) => [o.name, o.kind]));
      const t = res.report.gate?.thresholds;
      for (const sample of samples.slice(0, 3)) {
        const feeds = feedsOf(sample);
        const want: Outputs = await runSession(bare, feeds);
        const got = await fleet.agents[0].infer(feeds);
        const web = await viaHttp(feeds);
        expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
        for (const [name, w] of Object.entries(want)) {
          const g = got[name];
          expect([...g.dims]).toEqual([...w.dims]);
          // the local endpoint gives exactly what infer() gives (JSON has no -0: compared as numbers, 0 === -0)
          expect(web[name].dims).toEqual([...g.dims]);
          expect(web[name].data).toEqual(Array.from(g.data as ArrayLike<number>, (v) => Number(v) + 0));
          const ref = Array.from(w.data as ArrayLike<number>, Number);
          const out = Array.from(g.data as ArrayLike<number>, Number);
          if (!int8) {
            expect(out).toEqual(ref);
          } else if (kinds[name] === 'classifier') {
            const width = w.dims[w.dims.length - 1];
            const a = argmaxRows(ref, width), b = argmaxRows(out, width);
            const agree = a.filter((c, i) => c === b[i]).length / a.length;
            expect(agree, `${name} top-1 agreement`).toBeGreaterThanOrEqual(t!.minAgreement);
          } else {
            const f = fidelity(ref, out);
            expect(f.sqnrDb, `${name} SQNR`).toBeGreaterThanOrEqual(t!.minSqnrDb);
            expect(f.cosine, `${name} cosine`).toBeGreaterThanOrEqual(t!.minCosine);
          }
        }
      }
    } finally {
      await bare.release();
    }
  }
});
