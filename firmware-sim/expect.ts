// A scenario's `expect` against its outcome: every miss as a sentence (`npm run sim -- --check`).
import type { Expect } from './scenario.ts';

export interface Observed {
  status: string;
  /** the wave whose gate failed, or null */
  haltWave: number | null;
  failures: string[];
  byReason: Record<string, number>;
  devicesTouched: number;
  devicesOnCandidate: number;
  outsideTargetChanged: number;
  inferenceErrors: number;
  valid: boolean;
  invalidReasons: string[];
}

export function checkExpect(e: Expect, o: Observed): string[] {
  const miss: string[] = [];
  if (e.valid !== o.valid) miss.push(e.valid ? `run invalid: ${o.invalidReasons.join('; ')}` : 'run valid, expected invalid');
  if (e.status !== undefined && o.status !== e.status) miss.push(`status ${o.status}, expected ${e.status}`);
  if (e.haltWave !== undefined && o.haltWave !== e.haltWave) miss.push(o.haltWave === null ? `no gate failed, expected a halt in wave ${e.haltWave}` : `halted in wave ${o.haltWave}, expected wave ${e.haltWave}`);
  if (e.maxDevicesTouched !== undefined && o.devicesTouched > e.maxDevicesTouched) miss.push(`${o.devicesTouched} devices touched, expected at most ${e.maxDevicesTouched}`);
  if (e.devicesOnCandidate !== undefined && o.devicesOnCandidate !== e.devicesOnCandidate) miss.push(`${o.devicesOnCandidate} devices on the candidate, expected ${e.devicesOnCandidate}`);
  if (e.reason !== undefined && !o.failures.some((f) => f.includes(e.reason!)) && !(e.reason in o.byReason)) {
    miss.push(`no gate failure or device reason matches "${e.reason}" (gate: ${o.failures.join('; ') || 'none'}; reasons: ${JSON.stringify(o.byReason)})`);
  }
  if (e.nothingOutsideTargetChanged && o.outsideTargetChanged > 0) miss.push(`${o.outsideTargetChanged} devices outside the target changed model`);
  if (e.maxInferenceErrors !== undefined && o.inferenceErrors > e.maxInferenceErrors) miss.push(`${o.inferenceErrors} inference errors reported, expected at most ${e.maxInferenceErrors}`);
  return miss;
}
