// The broker's allocation-free filter matcher (server/mqtt/topic-match.ts) against the plain definition
// it replaced (split both on '/', compare level by level), on the fleet's own topics and on random
// filters and topics made of a few letters, '/', '+' and '#'.
import { describe, expect, it } from 'vitest';
import { topicMatches } from '../../server/mqtt/topic-match.ts';
import { mulberry32 } from '../../shared/prng.ts';
import { topics } from '../../shared/topics.ts';

function bySplit(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

describe('topicMatches', () => {
  it('matches the fleet topics as the split definition does', () => {
    const cases: [string, string, boolean][] = [
      [topics.all('telemetry'), topics.telemetry('dev-1'), true],
      [topics.all('telemetry'), topics.status('dev-1'), false],
      [topics.all('status'), 'fleet/v1/dev-1/status/extra', false],
      [topics.all('status'), 'fleet/v1/status', false],
      ['fleet/#', topics.presence('d'), true],
      ['fleet/v1/#', 'fleet/v1', true],
      ['#', '', true],
      ['+/+', '/', true],
      ['a//b', 'a//b', true],
      ['a/+', 'a', false],
      ['a', 'a/b', false],
    ];
    for (const [f, t, want] of cases) {
      expect(topicMatches(f, t), `${f} ~ ${t}`).toBe(want);
      expect(bySplit(f, t), `${f} ~ ${t}`).toBe(want);
    }
  });

  it('agrees with the split definition on 20,000 random filter and topic pairs', () => {
    const rand = mulberry32(13);
    const pick = (alphabet: string, max: number) => Array.from({ length: Math.floor(rand() * (max + 1)) }, () => alphabet[Math.floor(rand() * alphabet.length)]).join('');
    let matched = 0;
    for (let i = 0; i < 20_000; i++) {
      const filter = pick('ab/+#', 7), topic = pick('ab/', 7);
      const want = bySplit(filter, topic);
      if (want) matched++;
      expect(topicMatches(filter, topic), `${JSON.stringify(filter)} ~ ${JSON.stringify(topic)}`).toBe(want);
    }
    expect(matched).toBeGreaterThan(500); // both outcomes are exercised
  });
});
