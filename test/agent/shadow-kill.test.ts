// SIGKILL during shadow mode (issue 17): the real agent in a child process (agent-process.ts, calling
// infer() in a loop) is killed at a named point while it loads a shadow candidate, while it runs one,
// and while it promotes one; started again, it must come back on its active model, byte-intact, with
// exactly the shadow state its kill point calls for, and (load and run) the previous model still its
// revert target, byte-intact: the candidate has its own slot (`shadow`), the inactive slot is not touched:
//   load, before the write that records the shadow: no shadow, the shadow slot's files cleared;
//   after that write, and while running samples: the shadow restored from its slot, nothing fetched again;
//   promotion before the switch is durable: the previous active model (the retried assignment then
//   installs the candidate); after it: the candidate. A kill that misses its point fails the test.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentState } from '../../device-agent/state-store.ts';
import { assign, pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { waitFor } from '../helpers/wait.ts';
import { AgentProcess, type AgentLine } from './agent-process-handle.ts';

interface Model { manifestSha256: string; artifactSha256: string }

const LOAD_BEFORE = ['shadow:download:start', 'shadow:download:chunk:1', 'shadow:download:done', 'shadow:health:done', 'shadow:write:manifest', 'shadow:write:artifact'];
const LOAD_AFTER = ['shadow:loaded', 'shadow:sample:1', 'shadow:sample:25'];
const PROMOTE_BEFORE = ['download:start', 'verify:done', 'health:done', 'write:manifest', 'write:artifact', 'switch:before'];
const PROMOTE_AFTER = ['switch:after'];

describe('SIGKILL while a candidate is loaded, run and promoted in shadow', () => {
  let server: TestServer;
  let fresh = 0;
  beforeAll(async () => { server = await startTestServer(); }, 60_000);
  afterAll(async () => { await server?.close(); });

  const push = async (): Promise<Model> => {
    const b = await pushBundle(server, 'shk', tinyClassifier(300 + fresh++));
    return { manifestSha256: b.manifestSha256, artifactSha256: b.manifest.artifact.sha256 };
  };
  const db = () => server.app.fleet.db;
  const plain = (deviceId: string) => db().prepare('SELECT manifest_sha256 AS manifest, state FROM plain_assignments WHERE device_id = ?').get(deviceId) as { manifest: string; state: string } | undefined;
  const recordOf = (deviceId: string) => (db().prepare('SELECT active_manifest_sha256 AS active FROM devices WHERE device_id = ?').get(deviceId) as { active: string | null } | undefined)?.active;

  async function device(deviceId: string) {
    const dataDir = join(server.dir, 'shk', deviceId);
    mkdirSync(dataDir, { recursive: true });
    const spec = AgentProcess.writeSpec(dataDir, {
      config: {
        deviceId, dataDir, mqttUrl: server.mqttUrl, serverUrl: server.baseUrl, rootPublicKey: server.rootPublicKey, enrollmentToken: server.enrollmentToken,
        reconnectMinMs: 100, reconnectMaxMs: 1000, probationInferences: 0, probationSeconds: 0, telemetryWindowMs: 500,
        download: { retries: 2, backoffMs: 20, timeoutMs: 10_000 },
      },
      feeds: { x: [1, 8] },
    });
    const procs: AgentProcess[] = [];
    const start = async () => {
      const p = new AgentProcess(spec);
      procs.push(p);
      const ready = await p.waitFor((l) => l.event === 'ready', 60_000);
      return { p, ready };
    };
    const state = () => AgentState.parse(JSON.parse(readFileSync(join(dataDir, 'state.json'), 'utf8')));
    const fileSha = (slot: string) => createHash('sha256').update(readFileSync(join(dataDir, 'slots', `${slot}.onnx`))).digest('hex');
    const status = (p: AgentProcess, manifest: string, states: string[], since = 0) => p.waitFor((l) => {
      const s = l.status as { state: string; manifestSha256?: string } | undefined;
      return l.event === 'status' && s?.manifestSha256 === manifest && states.includes(s.state);
    }, 30_000, since);
    /** kill at `at` while `act` runs; returns the restarted process and its ready line */
    const killAt = async (p: AgentProcess, at: string, act: () => Promise<unknown>, armAfter = false) => {
      const since = p.lines.length;
      // armAfter: the kill point is armed once `act` is done (samples of the new shadow, not of one restored before it)
      // armed means the process read the line: the update it races with cannot pass the point first
      const arm = () => p.arm(at);
      if (!armAfter) await arm();
      await act();
      if (armAfter) await arm();
      const exited = await Promise.race([p.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 60_000))]);
      if (!exited) { p.kill(); await p.exited; }
      const c = p.lines.slice(since).find((l) => l.event === 'crashing') as (AgentLine & { phase: string; n: number }) | undefined;
      const [phase, n] = [at.replace(/:\d+$/, ''), Number(/:(\d+)$/.exec(at)?.[1] ?? 1)];
      // (samples keep coming while the kill point is armed: the n-th or any later one counts)
      expect(c?.phase, `killed at ${at}; lines: ${JSON.stringify(p.lines.slice(since).slice(-8))}; stderr: ${p.stderr.slice(-500)}`).toBe(phase);
      if (phase === 'shadow:sample') expect(c!.n).toBeGreaterThanOrEqual(n);
      else expect(c!.n, `killed at ${at}`).toBe(n);
      return start();
    };
    return { dataDir, start, state, fileSha, status, killAt, stopAll: async () => { for (const p of procs) { p.kill(); await p.exited; } } };
  }

  it('loading and running: back on the active model, the previous one still there; the shadow kept only once its record was written', async () => {
    const d = await device('shk-load');
    let { p } = await d.start();
    const v0 = await push();
    await assign(server, v0.manifestSha256, ['shk-load']);
    await d.status(p, v0.manifestSha256, ['active']);
    const v1 = await push();
    await assign(server, v1.manifestSha256, ['shk-load']);
    await d.status(p, v1.manifestSha256, ['active']);
    const outcomes: string[] = [];
    try {
      for (const at of [...LOAD_BEFORE, ...LOAD_AFTER]) {
        const cand = await push();
        const since = p.lines.length;
        const sampling = at.startsWith('shadow:sample');
        const r = await d.killAt(p, at, async () => {
          await server.app.fleet.director.assign(v1.manifestSha256, ['shk-load'], undefined, { shadow: { manifestSha256: cand.manifestSha256, sampleRate: 1 } });
          if (sampling) await d.status(p, cand.manifestSha256, ['shadow_loaded'], since);
        }, sampling);
        p = r.p;
        const ready = r.ready as AgentLine & { active: { manifestSha256: string } | null; shadow: { manifestSha256: string } | null };
        const s = d.state();
        expect(ready.active?.manifestSha256, at).toBe(v1.manifestSha256);
        expect(d.fileSha(s.active!), at).toBe(v1.artifactSha256);
        // the revert target is untouched by the shadow, whatever the kill point
        const other = s.active === 'a' ? 'b' : 'a';
        expect(s.previous, at).toBe(other);
        expect(s.slots[other]?.manifestSha256, at).toBe(v0.manifestSha256);
        expect(d.fileSha(other), at).toBe(v0.artifactSha256);
        if (LOAD_BEFORE.includes(at)) {
          expect(ready.shadow, at).toBeNull();
          expect(s.shadow, at).toBeNull();
          expect(existsSync(join(d.dataDir, 'slots', 'shadow.onnx')), at).toBe(false);
          expect(existsSync(join(d.dataDir, 'slots', 'shadow.manifest.json')), at).toBe(false);
          outcomes.push(`${at}: active v1, previous v0, no shadow`);
        } else {
          expect(ready.shadow?.manifestSha256, at).toBe(cand.manifestSha256);
          expect(s.shadow?.slot, at).toBe('shadow');
          expect(d.fileSha('shadow'), at).toBe(cand.artifactSha256);
          outcomes.push(`${at}: active v1, previous v0, shadow restored`);
        }
      }
    } finally {
      await d.stopAll();
    }
    expect(outcomes).toHaveLength(LOAD_BEFORE.length + LOAD_AFTER.length);
  }, 240_000);

  it('promotion: before the switch is durable, back on the previous model (then the retried assignment installs the candidate); after it, on the candidate', async () => {
    const d = await device('shk-promote');
    let { p } = await d.start();
    let current = await push();
    await assign(server, current.manifestSha256, ['shk-promote']);
    await d.status(p, current.manifestSha256, ['active']);
    let trials = 0;
    try {
      for (const at of [...PROMOTE_BEFORE, ...PROMOTE_AFTER]) {
        const cand = await push();
        const since = p.lines.length;
        await server.app.fleet.director.assign(current.manifestSha256, ['shk-promote'], undefined, { shadow: { manifestSha256: cand.manifestSha256, sampleRate: 1 } });
        await d.status(p, cand.manifestSha256, ['shadow_loaded'], since);
        const r = await d.killAt(p, at, () => assign(server, cand.manifestSha256, ['shk-promote']));
        p = r.p;
        const ready = r.ready as AgentLine & { active: { manifestSha256: string } | null };
        const s = d.state();
        const expected = PROMOTE_BEFORE.includes(at) ? current : cand;
        expect(ready.active?.manifestSha256, at).toBe(expected.manifestSha256);
        expect(d.fileSha(s.active!), at).toBe(expected.artifactSha256);
        // the server's plain assignment ends on the candidate either way (a crash-abandoned update is retried)
        await waitFor(() => plain('shk-promote')?.state === 'done' && recordOf('shk-promote') === cand.manifestSha256, 60_000, `${at}: settled on the candidate`);
        current = cand;
        trials++;
      }
    } finally {
      await d.stopAll();
    }
    expect(trials).toBe(PROMOTE_BEFORE.length + PROMOTE_AFTER.length);
  }, 240_000);
});
