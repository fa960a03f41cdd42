// `npm run sim -- --check`: scenarios that check themselves (issue 21). The CLI runs as a user runs it
// (its own process, a real server and a fleet process per scenario) on a small version of the library's
// latency-2x.json (30 devices: the library's 100 were marked invalid on this 2-core host when another
// process kept a core busy), and on a copy of it with a deliberately wrong `expect`, which must fail.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

function check(...files: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'firmware-sim/sim.ts', '--check', ...files], { encoding: 'utf8', timeout: 400_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('npm run sim -- --check', { timeout: 420_000 }, () => {
  it('a scenario that meets its expect passes (2x slower candidate halted in wave 1, at most 10 devices touched)', () => {
    const r = check('test/sim/scenarios/latency-2x-small.json');
    expect(r.code, r.out + r.err).toBe(0);
    expect(r.out).toMatch(/^ok\s+test\/sim\/scenarios\/latency-2x-small\.json/m);
    expect(r.out).toMatch(/ok\s+test\/sim\/scenarios\/latency-2x-small\.json\s+reverted\s+1\s+yes/);
    expect(r.out).toContain('1 of 1 scenarios met their expectations');
  });

  it('a wrong expect fails the check: exit 1, the miss named in the table', () => {
    const r = check('test/sim/scenarios/wrong-expect.json');
    expect(r.code, r.out + r.err).toBe(1);
    expect(r.out).toMatch(/MISS\s+test\/sim\/scenarios\/wrong-expect\.json/);
    expect(r.out).toContain('status reverted, expected completed');
    expect(r.out).toContain('0 devices on the candidate, expected 30');
    expect(r.out).toContain('0 of 1 scenarios met their expectations');
  });

  it('a scenario without an expect, or that is not JSON, is a miss, not a pass', () => {
    const r = check('package.json', 'README.md');
    expect(r.code).toBe(1);
    expect(r.out).toContain('no "expect" in the scenario');
    expect(r.out).toContain('not JSON');
    expect(r.out).toContain('0 of 2 scenarios met their expectations');
  });
});
