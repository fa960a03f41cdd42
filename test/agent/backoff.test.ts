// Retries back off exponentially with jitter and a bound (device-agent/backoff.ts), on a clock the test
// controls: no real sleeps.
import { describe, expect, it } from 'vitest';
import { backoffDelay, retryWithBackoff } from '../../device-agent/backoff.ts';

describe('backoffDelay', () => {
  it.each([
    // retry, random, expected: d = min(maxMs, 100 * 2^(retry-1)), wait in [d/2, d]
    [1, 0, 50], [1, 1, 100], [2, 0.5, 150], [3, 1, 400], [4, 0, 250], [4, 1, 500], [10, 1, 500], [10, 0, 250],
  ] as const)('retry %i, random %d: %i ms', (retry, r, want) => {
    expect(backoffDelay(retry, { baseMs: 100, maxMs: 500 }, () => r)).toBe(want);
  });
});

describe('retryWithBackoff', () => {
  it('retries until success, waiting on the injected clock', async () => {
    const waits: number[] = [];
    let calls = 0;
    const out = await retryWithBackoff(async () => { if (++calls < 4) throw new Error(`try ${calls}`); return 'ok'; },
      { attempts: 5, baseMs: 1000, maxMs: 3000 }, { random: () => 1, sleep: async (ms) => { waits.push(ms); } });
    expect([out, calls, waits]).toEqual(['ok', 4, [1000, 2000, 3000]]);
  });

  it('gives up after its attempts with the last error', async () => {
    const waits: number[] = [];
    let calls = 0;
    const err = await retryWithBackoff(async () => { throw new Error(`try ${++calls}`); }, { attempts: 3, baseMs: 10, maxMs: 1000 },
      { random: () => 0, sleep: async (ms) => { waits.push(ms); } }).catch((e: Error) => e.message);
    expect([err, calls, waits]).toEqual(['try 3', 3, [5, 10]]);
  });

  it('stops at once when told to (the agent is stopping), and on an error it must not retry', async () => {
    const stop = new AbortController();
    let calls = 0;
    const err = await retryWithBackoff(async () => { calls++; throw new Error('down'); }, { attempts: 10, baseMs: 10, maxMs: 10 },
      { random: () => 0, signal: stop.signal, sleep: async () => { stop.abort(); } }).catch((e: Error) => e.message);
    expect([err, calls]).toEqual(['down', 1]);
    let calls2 = 0;
    await retryWithBackoff(async () => { calls2++; throw new Error('refused'); }, { attempts: 10, baseMs: 10, maxMs: 10 },
      { random: () => 0, sleep: async () => {} }, () => false).catch(() => {});
    expect(calls2).toBe(1);
  });
});
