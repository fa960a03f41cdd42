// Shadow mode's cost to the device (issue 17), on the digits model (batch 1):
// - caller latency: three agents in this process serve the same model from their slots; "on" also holds
//   a candidate in shadow at the campaign default sample rate (0.1) in its own worker thread (the
//   default, shadow.thread), "inline" holds it in the caller's WASM runtime (shadow.thread: false, the
//   way before the thread). Each call is timed on its own, from the call to its answer. Repetitions
//   rotate the agents; the figures are medians over repetitions of each repetition's p50 and p95. Two
//   workloads:
//     paced: device code calls every millisecond (a sensor at 1 kHz, the model busy ~4% of the time);
//            the target applies here: with shadow (thread) within 10% of without, p50 and p95;
//     saturated: back to back, yielding to the event loop between calls (the model busy all the time):
//            reported, no target. Inline, a call that arrives while a shadow run holds the runtime waits
//            for it; in the thread it does not, but on a host with few cores the thread still takes CPU.
// - memory: one agent per child process, without shadow, with the shadow in its thread, with it inline;
//   resident set (threads included: one process) after the same calls and a full GC. threadBytes is
//   thread minus inline: what the thread itself costs (its V8 isolate and WASM instance).
// - loadAverage: os.loadavg() at the start and the end (the host is shared: read the figures with it).
// Run alone: npx tsx bench/shadow.ts [--reps N] [--calls N]
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { digitsManifest } from './agent.ts';
import { FleetAgent } from '../device-agent/agent.ts';
import { parseAgentConfig } from '../device-agent/config.ts';
import { StateStore } from '../device-agent/state-store.ts';
import { canonicalJson } from '../shared/canonical-json.ts';
import { b64, sha256Hex } from '../shared/crypto.ts';
import { buildDigitsModel, DIGITS_INPUT } from '../server/training/digits.ts';

const execFileP = promisify(execFile);
const DEFAULT_SAMPLE_RATE = 0.1; // server/rollouts/campaign-config.ts ShadowWave
const TARGET_RATIO = 1.1;

type Which = 'off' | 'on' | 'inline';
const WHICH: Which[] = ['off', 'on', 'inline'];
interface Counts { sampleRate: number; offered: number; compared: number; dropped: number; errors: number }
interface Workload {
  callerLatencyMs: Record<Which, { p50: number; p95: number }>;
  /** on (thread) / off */
  ratio: { p50: number; p95: number };
  /** inline / off: the same shadow in the caller's WASM runtime */
  inlineRatio: { p50: number; p95: number };
  shadow: Counts;
  inlineShadow: Counts;
  runs: { repetitions: number; callsPerRepetition: number; p50: Record<Which, number[]>; p95: Record<Which, number[]> };
}

export interface BenchShadowResult {
  paced: Workload;
  saturated: Workload;
  /** paced: with shadow / without, p50 and p95 both <= 1.1 */
  target: { maxRatio: number; met: boolean };
  memory: { rssWithoutShadowBytes: number; rssWithShadowBytes: number; rssWithInlineShadowBytes: number; shadowRssBytes: number; threadBytes: number; artifactBytes: number };
  loadAverage: { start: number[]; end: number[] };
}

/** What an install (slot a) and a shadow load (slot b) leave on disk; the agent restores both at start. */
async function seed(dataDir: string, onnx: Uint8Array, sample: Float32Array, shadow: boolean): Promise<void> {
  mkdirSync(join(dataDir, 'slots'), { recursive: true });
  const store = new StateStore(dataDir);
  const state = store.load(b64.encode(new Uint8Array(32)));
  for (const [slot, version] of (shadow ? [['a', 1], ['b', 2]] : [['a', 1]]) as ['a' | 'b', number][]) {
    const m = await digitsManifest(onnx, sample, version);
    const text = canonicalJson(m);
    writeFileSync(join(dataDir, 'slots', `${slot}.onnx`), onnx);
    writeFileSync(join(dataDir, 'slots', `${slot}.manifest.json`), text);
    state.slots[slot] = { manifestSha256: sha256Hex(text), modelId: m.modelId, version, artifactSha256: m.artifact.sha256, length: m.artifact.length };
    if (slot === 'b') state.shadow = { slot, manifestSha256: sha256Hex(text), modelId: m.modelId, version, directorSeq: 1, sampleRate: DEFAULT_SAMPLE_RATE };
  }
  state.active = 'a';
  store.save(state);
}

