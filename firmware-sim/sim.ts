// npm run sim -- <scenario.json> [--json]: run a scenario file and print the outcome; exits 1 when the
// run was invalid (the simulator over its capacity) or, with an `expect`, when the outcome missed it.
// npm run sim -- --check <folder or files...>: run every scenario, print a summary table, exit 1 on any miss.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runScenario, type ScenarioOutcome } from './run-scenario.ts';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { json: { type: 'boolean', default: false }, check: { type: 'boolean', default: false } } });
if (positionals.length === 0 || (!values.check && positionals.length !== 1)) {
  console.error('usage: npm run sim -- <scenario.json> [--json]\n       npm run sim -- --check <folder|scenario.json>...');
  process.exit(2);
}

function scenarioFiles(paths: string[]): string[] {
  return paths.flatMap((p) => statSync(p).isDirectory() ? readdirSync(p).filter((f) => f.endsWith('.json')).sort().map((f) => join(p, f)) : [p]);
}

function read(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`${file}: not JSON: ${(err as Error).message}`);
  }
}

function print(o: ScenarioOutcome): void {
  const c = o.campaign;
  if (o.broker.mode !== 'embedded') console.log(`broker ${o.broker.mode}${o.broker.nodes ? ` (${o.broker.nodes} nodes)` : ''}, RSS at the end ${JSON.stringify(o.broker.rssMB)} MB`);
  console.log(`campaign ${c.status} at wave ${c.wave}${c.failures.length ? `: ${c.failures.join('; ')}` : ''}`);
  console.log(`devices on candidate ${o.devicesOn.candidate}, on baseline ${o.devicesOn.baseline}, other ${o.devicesOn.other}, none ${o.devicesOn.none}; touched ${o.devicesTouched}; reasons ${JSON.stringify(o.byReason)}`);
  console.log(`workload ${JSON.stringify(o.workload)}; reported to the server: ${o.reported.inferences} inferences, ${o.reported.errors} errors`);
  console.log(`artifact cost ratio ${o.costs.ratio.toFixed(3)}x; timings ${JSON.stringify(o.timings)}; server peak RSS ${o.server.peakRssMB} MB, ${o.server.cpuSeconds} CPU s`);
  for (const cap of [o.capacity.server, ...o.capacity.fleet.map((p) => p.capacity).filter((x) => x !== null)]) {
    console.log(`  ${cap.role}: lag p99 mean ${cap.lagP99MeanMs} ms, worst ${cap.lagP99MaxMs} ms (${cap.samplesOverLag}/${cap.samples} samples over the limit), backlog up to ${cap.backlogMax}, CPU ${cap.cpuMean} cores, ${cap.runtimeCallsPerSecond} runtime calls/s`);
  }
  for (const e of c.events) console.log(`  +${e.at} ms ${e.type}`);
  if (!o.validity.valid) console.log(`RUN INVALID (the simulator, not the model): ${o.validity.reasons.join('; ')}`);
  if (o.check) console.log(o.check.ok ? 'expect: all met' : `expect MISSED: ${o.check.misses.join('; ')}`);
}

if (!values.check) {
  const outcome = await runScenario(read(positionals[0]) as never, { log: values.json ? undefined : (l) => console.log(l) });
  if (values.json) console.log(JSON.stringify(outcome));
  else print(outcome);
  process.exit(!outcome.validity.valid || outcome.check?.ok === false ? 1 : 0);
}

// --check: every scenario must carry an `expect`; a scenario that cannot run at all is a miss too
const rows: { file: string; result: string; status: string; wave: string; valid: string; seconds: string; misses: string }[] = [];
for (const file of scenarioFiles(positionals)) {
  const t0 = Date.now();
  try {
    const sc = read(file) as { expect?: unknown };
    if (!sc.expect) throw new Error('no "expect" in the scenario: nothing to check');
    const o = await runScenario(sc as never);
    const ok = o.check?.ok === true;
    rows.push({ file, result: ok ? 'ok' : 'MISS', status: o.campaign.status, wave: String(o.campaign.wave), valid: o.validity.valid ? 'yes' : 'NO', seconds: ((Date.now() - t0) / 1000).toFixed(0), misses: o.check?.misses.join('; ') ?? '' });
  } catch (err) {
    rows.push({ file, result: 'MISS', status: 'error', wave: '-', valid: '-', seconds: ((Date.now() - t0) / 1000).toFixed(0), misses: (err as Error).message.split('\n')[0] });
  }
  const r = rows[rows.length - 1];
  console.log(`${r.result.padEnd(4)} ${r.file} (${r.seconds} s)${r.misses ? `: ${r.misses}` : ''}`);
}
const cols = ['result', 'file', 'status', 'wave', 'valid', 'seconds', 'misses'] as const;
const width = Object.fromEntries(cols.map((k) => [k, Math.max(k.length, ...rows.map((r) => r[k].length))])) as Record<(typeof cols)[number], number>;
console.log('');
console.log(cols.map((k) => k.padEnd(width[k])).join('  '));
for (const r of rows) console.log(cols.map((k) => r[k].padEnd(width[k])).join('  '));
const missed = rows.filter((r) => r.result !== 'ok').length;
console.log(`\n${rows.length - missed} of ${rows.length} scenarios met their expectations`);
process.exit(missed ? 1 : 0);
