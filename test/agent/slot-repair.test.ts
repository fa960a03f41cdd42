// Recovery checks before it deletes, and slots heal themselves (issue 11, items 3 and 4): on start every
// recorded slot is checked against the state record; a damaged artifact whose signed manifest is intact
// is fetched again and verified; what cannot be repaired is dropped from the record and reported, and a
// crash on probation reverts only to a previous model that verifies.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FleetAgent } from '../../device-agent/agent.ts';
import { AgentState } from '../../device-agent/state-store.ts';
import type { Status } from '../../shared/messages.ts';
import { assign, pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { AgentProcess } from './agent-process-handle.ts';
import { settled, startAgent } from './fixture.ts';

type Damage = 'truncate' | 'flip' | 'delete-manifest-too';
function damage(dataDir: string, slot: string, how: Damage): void {
  const onnx = join(dataDir, 'slots', `${slot}.onnx`);
  if (how === 'flip') { const b = readFileSync(onnx); b[b.length >> 1] ^= 1; writeFileSync(onnx, b); return; }
  truncateSync(onnx, 100);
  if (how === 'delete-manifest-too') writeFileSync(join(dataDir, 'slots', `${slot}.manifest.json`), '{"not":"it"}');
}
const disk = (dataDir: string) => AgentState.parse(JSON.parse(readFileSync(join(dataDir, 'state.json'), 'utf8')));
const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

describe('self-healing slots', () => {
  let server: TestServer;
  let v1: Awaited<ReturnType<typeof pushBundle>>;
  let v2: Awaited<ReturnType<typeof pushBundle>>;
  const running: FleetAgent[] = [];
  beforeAll(async () => {
    server = await startTestServer();
    v1 = await pushBundle(server, 'tiny', tinyClassifier(1));
    v2 = await pushBundle(server, 'tiny', tinyClassifier(2));
  }, 60_000);
  afterAll(async () => { for (const a of running) await a.stop(); await server?.close(); });

  /** A device on v2 (v1 as previous, or none), stopped, its active slot damaged, started again. */
  async function restartDamaged(deviceId: string, withPrevious: boolean, how: Damage) {
    let agent = await startAgent(server, deviceId);
    for (const v of withPrevious ? [v1, v2] : [v2]) {
      const done = settled(agent, v.manifestSha256, ['active']);
      await assign(server, v.manifestSha256, [deviceId]);
      await done;
    }
    await agent.stop();
    const dataDir = agent.config.dataDir;
    const before = disk(dataDir);
    damage(dataDir, before.active!, how);
    const statuses: Status[] = [];
    // the refetch is held until the test has seen what start() left: a real download, let through later
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    const gatedFetch: typeof fetch = async (...args) => { await gate; return fetch(...args); };
    agent = await startAgent(server, deviceId, {}, { fetch: gatedFetch, log: (e, f) => { if (e === 'status') statuses.push(f as unknown as Status); } });
    running.push(agent);
    const servedAtStart = agent.active?.manifestSha256 ?? null;
    const recordAtStart = disk(dataDir);
    release();
    await agent.repaired();
    return { agent, dataDir, before, servedAtStart, recordAtStart, after: disk(dataDir), reports: () => statuses.filter((s) => s.reason).map((s) => [s.state, s.reason]) };
  }

  it.each([
    ['truncated', 'truncate'],
    ['corrupted', 'flip'],
  ] as const)('%s active slot with an intact manifest and a previous slot: serves the previous one at once, fetches the slot again in the background, back on it', async (_n, how) => {
    const { agent, dataDir, before, servedAtStart, recordAtStart, after, reports } = await restartDamaged(`heal-${how}`, true, how);
    // start() did not wait for the network: it fell back, and the record never named the damaged slot
    expect(servedAtStart).toBe(v1.manifestSha256);
    expect(recordAtStart.active).toBe(before.previous);
    expect(recordAtStart.slots[before.active!]).toBeNull();
    expect(recordAtStart.repairs.map((r) => [r.slot, r.role])).toEqual([[before.active, 'active']]);
    // then the slot came back, verified, in its role
    expect(agent.active?.manifestSha256).toBe(v2.manifestSha256);
    expect([after.active, after.previous]).toEqual([before.active, before.previous]);
    expect(after.repairs).toEqual([]);
    expect(sha(join(dataDir, 'slots', `${after.active}.onnx`))).toBe(v2.manifest.artifact.sha256);
    expect(reports()).toEqual([['reverted', 'SLOT_DAMAGED'], ['recovered', 'SLOT_DAMAGED']]);
  });

  it('truncated active slot, no previous slot: nothing to serve until it is fetched again, said so, then recovered', async () => {
    const { agent, dataDir, before, servedAtStart, recordAtStart, after, reports } = await restartDamaged('heal-alone', false, 'truncate');
    expect(servedAtStart).toBeNull();
    expect([recordAtStart.active, recordAtStart.slots.a, recordAtStart.slots.b]).toEqual([null, null, null]);
    expect(agent.active?.manifestSha256).toBe(v2.manifestSha256);
    expect(after.active).toBe(before.active);
    expect(sha(join(dataDir, 'slots', `${after.active}.onnx`))).toBe(v2.manifest.artifact.sha256);
    expect(reports()).toEqual([['failed', 'SLOT_DAMAGED'], ['recovered', 'SLOT_DAMAGED']]);
  });

  it('damaged beyond repair, with a previous slot: falls back to it and says why', async () => {
    const { agent, before, after, reports } = await restartDamaged('heal-fallback', true, 'delete-manifest-too');
    expect(agent.active?.manifestSha256).toBe(v1.manifestSha256);
    expect(after.active).toBe(before.previous);
    expect(after.slots[before.active!]).toBeNull(); // the record never names the damaged slot
    expect(after.repairs).toEqual([]);
    expect(reports()).toEqual([['reverted', 'SLOT_DAMAGED']]);
  });

  it('damaged beyond repair, nothing else: no model, said so, and the record names no slot', async () => {
    const { agent, after, reports } = await restartDamaged('heal-none', false, 'delete-manifest-too');
    expect(agent.active).toBeNull();
    expect([after.active, after.slots.a, after.slots.b]).toEqual([null, null, null]);
    expect(reports()).toEqual([['failed', 'SLOT_DAMAGED']]);
  });
});

describe('killed on probation with the revert target damaged', () => {
  let server: TestServer;
  beforeAll(async () => { server = await startTestServer(); }, 60_000);
  afterAll(async () => { await server?.close(); });

  it.each([
    ['beyond repair: keeps the model that passed its health check', 'delete-manifest-too', 'v2', [['active', 'REVERT_TARGET_DAMAGED']]],
    ['repairable: keeps it while the target is fetched again in the background, then reverts to exactly it', 'truncate', 'v1',
      [['active', 'REVERT_TARGET_DAMAGED'], ['reverted', 'CRASH_RECOVERY']]],
  ] as const)('%s', async (_name, how, expectActive, expectReports) => {
    const v1 = await pushBundle(server, 'tiny', tinyClassifier(1));
    const v2 = await pushBundle(server, 'tiny', tinyClassifier(2));
    const deviceId = `probation-damaged-${how}`;
    const dataDir = join(server.dir, 'kill', deviceId);
    mkdirSync(dataDir, { recursive: true });
    const spec = AgentProcess.writeSpec(dataDir, {
      config: {
        deviceId, dataDir, mqttUrl: server.mqttUrl, serverUrl: server.baseUrl, rootPublicKey: server.rootPublicKey, enrollmentToken: server.enrollmentToken,
        reconnectMinMs: 100, probationInferences: 0, probationSeconds: 5, download: { retries: 1, backoffMs: 20, timeoutMs: 10_000 },
      },
    });
    let proc = new AgentProcess(spec);
    try {
      await proc.waitFor((l) => l.event === 'ready', 60_000);
      await assign(server, v1.manifestSha256, [deviceId]);
      await proc.waitFor((l) => l.event === 'status' && (l.status as Status).state === 'active' && (l.status as Status).manifestSha256 === v1.manifestSha256, 60_000);
      await proc.waitFor((l) => l.event === 'status' && (l.status as Status).state === 'probation_passed', 60_000);
      await proc.arm('switch:after');
      await assign(server, v2.manifestSha256, [deviceId]);
      expect((await proc.exited).signal).toBe('SIGKILL');
      const killed = disk(dataDir);
      expect(killed.probation?.manifestSha256).toBe(v2.manifestSha256);
      expect(killed.slots[killed.probation!.previous!]?.manifestSha256).toBe(v1.manifestSha256);
      damage(dataDir, killed.probation!.previous!, how);

      proc = new AgentProcess(spec);
      const ready = await proc.waitFor((l) => l.event === 'ready', 60_000);
      // start() never waits for the network: the model on probation (it passed its health check) serves at once
      expect((ready.active as { manifestSha256: string } | null)?.manifestSha256).toBe(v2.manifestSha256);
      const want = expectActive === 'v1' ? v1 : v2;
      const reported = () => proc.lines.filter((l) => l.event === 'status' && (l.status as Status).reason).map((l) => [(l.status as Status).state, (l.status as Status).reason]);
      if (expectActive === 'v1') await proc.waitFor((l) => l.event === 'status' && (l.status as Status).state === 'reverted', 60_000);
      const after = disk(dataDir);
      expect(after.slots[after.active!]?.manifestSha256).toBe(want.manifestSha256);
      expect(after.repairs).toEqual([]);
      expect(after.probation?.manifestSha256 ?? null).toBe(expectActive === 'v1' ? null : v2.manifestSha256);
      expect(sha(join(dataDir, 'slots', `${after.active}.onnx`))).toBe(want.manifest.artifact.sha256);
      expect(reported()).toEqual(expectReports.map((r) => [...r]));
    } finally {
      proc.kill();
      await proc.exited;
    }
  }, 240_000);
});