function startAgent(deviceId: string, dataDir: string, thread = true): FleetAgent {
  return new FleetAgent(parseAgentConfig({
    deviceId, dataDir, rootPublicKey: b64.encode(new Uint8Array(32)), shadow: { thread },
    // nothing listens there: the agent serves from its slots without a server
    mqttUrl: 'mqtt://127.0.0.1:9', serverUrl: 'http://127.0.0.1:9', reconnectMinMs: 60_000, telemetryWindowMs: 3_600_000,
  }));
}

const yieldToLoop = () => new Promise<void>((r) => setImmediate(r));

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}
const median = (xs: number[]) => quantile(xs, 0.5);

export async function benchShadow(opts: { repetitions?: number; calls?: number } = {}): Promise<BenchShadowResult> {
  const repetitions = opts.repetitions ?? 7;
  const calls = opts.calls ?? 300;
  const digits = await buildDigitsModel();
  const [n, d] = digits.reference.shape;
  const samples = Array.from({ length: 16 }, (_, k) => digits.reference.inputs.slice((k % n) * d, (k % n + 1) * d));
  const root = mkdtempSync(join(tmpdir(), 'fleet-bench-shadow-'));
  const agents: FleetAgent[] = [];
  const loadStart = loadavg();
  try {
    await seed(join(root, 'off'), digits.onnx, samples[0], false);
    await seed(join(root, 'on'), digits.onnx, samples[0], true);
    await seed(join(root, 'inline'), digits.onnx, samples[0], true);
    const byName: Record<Which, FleetAgent> = {
      off: startAgent('bench-off', join(root, 'off')),
      on: startAgent('bench-on', join(root, 'on')),
      inline: startAgent('bench-inline', join(root, 'inline'), false),
    };
    agents.push(...Object.values(byName));
    for (const a of agents) await a.start();
    if (!byName.on.shadowCandidate || !byName.on.shadowInThread) throw new Error('bench: the seeded shadow did not load in its thread');
    if (!byName.inline.shadowCandidate || byName.inline.shadowInThread) throw new Error('bench: the seeded inline shadow did not load');
    const memory = await memoryFigures(root, digits.onnx.byteLength); // first: the children must not compete with the latency runs
    const workload = async (pause: () => Promise<void>, count: number): Promise<Workload> => {
      const run = async (a: FleetAgent, k: number) => {
        const ms: number[] = [];
        for (let i = 0; i < k; i++) {
          const t0 = performance.now();
          await a.infer({ [DIGITS_INPUT]: { data: samples[i & 15], dims: [1, d] } });
          ms.push(performance.now() - t0);
          await pause(); // device code between calls: where a shadow run can take its turn
        }
        return ms;
      };
      for (const w of WHICH) await run(byName[w], 200);
      const before = { on: byName.on.shadowCounts!, inline: byName.inline.shadowCounts! };
      const p50: Record<Which, number[]> = { off: [], on: [], inline: [] };
      const p95: Record<Which, number[]> = { off: [], on: [], inline: [] };
      for (let r = 0; r < repetitions; r++) {
        for (let k = 0; k < WHICH.length; k++) {
          const w = WHICH[(r + k) % WHICH.length]; // each agent goes first, second and third in turn
          const ms = await run(byName[w], count);
          p50[w].push(quantile(ms, 0.5));
          p95[w].push(quantile(ms, 0.95));
        }
      }
      await new Promise((r) => setTimeout(r, 100)); // the last queued shadow runs
      const counts = (w: 'on' | 'inline'): Counts => {
        const after = byName[w].shadowCounts!;
        return {
          sampleRate: DEFAULT_SAMPLE_RATE, offered: repetitions * count, compared: after.compared - before[w].compared,
          dropped: after.dropped - before[w].dropped, errors: after.errors - before[w].errors,
        };
      };
      const latency = Object.fromEntries(WHICH.map((w) => [w, { p50: median(p50[w]), p95: median(p95[w]) }])) as Record<Which, { p50: number; p95: number }>;
      return {
        callerLatencyMs: latency,
        ratio: { p50: latency.on.p50 / latency.off.p50, p95: latency.on.p95 / latency.off.p95 },
        inlineRatio: { p50: latency.inline.p50 / latency.off.p50, p95: latency.inline.p95 / latency.off.p95 },
        shadow: counts('on'), inlineShadow: counts('inline'),
        runs: { repetitions, callsPerRepetition: count, p50, p95 },
      };
    };
    const paced = await workload(() => new Promise((r) => setTimeout(r, 1)), calls);
    const saturated = await workload(yieldToLoop, calls * 2);
    return {
      paced, saturated,
      target: { maxRatio: TARGET_RATIO, met: paced.ratio.p50 <= TARGET_RATIO && paced.ratio.p95 <= TARGET_RATIO },
      memory, loadAverage: { start: loadStart, end: loadavg() },
    };
  } finally {
    for (const a of agents) await a.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

/** One agent per child process (fresh heap each, all at once): resident set after 1,000 calls, without the shadow, with it in its thread, with it inline. */
async function memoryFigures(root: string, artifactBytes: number): Promise<BenchShadowResult['memory']> {
  const self = fileURLToPath(import.meta.url);
  const rss = async (which: Which) => {
    // a copy of the data folder: the parent's agents hold the originals
    const dir = join(root, `mem-${which}`);
    cpSync(join(root, which), dir, { recursive: true });
    const { stdout } = await execFileP(process.execPath, ['--expose-gc', '--import', 'tsx', self, '--memory', dir, ...(which === 'inline' ? ['--inline'] : [])], { encoding: 'utf8', timeout: 240_000 });
    return (JSON.parse(stdout.trim().split('\n').pop()!) as { rss: number }).rss;
  };
  const [without, withShadow, inline] = await Promise.all([rss('off'), rss('on'), rss('inline')]);
  return { rssWithoutShadowBytes: without, rssWithShadowBytes: withShadow, rssWithInlineShadowBytes: inline, shadowRssBytes: withShadow - without, threadBytes: withShadow - inline, artifactBytes };
}

async function memoryChild(dataDir: string, thread: boolean): Promise<void> {
  const digits = await buildDigitsModel();
  const [, d] = digits.reference.shape;
  const agent = startAgent('bench-mem', dataDir, thread);
  await agent.start();
  for (let i = 0; i < 1000; i++) {
    await agent.infer({ [DIGITS_INPUT]: { data: digits.reference.inputs.slice(0, d), dims: [1, d] } });
    if (i % 10 === 0) await yieldToLoop();
  }
  await new Promise((r) => setTimeout(r, 50));
  (globalThis as { gc?: () => void }).gc?.(); // what stays resident, not garbage not yet collected
  const rss = process.memoryUsage.rss();
  await agent.stop();
  process.stdout.write(`${JSON.stringify({ rss, shadow: agent.shadowCandidate !== null })}\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({ options: { reps: { type: 'string' }, calls: { type: 'string' }, memory: { type: 'string' }, inline: { type: 'boolean' } } });
  if (values.memory) await memoryChild(values.memory, !values.inline);
  else {
    const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
    console.log(JSON.stringify(await benchShadow({ repetitions: num(values.reps), calls: num(values.calls) }), null, 2));
  }
  process.exit(0);
}
