// Whether a simulated run measured the model or the simulator (issue 21): pure, from the figures every
// process reported. An invalid run's campaign outcome says nothing about the candidate.
import type { CapacityReport } from './capacity.ts';
import type { ProcessReport } from './fleet-processes.ts';
import type { Limits } from './scenario.ts';

export interface Validity { valid: boolean; reasons: string[] }

export function judgeValidity(limits: Limits, server: CapacityReport, fleet: ProcessReport[]): Validity {
  const reasons: string[] = [];
  const processes: [string, CapacityReport][] = [[server.role === 'server' ? 'server process' : 'simulator process', server]];
  fleet.forEach((p, i) => { if (p.capacity) processes.push([`fleet process ${i + 1}`, p.capacity]); });
  for (const [name, c] of processes) {
    if (c.samples > 0 && c.samplesOverLag / c.samples > limits.maxLagSampleShare) {
      reasons.push(`${name} over capacity: event-loop lag p99 above ${limits.maxLagMs} ms in ${c.samplesOverLag} of ${c.samples} one-second samples (worst ${c.lagP99MaxMs} ms, runtime backlog up to ${c.backlogMax} calls, CPU ${c.cpuMean} cores)`);
    }
  }
  const infra = fleet.reduce((n, p) => n + p.health.infraFailures, 0);
  if (infra > 0) {
    const first = fleet.find((p) => p.health.firstInfraFailure)?.health.firstInfraFailure;
    reasons.push(`${infra} inference calls failed in the simulator's own runtime (not reported to the server as model errors; first: ${first})`);
  }
  const calls = fleet.reduce((n, p) => n + p.workload.calls, 0);
  const busy = fleet.reduce((n, p) => n + p.workload.busy, 0);
  const late = fleet.reduce((n, p) => n + p.workload.late, 0);
  const due = calls + busy + late;
  if (due > 0 && (busy + late) / due > limits.maxSkippedShare) {
    reasons.push(`${busy + late} of ${due} due workload calls (${(((busy + late) / due) * 100).toFixed(1)}%) were not made (limit ${(limits.maxSkippedShare * 100).toFixed(1)}%): ${busy} found the device still busy, ${late} missed by a late event loop`);
  }
  return { valid: reasons.length === 0, reasons };
}
