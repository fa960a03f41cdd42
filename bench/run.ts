// `npm run bench`: runs every benchmark section, prints one JSON report and writes it to
// bench/results/latest.json. A section is {name, run}; it reports its own run counts and medians.
// A section that throws is reported as {error} and the others still run. Add a section by adding a
// module and one line to SECTIONS (rollout, ingest, revert, memory are expected next).
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, platform, release, arch } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface BenchSection { name: string; run: () => Promise<object> }

const here = dirname(fileURLToPath(import.meta.url));

/** A section whose module may not exist yet (written by someone else): skipped with a note if absent. */
function optionalSection(name: string, file: string, exportName: string): BenchSection {
  return {
    name,
    run: async () => {
      const path = join(here, file);
      if (!existsSync(path)) return { skipped: `${file} does not exist yet` };
      const mod = (await import(path)) as Record<string, unknown>;
      const fn = mod[exportName];
      if (typeof fn !== 'function') return { skipped: `${file} has no export ${exportName}` };
      return (await (fn as () => Promise<object>)()) ?? {};
    },
  };
}

export const SECTIONS: BenchSection[] = [
  { name: 'bundle', run: async () => (await import('./bundle.ts')).benchBundle() },
  { name: 'corpus', run: async () => (await import('./corpus.ts')).benchCorpus() },
  optionalSection('agentInference', 'agent.ts', 'benchAgentInference'),
  { name: 'agentPackage', run: async () => (await import('./agent-package.ts')).benchAgentPackage() },
  { name: 'ingest', run: async () => (await import('./ingest.ts')).benchIngest() },
  { name: 'verify', run: async () => (await import('./verify.ts')).benchVerify() },
  { name: 'deviceIdentity', run: async () => (await import('./device-identity.ts')).benchDeviceIdentity() },
  { name: 'memory', run: async () => (await import('./memory.ts')).benchMemory() },
  { name: 'rollout', run: async () => (await import('./rollout.ts')).benchRollout() },
  { name: 'revert', run: async () => (await import('./rollout.ts')).benchRevert() },
  { name: 'telemetryStore', run: async () => (await import('./telemetry-store.ts')).benchTelemetryStore() },
  { name: 'simulator', run: async () => (await import('./simulator.ts')).benchSimulator() },
  { name: 'canaryStats', run: async () => (await import('./canary-stats.ts')).benchCanaryStats() },
  { name: 'multiModel', run: async () => (await import('./multi-model.ts')).benchMultiModel() },
  { name: 'delta', run: async () => (await import('./delta.ts')).benchDelta() },
  { name: 'shadow', run: async () => (await import('./shadow.ts')).benchShadow() },
  // issue 15: 30,000 devices on a 3-node NATS cluster, 10,000 on mosquitto and on the embedded broker (long: tens of minutes)
  { name: 'brokers', run: async () => (await import('./brokers.ts')).benchBrokers() },
];

export async function runBench(sections: BenchSection[] = SECTIONS) {
  const startedAt = new Date().toISOString();
  const results: Record<string, object> = {};
  for (const s of sections) {
    const t0 = performance.now();
    try {
      results[s.name] = { ...(await s.run()), durationMs: Math.round(performance.now() - t0) };
    } catch (err) {
      results[s.name] = { error: (err as Error).message, durationMs: Math.round(performance.now() - t0) };
    }
  }
  const c = cpus();
  return {
    startedAt,
    finishedAt: new Date().toISOString(),
    machine: { cpus: c.length, cpuModel: c[0]?.model ?? 'unknown', node: process.version, platform: platform(), release: release(), arch: arch(), totalMemBytes: totalmem() },
    sections: results,
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const report = await runBench();
  const out = join(here, 'results', 'latest.json');
  mkdirSync(dirname(out), { recursive: true });
  const text = JSON.stringify(report, null, 2);
  writeFileSync(out, text + '\n');
  console.log(text);
  console.error(`written to ${out}`);
}
