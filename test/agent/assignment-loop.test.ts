// The server closes the loop on plain assignments (issue 11, item 7): a device that reports
// CRASH_RECOVERY (or refuses a desired state only for being stale) is assigned again with a new
// sequence number, a bounded number of times, then the assignment is marked failed; any other failure
// marks it failed at once. All of it visible in GET /v1/devices/:id.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { nextAssignmentStep, type PlainAssignment } from '../../server/devices/assignment-retry.ts';
import type { Status } from '../../shared/messages.ts';
import { assign, pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { waitFor } from '../helpers/wait.ts';
import { AgentProcess } from './agent-process-handle.ts';

const M = 'a'.repeat(64);
const a = (over: Partial<PlainAssignment> = {}): PlainAssignment => ({ manifestSha256: M, seq: 5, attempts: 1, state: 'assigned', ...over });
const st = (state: Status['state'], over: Partial<Status> = {}): Status => ({ deviceId: 'd', ts: new Date(0).toISOString(), state, active: null, agentVersion: '1.0.0', directorSeq: 5, manifestSha256: M, ...over });

describe('nextAssignmentStep', () => {
  it.each([
    ['installed', a(), st('active'), { kind: 'done' }],
    ['cut short by a restart: again', a(), st('failed', { reason: 'CRASH_RECOVERY' }), { kind: 'retry', attempt: 2, reason: 'CRASH_RECOVERY' }],
    ['cut short, attempts used up: failed', a({ attempts: 3 }), st('failed', { reason: 'CRASH_RECOVERY' }), { kind: 'fail', reason: 'CRASH_RECOVERY' }],
    ['a stale desired state (no seq on a refusal): again', a(), st('rejected', { reason: 'EXPIRED', directorSeq: undefined }), { kind: 'retry', attempt: 2, reason: 'EXPIRED' }],
    ['a refusal a new signature cannot cure: failed at once', a(), st('rejected', { reason: 'ROLLBACK' }), { kind: 'fail', reason: 'ROLLBACK' }],
    ['a failed health check: failed at once', a(), st('failed', { reason: 'HEALTH_CHECK_FAILED' }), { kind: 'fail', reason: 'HEALTH_CHECK_FAILED' }],
    ['reverted after a crash on probation: failed, not retried', a(), st('reverted', { reason: 'CRASH_RECOVERY' }), { kind: 'fail', reason: 'CRASH_RECOVERY' }],
    ['settled at the switch, then probation failed: failed', a({ state: 'done' }), st('reverted', { reason: 'PROBATION_FAILED' }), { kind: 'fail', reason: 'PROBATION_FAILED' }],
    ['settled at the switch, then a crash on probation reverted it: failed', a({ state: 'done' }), st('reverted', { reason: 'CRASH_RECOVERY' }), { kind: 'fail', reason: 'CRASH_RECOVERY' }],
    ['settled, then a revert of another model: ignored', a({ state: 'done' }), st('reverted', { reason: 'PROBATION_FAILED', manifestSha256: 'b'.repeat(64) }), { kind: 'ignore' }],
    ['settled, then its probation passed: ignored', a({ state: 'done' }), st('probation_passed'), { kind: 'ignore' }],
    ['settled, then a failure about it: ignored', a({ state: 'done' }), st('failed', { reason: 'CRASH_RECOVERY' }), { kind: 'ignore' }],
    ['about an older assignment: ignored', a(), st('failed', { reason: 'CRASH_RECOVERY', directorSeq: 4 }), { kind: 'ignore' }],
    ['progress: ignored', a(), st('downloading'), { kind: 'ignore' }],
    ['already failed: ignored', a({ state: 'failed' }), st('failed', { reason: 'CRASH_RECOVERY' }), { kind: 'ignore' }],
    ['no plain assignment (a campaign\'s): ignored', null, st('failed', { reason: 'CRASH_RECOVERY' }), { kind: 'ignore' }],
  ] as const)('%s', (_name, assignment, status, step) => {
    expect(nextAssignmentStep(assignment, status, 3)).toEqual(step);
  });
});

describe('a device that restarts during a plain assignment', () => {
  let server: TestServer;
  beforeAll(async () => { server = await startTestServer(); }, 60_000);
  afterAll(async () => { await server?.close(); });

  const device = async (deviceId: string) => (await server.app.inject({ url: `/v1/devices/${deviceId}` })).json() as {
    active: { manifestSha256: string } | null; desired: { seq: number } | null;
    assignment: { state: string; attempts: number; seq: number; reason: string | null } | null;
  };

  function spec(deviceId: string) {
    const dataDir = join(server.dir, 'loop', deviceId);
    mkdirSync(dataDir, { recursive: true });
    return AgentProcess.writeSpec(dataDir, {
      config: {
        deviceId, dataDir, mqttUrl: server.mqttUrl, serverUrl: server.baseUrl, rootPublicKey: server.rootPublicKey, enrollmentToken: server.enrollmentToken,
        reconnectMinMs: 100, probationInferences: 0, probationSeconds: 0, download: { retries: 1, backoffMs: 20, timeoutMs: 10_000 },
      },
    });
  }

  it('is assigned again with a new sequence number and ends on the model', async () => {
    const v1 = await pushBundle(server, 'tiny', tinyClassifier(1));
    const path = spec('loop-once');
    let proc = new AgentProcess(path, { FLEET_AGENT_CRASH_AT: 'download:start' });
    try {
      await proc.waitFor((l) => l.event === 'ready', 20_000);
      const first = (await assign(server, v1.manifestSha256, ['loop-once'])).devices[0].seq as number;
      await proc.exited;
      proc = new AgentProcess(path);
      await waitFor(async () => (await device('loop-once')).assignment?.state === 'done', 20_000, 'the re-assignment is installed');
      const d = await device('loop-once');
      expect(d.assignment).toMatchObject({ state: 'done', attempts: 2, seq: first + 1 });
      expect(d.desired?.seq).toBe(first + 1);
      expect(d.active?.manifestSha256).toBe(v1.manifestSha256);
    } finally {
      proc.kill();
      await proc.exited;
    }
  }, 60_000);

  it('gives up after the bounded attempts and says why', async () => {
    const v1 = await pushBundle(server, 'tiny', tinyClassifier(2));
    const path = spec('loop-always');
    let proc = new AgentProcess(path, { FLEET_AGENT_CRASH_AT: 'download:start' });
    try {
      await proc.waitFor((l) => l.event === 'ready', 20_000);
      const first = (await assign(server, v1.manifestSha256, ['loop-always'])).devices[0].seq as number;
      for (let i = 0; i < 3; i++) {
        await proc.exited;
        // every restart reports CRASH_RECOVERY, gets the assignment again and dies again
        proc = new AgentProcess(path, { FLEET_AGENT_CRASH_AT: 'download:start' });
        if (i < 2) await waitFor(async () => (await device('loop-always')).assignment?.attempts === i + 2, 20_000, `attempt ${i + 2}`);
      }
      await waitFor(async () => (await device('loop-always')).assignment?.state === 'failed', 20_000, 'the assignment is marked failed');
      const d = await device('loop-always');
      expect(d.assignment).toMatchObject({ state: 'failed', attempts: 3, reason: 'CRASH_RECOVERY', seq: first + 2 });
      expect(d.desired?.seq).toBe(first + 2); // no fourth desired state
    } finally {
      proc.kill();
      await proc.exited;
    }
  }, 90_000);
});
