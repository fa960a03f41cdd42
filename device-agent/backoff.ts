// Retries that back off: exponential from baseMs, capped at maxMs, with "equal jitter" (half the delay
// fixed, half random) so a fleet that failed together does not retry together, and a bounded number of
// attempts. The clock is injected (sleep), so tests move time instead of waiting for it.

export interface BackoffPolicy {
  /** tries in all, the first included */
  attempts: number;
  baseMs: number;
  maxMs: number;
}

/** The wait before retry number `retry` (1 = the first retry): in [d/2, d], d = min(maxMs, baseMs * 2^(retry-1)). */
export function backoffDelay(retry: number, p: Pick<BackoffPolicy, 'baseMs' | 'maxMs'>, random: () => number): number {
  const d = Math.min(p.maxMs, p.baseMs * 2 ** Math.max(0, retry - 1));
  return Math.round(d / 2 + (d / 2) * random());
}

export interface RetryDeps {
  random: () => number;
  /** resolves after ms; rejects (or resolves early) when the caller gives up */
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  signal?: AbortSignal;
  onRetry?: (retry: number, delayMs: number, err: unknown) => void;
}

/** Run `fn` until it succeeds, `attempts` are spent, `retryable(err)` says no, or the signal aborts. */
export async function retryWithBackoff<T>(fn: (attempt: number) => Promise<T>, p: BackoffPolicy, d: RetryDeps, retryable: (err: unknown) => boolean = () => true): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (attempt >= p.attempts || !retryable(err) || d.signal?.aborted) throw err;
      const delay = backoffDelay(attempt, p, d.random);
      d.onRetry?.(attempt, delay, err);
      await d.sleep(delay, d.signal);
      if (d.signal?.aborted) throw err;
    }
  }
}

/** The real clock: setTimeout, cut short by the signal. */
export function realSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() { clearTimeout(timer); signal?.removeEventListener('abort', done); resolve(); }
    signal?.addEventListener('abort', done, { once: true });
  });
}
