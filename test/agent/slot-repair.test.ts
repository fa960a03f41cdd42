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
    agent = await startAgent(server, deviceId, {}, { log: (e, f) => { if (e === 'status') statuses.push(f as unknown as Status); } });
    running.push(agent);
    return { agent, dataDir, before, after: disk(dataDir), reports: statuses.filter((s) => s.reason).map((s) => [s.state, s.reason]) };
  }

  it.each([
    ['truncated', 'truncate', true],
    ['corrupted', 'flip', true],
    ['truncated, no previous slot', 'truncate', false],
  ] as const)('%s active slot with an intact manifest: fetched again, verified, still on the same model', async (_n, how, withPrevious) => {
    const { agent, dataDir, before, after, reports } = await restartDamaged(`heal-${how}-${withPrevious}`, withPrevious, how);
    expect(agent.active?.manifestSha256).toBe(v2.manifestSha256);
    expect(after.active).toBe(before.active);
    expect(after.previous).toBe(before.previous);
    expect(sha(join(dataDir, 'slots', `${after.active}.onnx`))).toBe(v2.manifest.artifact.sha256);
    expect(reports).toEqual([['active', 'SLOT_DAMAGED']]);
  });

  it('damaged beyond repair, with a previous slot: falls back to it and says why', async () => {
    const { agent, before, after, reports } = await restartDamaged('heal-fallback', true, 'delete-manifest-too');
    expect(agent.active?.manifestSha256).toBe(v1.manifestSha256);
    expect(after.active).toBe(before.previous);
    expect(after.slots[before.active!]).toBeNull(); // the record never names the damaged slot
    expect(reports).toEqual([['reverted', 'SLOT_DAMAGED']]);
  });

  it('damaged beyond repair, nothing else: no model, said so, and the record names no slot', async () => {
    const { agent, after, reports } = await restartDamaged('heal-none', false, 'delete-manifest-too');
    expect(agent.active).toBeNull();
    expect([after.active, after.slots.a, after.slots.b]).toEqual([null, null, null]);
    expect(reports).toEqual([['failed', 'SLOT_DAMAGED']]);
  });
});

describe('killed on probation with the revert target damaged', () => {
  let server: TestServer;
  beforeAll(async () => { server = await startTestServer(); }, 60_000);
  afterAll(async () => { await server?.close(); });

  it.each([
    ['beyond repair: keeps the model that passed its health check', 'delete-manifest-too', 'v2', ['active', 'REVERT_TARGET_DAMAGED']],
    ['repairable: fetched again, then reverted to exactly it', 'truncate', 'v1', ['reverted', 'CRASH_RECOVERY']],
  ] as const)('%s', async (_name, how, expectActive, expectReport) => {
    const v1 = await pushBundle(server, 'tiny', tinyClassifier(1));
    const v2 = await pushBundle(server, 'tiny', tinyClassifier(2));
    const deviceId = `probation-damaged-${how}`;
    const dataDir = join(server.dir, 'kill', deviceId);
    mkdirSync(dataDir, { recursive: true });
    const spec = AgentProcess.writeSpec(dataDir, {
      config: {
        deviceId, dataDir, mqttUrl: server.mqttUrl, serverUrl: server.baseUrl, rootPublicKey: server.rootPublicKey, enrollmentToken: server.enrollmentToken,
        reconnectMinMs: 100, probationInferences: 0, probationSeconds: 1, download: { retries: 1, backoffMs: 20, timeoutMs: 10_000 },
      },
    });
    let proc = new AgentProcess(spec);
    try {
      await proc.waitFor((l) => l.event === 'ready', 20_000);
      await assign(server, v1.manifestSha256, [deviceId]);
      await proc.waitFor((l) => l.event === 'status' && (l.status as Status).state === 'active' && (l.status as Status).manifestSha256 === v1.manifestSha256, 20_000);
      await proc.waitFor((l) => l.event === 'status' && (l.status as Status).state === 'probation_passed', 20_000);
      proc.send({ crashAt: 'switch:after' });
      await assign(server, v2.manifestSha256, [deviceId]);
      expect((await proc.exited).signal).toBe('SIGKILL');
      const killed = disk(dataDir);
      expect(killed.probation?.manifestSha256).toBe(v2.manifestSha256);
      expect(killed.slots[killed.probation!.previous!]?.manifestSha256).toBe(v1.manifestSha256);
      damage(dataDir, killed.probation!.previous!, how);

      proc = new AgentProcess(spec);
      const ready = await proc.waitFor((l) => l.event === 'ready', 20_000);
      const want = expectActive === 'v1' ? v1 : v2;
      expect((ready.active as { manifestSha256: string } | null)?.manifestSha256).toBe(want.manifestSha256);
      const after = disk(dataDir);
      expect(after.slots[after.active!]?.manifestSha256).toBe(want.manifestSha256);
      expect(sha(join(dataDir, 'slots', `${after.active}.onnx`))).toBe(want.manifest.artifact.sha256);
      const reported = proc.lines.filter((l) => l.event === 'status' && (l.status as Status).reason).map((l) => [(l.status as Status).state, (l.status as Status).reason]);
      expect(reported).toContainEqual([...expectReport]);
      expect(reported).not.toContainEqual(['reverted', 'REVERT_TARGET_DAMAGED']);
    } finally {
      proc.kill();
      await proc.exited;
    }
  }, 90_000);
});
