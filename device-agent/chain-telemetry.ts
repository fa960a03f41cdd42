// [#19] Per-chain telemetry: one inferChain call counts once in the window's chain figures, end to end
// (its steps count under their own models as well). A caller's mistake (inputs that do not fit the first
// model) and the simulator's own failures are not the chain's errors, as for a single model.
import { InputMismatch } from './input-check.ts';
import { isNotAModelError } from './model-runtime.ts';
import type { TelemetryWindow } from './telemetry-window.ts';

export async function timedChain<T>(window: TelemetryWindow, run: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    const out = await run();
    window.recordChain(performance.now() - t0, true);
    return out;
  } catch (err) {
    if (!(err instanceof InputMismatch) && !isNotAModelError(err)) window.recordChain(0, false);
    throw err;
  }
}
