// The agent's inference overhead: FleetAgent.infer() against a bare onnxruntime-web session on the
// same digits model, same inputs, batch 1, in the same process. The agent's path adds the tensor
// wrapping, the telemetry window (latency, counts) and drift histograms over a baseline (32 sampled
// input pixels and the output argmax per call). Each repetition times `iterations` back-to-back calls;
// the figure is the median over repetitions, bare and agent interleaved so drift hits both alike.
// Run alone: npx tsx bench/agent.ts [--reps N] [--iterations N]
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { FleetAgent } from '../device-agent/agent.ts';
import { parseAgentConfig } from '../device-agent/config.ts';
import { createSession, ort } from '../runtime/onnx-session.ts';
import { StateStore } from '../device-agent/state-store.ts';
import { canonicalJson } from '../shared/canonical-json.ts';
import { b64, sha256Hex } from '../shared/crypto.ts';
import type { Manifest } from '../shared/messages.ts';
import { encodeTensor } from '../shared/tensor-codec.ts';
import { AGENT_VERSION, ONNXRUNTIME_WEB_RANGE } from '../shared/version.ts';
import { buildDigitsModel, DIGITS_INPUT, DIGITS_OUTPUT } from '../server/training/digits.ts';

export interface BenchAgentOptions { repetitions?: number; iterations?: number; warmup?: number; cacheDir?: string }

export interface BenchAgentResult {
  /** median ms per inference, bare session.run with a fresh ort.Tensor per call */
  bareMsPerInference: number;
  /** median ms per inference through FleetAgent.infer() */
  agentMsPerInference: number;
  /** agent / bare - 1 (0.05 = 5% slower) */
  overheadRatio: number;
  runs: { batch: 1; repetitions: number; iterations: number; warmup: number; bareMs: number[]; agentMs: number[]; driftHistograms: boolean };
}

export async function benchAgentInference(opts: BenchAgentOptions = {}): Promise<BenchAgentResult> {
  const repetitions = opts.repetitions ?? 9;
  const iterations = opts.iterations ?? 2000;
  const warmup = opts.warmup ?? 2000;
  const digits = await buildDigitsModel({ cacheDir: opts.cacheDir });
  const [n, d] = digits.reference.shape;
  const samples = Array.from({ length: 16 }, (_, k) => digits.reference.inputs.slice((k % n) * d, (k % n + 1) * d));

  const dataDir = mkdtempSync(join(tmpdir(), 'fleet-bench-agent-'));
  const session = await createSession(digits.onnx);
  let agent: FleetAgent | null = null;
  try {
    seedInstalledModel(dataDir, digits.onnx, await digitsManifest(digits.onnx, samples[0]));
    agent = new FleetAgent(parseAgentConfig({
      deviceId: 'bench-1', dataDir, rootPublicKey: b64.encode(new Uint8Array(32)),
      // nothing listens there: the agent serves inference from its installed slot without a server
      mqttUrl: 'mqtt://127.0.0.1:9', serverUrl: 'http://127.0.0.1:9', reconnectMinMs: 60_000, telemetryWindowMs: 3_600_000,
    }));
    await agent.start();
    if (!agent.active) throw new Error('bench: the seeded model did not load');
    const a = agent;
    const bare = async (count: number) => {
      const t0 = performance.now();
      for (let i = 0; i < count; i++) await session.run({ [DIGITS_INPUT]: new ort.Tensor('float32', samples[i & 15], [1, d]) });
      return (performance.now() - t0) / count;
    };
    const viaAgent = async (count: number) => {
      const t0 = performance.now();
      for (let i = 0; i < count; i++) await a.infer({ [DIGITS_INPUT]: { data: samples[i & 15], dims: [1, d] } });
      return (performance.now() - t0) / count;
    };
    await bare(warmup);
    await viaAgent(warmup);
    const bareMs: number[] = [], agentMs: number[] = [];
    for (let r = 0; r < repetitions; r++) {
      if (r % 2 === 0) { bareMs.push(await bare(iterations)); agentMs.push(await viaAgent(iterations)); }
      else { agentMs.push(await viaAgent(iterations)); bareMs.push(await bare(iterations)); }
    }
    const bareMsPerInference = median(bareMs), agentMsPerInference = median(agentMs);
    return {
      bareMsPerInference, agentMsPerInference, overheadRatio: agentMsPerInference / bareMsPerInference - 1,
      runs: { batch: 1, repetitions, iterations, warmup, bareMs, agentMs, driftHistograms: true },
    };
  } finally {
    await agent?.stop();
    await session.release();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** A manifest like the server's, with a drift baseline: 10 pixel bins and the 10 digit classes (bench/shadow.ts uses it too). */
export async function digitsManifest(onnx: Uint8Array, sample: Float32Array, version = 1): Promise<Manifest> {
  const s = await createSession(onnx);
  const out = await s.run({ [DIGITS_INPUT]: new ort.Tensor('float32', sample, [1, sample.length]) });
  await s.release();
  const probs = out[DIGITS_OUTPUT];
  const now = Date.now();
  return {
    type: 'manifest', modelId: 'digits', version,
    artifact: { sha256: sha256Hex(onnx), length: onnx.byteLength, format: 'onnx' },
    quantization: { scheme: 'none', perChannel: false, sessionConfig: {}, quantizedOps: 0, skippedOps: 0 },
    io: { inputs: [{ name: DIGITS_INPUT, type: 'float32', shape: ['N', sample.length] }], outputs: [{ name: DIGITS_OUTPUT, type: 'float32', shape: ['N', 10] }] },
    runtime: { onnxruntimeWeb: ONNXRUNTIME_WEB_RANGE, minAgentVersion: AGENT_VERSION },
    hardwareTargets: [],
    healthCheck: {
      vectors: [{ inputs: { [DIGITS_INPUT]: encodeTensor('float32', [1, sample.length], sample) }, outputs: { [DIGITS_OUTPUT]: encodeTensor('float32', probs.dims, probs.data as Float32Array) } }],
      atol: 1e-4, rtol: 1e-3, latencyBudgetMs: 250,
    },
    driftBaseline: {
      inputs: { [DIGITS_INPUT]: { kind: 'values', edges: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], counts: new Array(10).fill(1) } },
      outputs: { [DIGITS_OUTPUT]: { kind: 'argmax', edges: [], counts: new Array(10).fill(1) } },
    },
    lineage: {},
    issuedAt: new Date(now).toISOString(), expires: new Date(now + 86400_000).toISOString(),
  };
}

/** What an install leaves on disk: the model in slot a, its manifest text beside it, the state record. */
function seedInstalledModel(dataDir: string, onnx: Uint8Array, manifest: Manifest): void {
  const text = canonicalJson(manifest);
  mkdirSync(join(dataDir, 'slots'), { recursive: true });
  writeFileSync(join(dataDir, 'slots', 'a.onnx'), onnx);
  writeFileSync(join(dataDir, 'slots', 'a.manifest.json'), text);
  const store = new StateStore(dataDir);
  const state = store.load(b64.encode(new Uint8Array(32)));
  state.slots.a = { manifestSha256: sha256Hex(text), modelId: manifest.modelId, version: manifest.version, artifactSha256: manifest.artifact.sha256, length: manifest.artifact.length };
  state.active = 'a';
  store.save(state);
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({ options: { reps: { type: 'string' }, iterations: { type: 'string' } } });
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  console.log(JSON.stringify(await benchAgentInference({ repetitions: num(values.reps), iterations: num(values.iterations) }), null, 2));
}
