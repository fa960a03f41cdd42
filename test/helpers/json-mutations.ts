// Seeded mutations of JSON messages, for holding a hand-written validator (shared/fast-*.ts) to its zod
// schema: keys removed and added, values replaced by odd ones, arrays grown past their limits.
import { expect } from 'vitest';

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** every path in `v` (the root included, as []) */
export function jsonPaths(v: Json, at: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(at);
  if (Array.isArray(v)) v.forEach((x, i) => jsonPaths(x, [...at, i], out));
  else if (v && typeof v === 'object') for (const k of Object.keys(v)) jsonPaths(v[k], [...at, k], out);
  return out;
}

/** A copy of `base` with one change at a random path: a key removed or added, an array grown to `longArray`, or a value from `weird`. */
export function mutateJson(base: Json, rand: () => number, weird: readonly Json[], longArray: number): Json {
  const v = structuredClone(base) as Json;
  const all = jsonPaths(v).filter((p) => p.length > 0);
  const path = all[Math.floor(rand() * all.length)];
  const parent = path.slice(0, -1).reduce<Json>((o, k) => (o as Record<string, Json>)[k as string], v) as Record<string, Json> | Json[];
  const key = path[path.length - 1];
  const r = rand();
  if (r < 0.25 && !Array.isArray(parent)) delete (parent as Record<string, Json>)[key as string];
  else if (r < 0.35 && !Array.isArray(parent)) (parent as Record<string, Json>)[`extra${Math.floor(rand() * 3)}`] = 1;
  else if (r < 0.42 && Array.isArray((parent as Record<string, Json>)[key as string])) {
    const arr = (parent as Record<string, Json[]>)[key as string];
    (parent as Record<string, Json>)[key as string] = Array.from({ length: longArray }, (_, i) => (arr.length ? arr[i % arr.length] : i));
  } else (parent as Record<string | number, Json>)[key as string] = weird[Math.floor(rand() * weird.length)];
  return v;
}

/**
 * `n` values from `next`, each judged by zod and by the fast check: the fast check must never accept what
 * zod refuses, and must accept everything zod accepts (or the fast path is useless). The mutations must
 * reach both sides: most are refused, a few hundred are still valid.
 */
export function expectFastAgreesWithZod(n: number, next: (i: number) => Json, zodOk: (v: Json) => boolean, fastOk: (v: Json) => boolean): void {
  let refusedByZod = 0, acceptedByBoth = 0, fastStricter = 0;
  for (let i = 0; i < n; i++) {
    const v = next(i);
    const z = zodOk(v), f = fastOk(v);
    if (f) expect(z, JSON.stringify(v)).toBe(true);
    if (!z) refusedByZod++;
    else if (f) acceptedByBoth++;
    else fastStricter++;
  }
  expect(refusedByZod).toBeGreaterThan(n / 2);
  expect(acceptedByBoth).toBeGreaterThan(300);
  expect(fastStricter).toBe(0);
}
