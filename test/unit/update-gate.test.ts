// The agent's update gate (device-agent/conditions.ts) reads the data disk's free space only when the
// desired state carries a policy that could use it (issue 13: a statfs per step of every update, for
// assignments that have no policy at all).
import { describe, expect, it } from 'vitest';
import { UpdateGate } from '../../device-agent/conditions.ts';

function gate(free: number | null) {
  const reads = { n: 0 };
  const g = new UpdateGate({ timeZone: 'UTC', now: () => Date.parse('2030-06-01T12:00:00Z'), pollMs: 1000, freeDiskBytes: () => { reads.n++; return free; } });
  return { g, reads };
}

describe('UpdateGate.blockers', () => {
  it('no policy: nothing blocks, and the disk is not asked', () => {
    const { g, reads } = gate(0);
    expect(g.blockers(undefined, 'download', 10_000_000)).toEqual([]);
    expect(g.blockers(undefined, 'switch', 0)).toEqual([]);
    expect(reads.n).toBe(0);
  });

  it('a policy with a free-disk condition still reads the disk on every look and waits on it', () => {
    const { g, reads } = gate(1000);
    const policy = { conditions: { minFreeDiskBytes: 500 } };
    expect(g.blockers(policy, 'download', 600)).toEqual(['WAIT_DISK']);
    expect(g.blockers(policy, 'download', 400)).toEqual([]);
    expect(reads.n).toBe(2);
  });
});
