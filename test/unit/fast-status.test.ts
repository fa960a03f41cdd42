// The ingest path's hand-written status check (shared/fast-status.ts) must never accept what the zod
// schema `Status` refuses: checked on statuses as agents send them (every state, with and without a
// reason, a multi-model set and a release) and on 10,000 seeded mutations of them (keys removed and
// added, wrong types, negative, fractional and huge numbers, bad ids, hashes, times and enums, oversized
// arrays). It must also accept every valid status (or the fast path is useless).
import { describe, expect, it } from 'vitest';
import { isStatus } from '../../shared/fast-status.ts';
import { Status, UpdateState } from '../../shared/messages.ts';
import { seededRandom } from '../../server/bundles/golden-vectors.ts';
import { expectFastAgreesWithZod, mutateJson, type Json } from '../helpers/json-mutations.ts';


const WEIRD: Json[] = [null, true, false, 0, -1, 1.5, -0.5, 2 ** 53, 1e308, '', 'x', 'dev/1', '#', 'active', 'WAIT_WINDOW', 'NOT_A_REASON', '2026-13-01T00:00:00Z',
  '2026-11-30T10:00:00Z', '2026-11-30T10:00:00+01:00', '2026-02-30T10:00:00Z', 'E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855', 'a'.repeat(64),
  'a'.repeat(65), 'v'.repeat(33), 'd'.repeat(1001), [], [1, 2], {}, { modelId: 'm', version: 1 }, { name: 'r', version: 0 }];

const mutate = (base: Json, rand: () => number): Json => mutateJson(base, rand, WEIRD, 20);

const sha = (c: string) => c.repeat(64);
/** statuses as agents send them: progress, outcomes with reasons, a set of models in a release */
function statuses(i: number): Json[] {
  const active = { modelId: 'sim-model', version: 2, manifestSha256: sha('a') };
  const base = { deviceId: `dev-${String(i).padStart(5, '0')}`, ts: '2026-11-30T13:00:00.123Z', agentVersion: '0.4.0', directorSeq: 7 + i, manifestSha256: sha('b'), modelId: 'sim-model', version: 3 };
  return [
    ...UpdateState.options.map((state, k) => ({ ...base, seq: i * 20 + k, state, active: k % 2 ? active : null })),
    { ...base, seq: 1, state: 'failed', reason: 'DOWNLOAD_FAILED', detail: 'download of http://127.0.0.1/v1/artifacts/x failed after 4 attempts', active },
    { ...base, state: 'waiting', reason: 'WAIT_WINDOW', detail: 'download waits: WAIT_WINDOW', active },
    { deviceId: 'd1', ts: '2026-11-30T13:00:00+09:00', state: 'idle', active: null, agentVersion: '' },
    { ...base, seq: 2, state: 'active', active, activeSet: [active, { modelId: 'kws', version: 1, manifestSha256: sha('c') }], release: { name: 'wakeword', version: 2 } },
  ];
}

describe('fast status check', () => {
  it('accepts every valid status agents send', () => {
    let n = 0;
    for (let i = 0; i < 20; i++) {
      for (const s of statuses(i)) {
        expect(Status.safeParse(s).success, JSON.stringify(s)).toBe(true);
        expect(isStatus(s), JSON.stringify(s)).toBe(true);
        n++;
      }
    }
    expect(n).toBe(20 * (UpdateState.options.length + 4));
  });

  it('never accepts a mutated status that zod refuses (10,000 seeded mutations)', () => {
    const rand = seededRandom(20261130);
    expectFastAgreesWithZod(10_000, (i) => {
      const all = statuses(i % 50);
      const v = mutate(all[i % all.length], rand);
      return rand() < 0.3 ? mutate(v, rand) : v;
    }, (v) => Status.safeParse(v).success, isStatus);
  });
});
