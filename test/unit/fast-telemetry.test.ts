// The ingest path's hand-written telemetry check (shared/fast-telemetry.ts) must never accept what the
// zod schema refuses: checked on realistic windows and on thousands of seeded mutations of them (keys
// removed and added, wrong types, negative, fractional, huge and non-finite numbers, bad ids, hashes and
// times, oversized histograms). It must also accept every valid window (or the fast path is useless).
import { describe, expect, it } from 'vitest';
import { isTelemetry } from '../../shared/fast-telemetry.ts';
import { Telemetry } from '../../shared/messages.ts';
import { seededRandom } from '../../server/bundles/golden-vectors.ts';
import { expectFastAgreesWithZod, jsonPaths, mutateJson, type Json } from '../helpers/json-mutations.ts';
import { telemetryPayload } from '../../bench/ingest.ts';


const WEIRD: Json[] = [null, true, false, 0, -1, 1.5, -0.5, 2 ** 53, 1e308, '', 'x', 'dev/1', '#', '2026-13-01T00:00:00Z', '2026-11-30T10:00:00Z',
  '2026-11-30T10:00:00+01:00', '2026-02-30T10:00:00Z', 'E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855', 'a'.repeat(64), 'a'.repeat(65), [], [1, 2], {}, { kind: 'values' },
  { kind: 'argmax', edges: [], counts: [] }, { kind: 'other', edges: [], counts: [] }, { kind: 'values', edges: [1], counts: [-1] }];

const mutate = (base: Json, rand: () => number): Json => mutateJson(base, rand, WEIRD, 300);

/** a window carrying shadow figures (shadow mode, issue 17) */
function withShadow(deviceId: string, seq: number): Json {
  const t = JSON.parse(telemetryPayload(deviceId, seq).toString()) as Record<string, Json>;
  const k = seq % 13;
  t.shadow = {
    modelId: 'digits', version: 4, manifestSha256: 'a'.repeat(64), samples: 60 + k, errors: k % 2, dropped: k % 3, activeMs: 12.5 + k, candidateMs: 14.25 + k,
    outputs: {
      probabilities: { kind: 'classifier', positions: 60 + k, agree: 58, signal: 41.5, noise: 0.125 + k / 100, dot: 41.2, candidateSq: 40.9, maxAbsError: 0.3 },
      embedding: { kind: 'fidelity', positions: 0, agree: 0, signal: 9, noise: 0, dot: -0.5, candidateSq: 9, maxAbsError: 0 },
    },
    outputHistograms: { probabilities: { kind: 'argmax', edges: [], counts: Array.from({ length: 10 }, (_, i) => 5 + ((i + k) % 4)) } },
  };
  return t;
}

/** a window of a device running several models: per-model figures and the chain's (issue 19) */
function withModels(deviceId: string, seq: number): Json {
  const t = JSON.parse(telemetryPayload(deviceId, seq).toString()) as Record<string, Json>;
  const k = seq % 11;
  const lat = (base: number) => ({ p50: base, p95: base * 2 + k, p99: base * 3 + k, max: base * 4 + k });
  t.models = {
    'oww-mel': { count: 40 + k, errors: 0, latencyMs: lat(1.5), version: 3, manifestSha256: 'b'.repeat(64) },
    'oww-emb': {
      count: 40 + k, errors: k % 3, latencyMs: lat(4.25), version: 5, manifestSha256: 'c'.repeat(64),
      // its own drift histograms (the drift gate per model), on some windows only: both shapes are valid
      ...(k % 2 ? {
        inputHistograms: { input_1: { kind: 'values', edges: [-1, 0, 1], counts: [1 + k, 2, 3, 4] } },
        outputHistograms: { conv2d_19: { kind: 'values', edges: [0.5], counts: [k, 7] }, top: { kind: 'argmax', edges: [], counts: [3, k] } },
      } : {}),
    },
    kws_9: { count: 20, errors: 0, latencyMs: lat(0.5), version: 9, manifestSha256: 'd'.repeat(64) },
  };
  t.chain = { count: 20 + k, errors: k % 2, latencyMs: lat(7) };
  return t;
}

/**
 * Windows built by `build` must all pass both checks; then 10,000 mutations, most landing inside the
 * `parts` (a small share of the whole window's paths): the fast check never accepts what zod refuses.
 */
function partMutations(build: (deviceId: string, seq: number) => Json, parts: string[], seed: number): void {
  for (let seq = 0; seq < 100; seq++) {
    const t = build(`dev-${seq}`, seq);
    expect(Telemetry.safeParse(t).success).toBe(true);
    expect(isTelemetry(t)).toBe(true);
  }
  const rand = seededRandom(seed);
  expectFastAgreesWithZod(10_000, (i) => {
    let v = build(`dev-${i % 50}`, i) as Record<string, Json>;
    for (let m = rand() < 0.3 ? 2 : 1; m > 0; m--) {
      const part = parts[Math.floor(rand() * parts.length)];
      if (rand() < 0.8 && v[part] !== null && typeof v[part] === 'object' && jsonPaths(v[part]).length > 1) v[part] = mutate(v[part], rand);
      else v = mutate(v, rand) as Record<string, Json>;
    }
    return v;
  }, (v) => Telemetry.safeParse(v).success, isTelemetry);
}

describe('fast telemetry check', () => {
  it('accepts every valid window the bench and agents send', () => {
    for (let seq = 0; seq < 300; seq++) {
      const t = JSON.parse(telemetryPayload(`dev-${seq}`, seq).toString());
      expect(Telemetry.safeParse(t).success).toBe(true);
      expect(isTelemetry(t)).toBe(true);
    }
    const idle = { deviceId: 'd1', seq: 0, windowStart: '2026-11-30T10:00:00.000Z', windowEnd: '2026-11-30T10:01:00.000Z', active: null, count: 0, errors: 0, latencyMs: { p50: 0, p95: 0, p99: 0, max: 0 }, rssBytes: 0 };
    expect(isTelemetry(idle)).toBe(true);
  });

  it('never accepts a mutated window that zod refuses (10,000 seeded mutations)', () => {
    const rand = seededRandom(20261130);
    expectFastAgreesWithZod(10_000, (i) => {
      const v = mutate(JSON.parse(telemetryPayload(`dev-${i % 50}`, i).toString()) as Json, rand);
      return rand() < 0.3 ? mutate(v, rand) : v;
    }, (v) => Telemetry.safeParse(v).success, isTelemetry);
  });

  it('shadow figures: accepts every valid window with them, never a mutated one zod refuses (10,000 seeded mutations)', () => {
    partMutations(withShadow, ['shadow'], 20261117);
  });

  it('per-model and chain figures (issue 19): accepts every valid window with them, never a mutated one zod refuses (10,000 seeded mutations)', () => {
    partMutations(withModels, ['models', 'chain'], 20261119);
  });
});
