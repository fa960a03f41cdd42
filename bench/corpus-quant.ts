// Quantizes every third-party corpus model and measures what it costs and buys in onnxruntime-web
// (WASM, 1 thread): bytes, weight share quantized, output error vs float on one realistic input,
// and ms/inference (median of RUNS after WARMUP), float vs int8.
//   npx tsx bench/corpus-quant.ts [--runs 50] [--representation cast-mul|dequantize-linear] [--ops Conv,MatMul,...] [ids...]
import os from 'node:os';
import { parseArgs } from 'node:util';
import { createSession, runSession, type Feeds, type Outputs } from '../runtime/onnx-session.ts';
import { quantizeModel, QuantizeOptions } from '../server/quantize/quantize.ts';
import { CORPUS, corpusBytes } from '../test/model/corpus-models.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { runs: { type: 'string', default: '50' }, representation: { type: 'string', default: 'cast-mul' }, ops: { type: 'string' } },
});
const RUNS = Number(values.runs);
const WARMUP = 5;

/** Both sessions side by side, runs interleaved (f, q, f, q, ...) so load from other processes hits both alike. */
async function timeBoth(floatBytes: Uint8Array, quantBytes: Uint8Array, feeds: Feeds, config: Record<string, string>) {
  const load = async (b: Uint8Array, c: Record<string, string>) => {
    const t0 = performance.now();
    const s = await createSession(b, { config: c });
    return { s, loadMs: performance.now() - t0, times: [] as number[], out: await runSession(s, feeds) };
  };
  const f = await load(floatBytes, {});
  const q = await load(quantBytes, config);
  for (let i = 0; i < WARMUP; i++) for (const x of [f, q]) await runSession(x.s, feeds);
  for (let i = 0; i < RUNS; i++) {
    for (const x of [f, q]) {
      const t = performance.now();
      await runSession(x.s, feeds);
      x.times.push(performance.now() - t);
    }
  }
  // The median is the figure asked for; the minimum is what survives other processes sharing the cores.
  const median = (t: number[]) => [...t].sort((a, b) => a - b)[Math.floor(t.length / 2)];
  await f.s.release();
  await q.s.release();
  return {
    f: { out: f.out, ms: median(f.times), minMs: Math.min(...f.times), loadMs: f.loadMs },
    q: { out: q.out, ms: median(q.times), minMs: Math.min(...q.times), loadMs: q.loadMs },
  };
}

/** Largest |q - f| over all float outputs, and SQNR (dB) of all of them together. */
function compare(f: Outputs, q: Outputs): { maxAbs: number; sqnr: number } {
  let maxAbs = 0, sig = 0, noise = 0;
  for (const [name, o] of Object.entries(f)) {
    if (o.type !== 'float32') continue;
    const a = o.data as Float32Array, b = q[name].data as Float32Array;
    for (let i = 0; i < a.length; i++) {
      const d = b[i] - a[i];
      maxAbs = Math.max(maxAbs, Math.abs(d));
      sig += a[i] * a[i];
      noise += d * d;
    }
  }
  return { maxAbs, sqnr: noise === 0 ? Infinity : 10 * Math.log10(sig / noise) };
}

const opts: QuantizeOptions = {
  representation: values.representation as 'cast-mul' | 'dequantize-linear',
  ...(values.ops ? { ops: values.ops.split(',') as QuantizeOptions['ops'] } : {}),
};
QuantizeOptions.parse(opts);
// The first session in a process also starts the WASM runtime: pay that before any load is timed.
await (await createSession(corpusBytes(CORPUS.find((m) => m.id === 'oww_hey_jarvis')!))).release();
console.log(`onnxruntime-web WASM 1 thread; median of ${RUNS} runs after ${WARMUP} warm-up; representation ${opts.representation}`);
console.log(`load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} on ${os.cpus().length} cores`);
console.log('model                 float B    int8 B  ratio  quantized  wbytes%  max|d|     SQNR dB  float ms med/min  int8 ms med/min  load f/q ms');
for (const c of CORPUS.filter((m) => positionals.length === 0 || positionals.includes(m.id))) {
  const floatBytes = corpusBytes(c);
  const { bytes, report } = quantizeModel(floatBytes, opts);
  const feeds = await c.feeds();
  const { f, q } = await timeBoth(floatBytes, bytes, feeds, report.sessionConfig);
  const { maxAbs, sqnr } = compare(f.out, q.out);
  const share = report.floatWeightBytes ? (100 * report.quantizedWeightBytes) / report.floatWeightBytes : 0;
  console.log([
    c.id.padEnd(20), String(floatBytes.length).padStart(9), String(bytes.length).padStart(9), report.sizeRatio.toFixed(3).padStart(6),
    `${report.quantized.length}/${report.quantized.length + new Set(report.skipped.filter((s) => s.reason.startsWith('weight') && s.bytes).map((s) => s.input)).size}`.padStart(10),
    share.toFixed(1).padStart(7), maxAbs.toExponential(2).padStart(9), sqnr.toFixed(1).padStart(10),
    `${f.ms.toFixed(2)}/${f.minMs.toFixed(2)}`.padStart(17), `${q.ms.toFixed(2)}/${q.minMs.toFixed(2)}`.padStart(16), `${f.loadMs.toFixed(0)}/${q.loadMs.toFixed(0)}`.padStart(12),
  ].join(' '));
  console.log(`  ${report.summary}`);
}
