// npm run sim -- <scenario.json> [--json]: run a scenario file and print the outcome.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { runScenario } from './run-scenario.ts';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { json: { type: 'boolean', default: false } } });
if (positionals.length !== 1) {
  console.error('usage: npm run sim -- <scenario.json> [--json]');
  process.exit(2);
}
const scenario = JSON.parse(readFileSync(positionals[0], 'utf8'));
const outcome = await runScenario(scenario, { log: values.json ? undefined : (l) => console.log(l) });
if (values.json) console.log(JSON.stringify(outcome));
else {
  const c = outcome.campaign;
  console.log(`campaign ${c.status} at wave ${c.wave}${c.failures.length ? `: ${c.failures.join('; ')}` : ''}`);
  console.log(`devices on candidate ${outcome.devicesOn.candidate}, on baseline ${outcome.devicesOn.baseline}, other ${outcome.devicesOn.other}, none ${outcome.devicesOn.none}; reasons ${JSON.stringify(outcome.byReason)}`);
  console.log(`timings ${JSON.stringify(outcome.timings)}; server peak RSS ${outcome.server.peakRssMB} MB, ${outcome.server.cpuSeconds} CPU s`);
  for (const e of c.events) console.log(`  +${e.at} ms ${e.type}`);
}
process.exit(0);
