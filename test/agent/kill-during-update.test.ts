// Strict kill trials (issue 11): the real agent, a child process, is killed with SIGKILL at a named
// point of an update (an UpdatePhase, or inside a durable write: disk-crash-points.ts), started again,
// and each trial asserts the exact outcome its kill point calls for:
//   - on disk after the restart (before any message can arrive): which model is active, that its file is
//     byte-intact, whether it is on probation, the version floor (never lower, raised only by a switch);
//   - on the server: the exact report (state + reason) stored for that update, exactly once, and what the
//     server's device record and plain assignment end on (a CRASH_RECOVERY is retried, so the device ends
//     on the new model; a revert is final).
// Double kills: a second SIGKILL inside the restart's recovery write (before and after its rename, i.e.
// before its report is sent); a third start must reach the same outcome and the report arrive once.
// A kill counts only if the process announced it was at that point when it died; a kill that misses is
// re-run once and never counted; an exit we did not cause fails the test. Devices run in parallel.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentState } from '../../device-agent/state-store.ts';
import { assign, pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { waitFor } from '../helpers/wait.ts';
import { AgentProcess, type AgentLine } from './agent-process-handle.ts';

/** what the restart must find, and what the server must hear */
type Expect =
  | 'abandoned' // killed before the switch was durable: previous model, failed/CRASH_RECOVERY, retried -> new model
  | 'unaccepted' // killed before the accepting write: previous model, no report of it, the retained assignment installs
  | 'crash-revert' // killed on probation: previous model, reverted/CRASH_RECOVERY, not retried
  | 'passed' // killed after the write that closed probation: new model, probation_passed
  | 'switched' // no probation, killed after the switch write: new model, active
  | 'probation-revert'; // faulty model, killed after the revert write: previous model, reverted/PROBATION_FAILED

interface Plan { at: string; probation: boolean; faulty: boolean; expect: Expect }

const BEFORE_SWITCH = ['download:start', 'download:chunk:1', 'download:done', 'verify:done', 'health:done', 'disk:accept:renamed', 'disk:claim:tmp',
  'disk:claim:renamed', 'disk:slot-manifest:tmp', 'write:manifest', 'write:artifact', 'switch:before', 'disk:switch:tmp'];
const ON_PROBATION = ['disk:switch:renamed', 'switch:after', 'probation:start', 'probation:inference:1', 'probation:inference:20', 'probation:end', 'disk:probation-end:tmp'];

const P_PLANS: Plan[] = [
  ...BEFORE_SWITCH.map((at): Plan => ({ at, probation: true, faulty: false, expect: 'abandoned' })),
  { at: 'disk:accept:tmp', probation: true, faulty: false, expect: 'unaccepted' },
  ...ON_PROBATION.map((at): Plan => ({ at, probation: true, faulty: false, expect: 'crash-revert' })),
  { at: 'disk:probation-end:renamed', probation: true, faulty: false, expect: 'passed' },
  ...['revert:before', 'disk:revert:tmp'].map((at): Plan => ({ at, probation: true, faulty: true, expect: 'crash-revert' })),
  ...['disk:revert:renamed', 'revert:after'].map((at): Plan => ({ at, probation: true, faulty: true, expect: 'probation-revert' })),
];
const N_PLANS: Plan[] = [
  ...['download:chunk:1', 'health:done', 'switch:before', 'disk:switch:tmp'].map((at): Plan => ({ at, probation: false, faulty: false, expect: 'abandoned' })),
  ...['disk:switch:renamed', 'switch:after'].map((at): Plan => ({ at, probation: false, faulty: false, expect: 'switched' })),
];
const DOUBLE_AFTER = ['download:chunk:1', 'switch:before', 'switch:after', 'probation:inference:1', 'disk:probation-end:renamed', 'disk:revert:renamed'];
const RECOVERY_KILLS = ['disk:recovery:tmp', 'disk:recovery:renamed'];

interface Trial { plan: Plan; second: string | null }
const P_DEVICES = 4;
const N_DEVICES = 2;
const P_REPEATS = 6;
const N_REPEATS = 4;

function trialsFor(kind: 'P' | 'N'): Trial[] {
  const out: Trial[] = [];
  const plans = kind === 'P' ? P_PLANS : N_PLANS;
  for (let r = 0; r < (kind === 'P' ? P_REPEATS : N_REPEATS); r++) for (const plan of plans) out.push({ plan, second: null });
  const doubles = kind === 'P'
    ? P_PLANS.filter((p) => DOUBLE_AFTER.includes(p.at))
    : N_PLANS.filter((p) => ['switch:before', 'disk:switch:renamed'].includes(p.at));
  for (const plan of doubles) for (const second of RECOVERY_KILLS) out.push({ plan, second });
  return out;
}
const ALL_P = trialsFor('P');
const ALL_N = trialsFor('N');
const EXPECTED_KILLS = [...ALL_P, ...ALL_N].reduce((n, t) => n + (t.second ? 2 : 1), 0);

interface Model { manifestSha256: string; version: number; artifactSha256: string }
interface Done { device: string; at: string; second: string | null; kills: number }

describe('strict kill trials: SIGKILL at every phase of an update and inside its durable writes', () => {
  let server: TestServer;
  const models = [tinyClassifier(1), tinyClassifier(2), tinyClassifier(9)]; // the third fails every inference
  let faultyArtifact = '';
  const failures: string[] = [];
  /** where the wall time goes (summed over devices), printed with the counts */
  const spent: Record<string, number> = {};
  async function timed<T>(what: string, p: Promise<T>): Promise<T> {
    const t0 = Date.now();
    try { return await p; } finally { spent[what] = (spent[what] ?? 0) + Date.now() - t0; }
  }

  async function push(model: Uint8Array): Promise<Model> {
    const b = await pushBundle(server, 'tiny', model);
    return { manifestSha256: b.manifestSha256, version: b.version, artifactSha256: b.manifest.artifact.sha256 };
  }

  beforeAll(async () => {
    server = await startTestServer();
    faultyArtifact = (await push(models[2])).artifactSha256;
  }, 120_000);

  afterAll(async () => {
    await server?.close();
  });

  const db = () => server.app.fleet.db;
  const reports = (deviceId: string, manifestSha256: string) => db()
    .prepare('SELECT state, reason, director_seq AS seq FROM status_events WHERE device_id = ? AND manifest_sha256 = ? AND seq IS NOT NULL ORDER BY id')
    .all(deviceId, manifestSha256) as { state: string; reason: string | null; seq: number | null }[];
  const plain = (deviceId: string) => db().prepare('SELECT manifest_sha256 AS manifest, seq, attempts, state, reason FROM plain_assignments WHERE device_id = ?')
    .get(deviceId) as { manifest: string; seq: number; attempts: number; state: string; reason: string | null } | undefined;
  const record = (deviceId: string) => db().prepare('SELECT active_manifest_sha256 AS active FROM devices WHERE device_id = ?')
    .get(deviceId) as { active: string | null } | undefined;

  async function runDevice(kind: 'P' | 'N', index: number, trials: Trial[]): Promise<Done[]> {
    const deviceId = `kill-${kind}${index}`;
    const dataDir = join(server.dir, 'kill', deviceId);
    mkdirSync(dataDir, { recursive: true });
    const probation = kind === 'P';
    const spec = AgentProcess.writeSpec(dataDir, {
      config: {
        deviceId, dataDir, mqttUrl: server.mqttUrl, serverUrl: server.baseUrl, rootPublicKey: server.rootPublicKey, enrollmentToken: server.enrollmentToken,
        reconnectMinMs: 100, reconnectMaxMs: 1000, probationInferences: probation ? 40 : 0, probationSeconds: 0,
        download: { retries: 2, backoffMs: 20, timeoutMs: 10_000 },
      },
      feeds: { x: [1, 8] },
      faultyArtifacts: [faultyArtifact],
    });
    const fail = (why: string) => { failures.push(`${deviceId}: ${why}`); throw new Error(`${deviceId}: ${why}`); };
    /** every process we start: an exit we did not cause (no crash point announced, no stop) fails the test */
    const start = (env: Record<string, string> = {}) => {
      const p = new AgentProcess(spec, env);
      void p.exited.then(({ code, signal }) => {
        const crashed = p.lines.some((l) => l.event === 'crashing');
        const stopped = p.lines.some((l) => l.event === 'stopped');
        if (!(signal === 'SIGKILL' && (crashed || killedByTest.has(p))) && !(stopped && code === 0)) {
          failures.push(`${deviceId}: unplanned exit (code ${code}, signal ${signal}); stderr: ${p.stderr.slice(-500)}`);
        }
      });
      return p;
    };
    const killedByTest = new Set<AgentProcess>();
    const waitStatus = (p: AgentProcess, manifest: string, states: string[], ms = 60_000) => p.waitFor((l) => {
      const s = l.status as { state: string; manifestSha256?: string } | undefined;
      return l.event === 'status' && s?.manifestSha256 === manifest && states.includes(s.state);
    }, ms).catch((err) => fail(`waiting for ${states.join('/')} of ${manifest.slice(0, 8)}: ${(err as Error).message}; last lines: ${JSON.stringify(p.lines.slice(-6))}`));
    const diskFloor = () => (AgentState.parse(JSON.parse(readFileSync(join(dataDir, 'state.json'), 'utf8'))).trust.versionFloors.tiny ?? 0);
    /** the server's plain assignment settled (done or failed) and the device record names `active` */
    const settled = (active: string) => waitFor(() => {
      const a = plain(deviceId);
      return !!a && a.state !== 'assigned' && record(deviceId)?.active === active;
    }, 60_000, `${deviceId}: assignment settled on ${active.slice(0, 8)}`);

    let proc = start();
    await proc.waitFor((l) => l.event === 'ready', 60_000);
    let current = await push(models[0]);
    await assign(server, current.manifestSha256, [deviceId]);
    await waitStatus(proc, current.manifestSha256, [probation ? 'probation_passed' : 'active']);
    await settled(current.manifestSha256);

    const done: Done[] = [];
    let fresh = 0;
    for (const trial of trials) {
      for (let attempt = 0; ; attempt++) {
        const { plan } = trial;
        const before = current;
        const floorBefore = diskFloor();
        // a model never seen before: an artifact a slot already holds would be staged from the slot, and
        // the download's crash points would never be reached (test/agent/artifact-from-slot.test.ts covers that path)
        const target = await timed('push', push(plan.faulty ? models[2] : tinyClassifier(100 + fresh++)));
        const [phase, n] = plan.at.startsWith('disk:') ? [plan.at, 1] : [plan.at.replace(/:\d+$/, ''), Number(/:(\d+)$/.exec(plan.at)?.[1] ?? 1)];
        const linesBefore = proc.lines.length;
        await proc.arm(plan.at);
        await assign(server, target.manifestSha256, [deviceId]);
        const seq = plain(deviceId)!.seq;
        const exited = await timed('to the kill', Promise.race([proc.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 30_000))]));
        if (!exited) { killedByTest.add(proc); proc.kill(); await proc.exited; }
        const crashing = proc.lines.slice(linesBefore).find((l) => l.event === 'crashing') as (AgentLine & { phase: string; n: number }) | undefined;
        const hit = !!crashing && crashing.phase === phase && crashing.n === n;
        const infersFailed = proc.lines.slice(linesBefore).filter((l) => l.event === 'infer_failed').length;
        if (infersFailed && !plan.faulty) fail(`${plan.at}: ${infersFailed} infer() calls failed before the kill`);

        let kills = hit ? 1 : 0;
        if (trial.second && hit) {
          const second = start({ FLEET_AGENT_CRASH_AT: trial.second });
          await timed('second start to its kill', second.exited);
          const c2 = second.lines.find((l) => l.event === 'crashing');
          if (c2?.phase !== trial.second || second.lines.some((l) => l.event === 'ready')) fail(`${plan.at} then ${trial.second}: second kill missed (${JSON.stringify(c2 ?? null)})`);
          kills++;
        }
        proc = start();
        const ready = await timed('restart to ready', proc.waitFor((l) => l.event === 'ready', 60_000));
        if (!hit) {
          // a kill that missed its point never counts: settle on whatever came of it and run the trial again
          await waitFor(() => plain(deviceId)?.state !== 'assigned', 60_000, `${deviceId}: settled after a missed kill`);
          const a = record(deviceId)?.active;
          current = a === target.manifestSha256 ? target : before;
          if (attempt >= 1) fail(`${plan.at}: missed twice (killed at ${crashing ? `${crashing.phase}:${crashing.n}` : 'nothing: timeout'})`);
          continue;
        }

        // ---- on disk, as start() left it ----
        const disk = ready.disk as { state: unknown; slotFiles: string[]; activeFileSha256: string | null };
        const state = AgentState.parse(disk.state);
        const activeRecord = state.active ? state.slots[state.active] : null;
        const newModel = plan.expect === 'passed' || plan.expect === 'switched';
        const want = newModel ? target : before;
        const where = `${plan.at}${trial.second ? ` + ${trial.second}` : ''}`;
        const check = (ok: boolean, why: string) => { if (!ok) fail(`${where}: ${why}`); };
        check(activeRecord?.manifestSha256 === want.manifestSha256, `active ${activeRecord?.manifestSha256.slice(0, 8)}, expected ${want.manifestSha256.slice(0, 8)} (${plan.expect})`);
        check(disk.activeFileSha256 === want.artifactSha256, 'active slot file is not byte-intact');
        check((ready.active as { manifestSha256: string } | null)?.manifestSha256 === want.manifestSha256, 'the agent serves another model than its record names');
        check(ready.onProbation === false, 'still on probation after the restart');
        const switched = plan.expect !== 'abandoned' && plan.expect !== 'unaccepted';
        check(state.trust.versionFloors.tiny === (switched ? target.version : floorBefore), `version floor ${state.trust.versionFloors.tiny}, expected ${switched ? target.version : floorBefore}`);
        check(state.update === null && state.probation === null, 'an update or probation record survived recovery');
        const leftovers = disk.slotFiles.filter((f) => f.endsWith('.part') || f.endsWith('.tmp') || (['a', 'b'] as const).some((s) => !state.slots[s] && f.startsWith(`${s}.`)));
        check(leftovers.length === 0, `files left: ${leftovers.join(', ')}`);

        // ---- on the server: the exact report, once; then where the assignment and the record end ----
        const expected = {
          abandoned: ['failed', 'CRASH_RECOVERY'], 'crash-revert': ['reverted', 'CRASH_RECOVERY'], passed: ['probation_passed', null],
          switched: ['active', null], 'probation-revert': ['reverted', 'PROBATION_FAILED'], unaccepted: null,
        }[plan.expect];
        const finalActive = plan.expect === 'crash-revert' || plan.expect === 'probation-revert' ? before : target;
        await timed('ready to settled', settled(finalActive.manifestSha256)).catch((err) => fail(`${where}: ${(err as Error).message} (assignment ${JSON.stringify(plain(deviceId))})`));
        const matching = () => reports(deviceId, target.manifestSha256).filter((r) => expected && r.state === expected[0] && r.reason === expected[1] && r.seq === seq);
        if (expected) await waitFor(() => matching().length > 0, 30_000, 'report').catch(() => {});
        const rows = reports(deviceId, target.manifestSha256);
        if (expected) {
          check(matching().length === 1, `server stored ${matching().length} ${expected.join('/')} reports for seq ${seq}: ${JSON.stringify(rows)}`);
        } else {
          check(!rows.some((r) => r.reason === 'CRASH_RECOVERY'), `a report for an update never accepted: ${JSON.stringify(rows)}`);
        }
        const wantAssignment = {
          abandoned: ['done', 2, null], unaccepted: ['done', 1, null], passed: ['done', 1, null], switched: ['done', 1, null],
          // settled 'done' at the switch ('active' is sent before probation); the revert that follows
          // fails it with the device's reason (not retried: the model did not take)
          'crash-revert': ['failed', 1, 'CRASH_RECOVERY'], 'probation-revert': ['failed', 1, 'PROBATION_FAILED'],
        }[plan.expect];
        const assignmentIs = (x: NonNullable<ReturnType<typeof plain>>) => x.state === wantAssignment[0] && x.attempts === wantAssignment[1] && x.reason === wantAssignment[2];
        await waitFor(() => assignmentIs(plain(deviceId)!), 10_000, 'assignment').catch(() => {});
        const a = plain(deviceId)!;
        check(assignmentIs(a), `assignment ${JSON.stringify(a)}, expected ${JSON.stringify(wantAssignment)}`);
        // the install after the restart (a retry, or the retained assignment) runs to its end before the next trial
        if (plan.expect === 'abandoned' || plan.expect === 'unaccepted') await timed('reinstall', waitStatus(proc, target.manifestSha256, [probation ? 'probation_passed' : 'active']));
        current = finalActive;
        done.push({ device: deviceId, at: plan.at, second: trial.second, kills });
        // optional progress log for long runs (KILL_TRIALS_LOG=<file>)
        if (process.env.KILL_TRIALS_LOG) appendFileSync(process.env.KILL_TRIALS_LOG, `${new Date().toISOString()} ${deviceId} ${where} ok ${JSON.stringify(spent)}\n`);
        break;
      }
    }
    proc.send({ stop: true });
    await proc.exited;
    return done;
  }

  it(`${EXPECTED_KILLS} SIGKILLs, each at its point, each with its exact outcome and report`, async () => {
    const t0 = Date.now();
    const runs = await Promise.allSettled([
      ...Array.from({ length: P_DEVICES }, (_, i) => runDevice('P', i, ALL_P.filter((_, k) => k % P_DEVICES === i))),
      ...Array.from({ length: N_DEVICES }, (_, i) => runDevice('N', i, ALL_N.filter((_, k) => k % N_DEVICES === i))),
    ]);
    const done = runs.flatMap((r) => (r.status === 'fulfilled' ? r.value : []));
    const byPoint: Record<string, number> = {};
    for (const d of done) {
      byPoint[d.at] = (byPoint[d.at] ?? 0) + 1;
      if (d.second) byPoint[`${d.at} + ${d.second}`] = (byPoint[`${d.at} + ${d.second}`] ?? 0) + 1;
    }
    const kills = done.reduce((n, d) => n + d.kills, 0);
    console.log(JSON.stringify({ kills, trials: done.length, seconds: Math.round((Date.now() - t0) / 1000), spentSeconds: Object.fromEntries(Object.entries(spent).map(([k, v]) => [k, Math.round(v / 1000)])), byPoint }, null, 1));
    expect(failures).toEqual([]);
    expect(runs.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason))).toEqual([]);
    // every trial ran, each kill at its point: the counts per point are exactly the planned ones
    const planned: Record<string, number> = {};
    for (const t of [...ALL_P, ...ALL_N]) {
      planned[t.plan.at] = (planned[t.plan.at] ?? 0) + 1;
      if (t.second) planned[`${t.plan.at} + ${t.second}`] = (planned[`${t.plan.at} + ${t.second}`] ?? 0) + 1;
    }
    expect(byPoint).toEqual(planned);
    expect(kills).toBe(EXPECTED_KILLS);
    expect(kills).toBeGreaterThanOrEqual(200);
  }, 1_800_000);
});
