// Where a caller's extra latency with a shadow in its thread comes from (issue 17), call by call: two agents
// (off, on) paced like bench/shadow.ts (a call every 1 ms) in alternating blocks; each call of `on` is
// tagged with what happened during it: its input was sampled (its `sampled` count rose: copied into the
// thread's ring, or queued and the pump scheduled), a GC pause (perf_hooks 'gc' entries) overlapped it, a
// reply from the thread was handled in it, the thread was running a sample meanwhile (a sample was taken
// before the call ended and its reply came after the call began). Prints, per tag, its share of all
// calls and of the slowest 5%, and the median time of the calls with it; the cost of a sampled offer().
// Diagnostic: reads the runner's private parts (agent.shadow, its queue, its worker). Not part of `npm run bench`.
// Run: npx tsx bench/shadow-diag.ts [callsPerBlock=50] [pairs=30]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { seed as benchShadowSeed, startAgent as benchStartAgent } from '../bench/shadow.ts';
import { buildDigitsModel, DIGITS_INPUT } from '../server/training/digits.ts';

const gcs: { start: number; end: number; kind: number }[] = [];
new PerformanceObserver((l) => { for (const e of l.getEntries()) gcs.push({ start: e.startTime, end: e.startTime + e.duration, kind: (e as any).detail?.kind ?? 0 }); }).observe({ entryTypes: ['gc'] });
const digits = await buildDigitsModel();
const [n, d] = digits.reference.shape;
const samples = Array.from({ length: 16 }, (_, k) => digits.reference.inputs.slice((k % n) * d, (k % n + 1) * d));
const root = mkdtempSync(join(tmpdir(), 'diag-'));
await benchShadowSeed(join(root, 'off'), digits.onnx, samples[0], false);
await benchShadowSeed(join(root, 'on'), digits.onnx, samples[0], true);
const off = benchStartAgent('off', join(root, 'off'));
const on = benchStartAgent('on', join(root, 'on'));
await off.start(); await on.start();
const sh = (on as any).shadow;
const offerMs: number[] = [];
const origOffer = sh.offer.bind(sh);
const taken: number[] = []; // when each sample was taken
sh.offer = (...a: any[]) => { const n0 = sh.sampled; const t = performance.now(); origOffer(...a); if (sh.sampled > n0) { offerMs.push(performance.now() - t); taken.push(t); } };
const replies: number[] = [];
sh.threaded.worker.on('message', () => replies.push(performance.now()));
type Rec = { which: string; t0: number; t1: number; ms: number; sampled: boolean };
const recs: Rec[] = [];
const pace = () => new Promise((r) => setTimeout(r, 1));
async function block(a: any, which: string, k: number) {
  for (let i = 0; i < k; i++) {
    const before = which === 'on' ? on.shadowCounts!.sampled : 0;
    const t0 = performance.now();
    await a.infer({ [DIGITS_INPUT]: { data: samples[i & 15], dims: [1, d] } });
    const t1 = performance.now();
    const sampled = which === 'on' && on.shadowCounts!.sampled > before;
    recs.push({ which, t0, t1, ms: t1 - t0, sampled });
    await pace();
  }
}
for (let r = 0; r < 2; r++) { await block(off, 'off', 200); await block(on, 'on', 200); }
recs.length = 0; gcs.length = 0; replies.length = 0; taken.length = 0; offerMs.length = 0;
const BLOCK = Number(process.argv[2] ?? 50), PAIRS = Number(process.argv[3] ?? 40);
for (let r = 0; r < PAIRS; r++) { const order = r % 2 ? ['on', 'off'] : ['off', 'on']; for (const o of order) await block(o === 'on' ? on : off, o, BLOCK); }
const q = (xs: number[], p: number) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
const overl = (r: Rec, a: number, b: number) => r.t0 < b && a < r.t1;
for (const r of recs) {
  (r as any).gc = gcs.some((g) => overl(r, g.start, g.end));
  (r as any).reply = replies.some((t) => t >= r.t0 && t <= r.t1);
  // the thread ran during the call: a post before t1 whose reply came after t0
  (r as any).threadBusy = taken.some((p) => p < r.t1 && (replies.find((x) => x >= p) ?? Infinity) > r.t0);
}
for (const which of ['off', 'on']) {
  const rs = recs.filter((r) => r.which === which);
  const p95 = q(rs.map((r) => r.ms), 0.95);
  const slow = rs.filter((r) => r.ms >= p95);
  const frac = (xs: Rec[], k: string) => (xs.filter((r: any) => r[k]).length / Math.max(1, xs.length)).toFixed(3);
  console.log(which, 'n', rs.length, 'p50', q(rs.map((r) => r.ms), 0.5).toFixed(4), 'p95', p95.toFixed(4), 'p99', q(rs.map((r) => r.ms), 0.99).toFixed(4));
  for (const k of ['sampled', 'gc', 'reply', 'threadBusy']) console.log(`  ${k}: all ${frac(rs, k)} slow(>=p95) ${frac(slow, k)}  ms when ${k}: p50 ${q(rs.filter((r: any) => r[k]).map((r) => r.ms), 0.5)?.toFixed(4)}`);
}
{ const s2 = [...offerMs].sort((a,b)=>a-b); console.log('sampled offer() ms p50', s2[s2.length>>1], 'p99', s2[Math.floor(s2.length*0.99)], 'max', s2[s2.length-1]); }
console.log('gcs', gcs.length, 'gc ms total', gcs.reduce((s, g) => s + g.end - g.start, 0).toFixed(1), 'samples', taken.length, 'replies', replies.length);
await off.stop(); await on.stop(); rmSync(root, { recursive: true, force: true });
process.exit(0);
