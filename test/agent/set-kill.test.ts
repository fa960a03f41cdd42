// Strict kill trials for a set of models (issue 19): the real agent in a child process (agent-process.ts)
// runs three models; a new set of three is assigned and the process is killed with SIGKILL at a named
// point of the set's install (after the second model's download, after the third's health check, inside
// the claim and switch writes, while on probation, inside the write that closes probation). The restart
// must find, before any message arrives, exactly the old set or exactly the new one: every model of the
// active slot byte-intact on disk, the agent serving all three from it, no update or probation record, no
// stray slot files; and report the crash with the exact state and reason. A kill counts only if the
// process announced that point when it died.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentState, slotModels } from '../../device-agent/state-store.ts';
import { pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { AgentProcess, type AgentLine } from './agent-process-handle.ts';

type Expect = 'old' | 'new';
interface Plan { at: string; expect: Expect; report: [string, string] | null }

const ABANDONED: [string, string] = ['failed', 'CRASH_RECOVERY'];
const CRASH_REVERT: [string, string] = ['reverted', 'CRASH_RECOVERY'];
const P_PLANS: Plan[] = [
  ...['download:done:2', 'health:done:3', 'disk:claim:renamed', 'write:manifest', 'write:artifact', 'switch:before', 'disk:switch:tmp']
    .map((at): Plan => ({ at, expect: 'old', report: ABANDONED })),
  ...['disk:switch:renamed', 'switch:after', 'probation:start', 'probation:inference:1'].map((at): Plan => ({ at, expect: 'old', report: CRASH_REVERT })),
  { at: 'disk:probation-end:renamed', expect: 'new', report: null },
];
const N_PLANS: Plan[] = [
  ...['verify:done:3', 'switch:before', 'disk:switch:tmp'].map((at): Plan => ({ at, expect: 'old', report: ABANDONED })),
  ...['disk:switch:renamed', 'switch:after'].map((at): Plan => ({ at, expect: 'new', report: null })),
];
const IDS = ['mel', 'emb', 'kws'];
const WIDTH = [8, 6, 4];

describe('strict kill trials for a release switch: never a mix', () => {
  let server: TestServer;
  let fresh = 0;
  const failures: string[] = [];

  beforeAll(async () => { server = await startTestServer(); }, 120_000);
  afterAll(async () => { await server?.close(); });

  async function pushSet(): Promise<string[]> {
    const seed = 200 + 10 * fresh++;
    const out: string[] = [];
    for (const [i, id] of IDS.entries()) out.push((await pushBundle(server, id, tinyClassifier(seed + i, { inputs: WIDTH[i], classes: 3 }))).manifestSha256);
    return out;
  }

  async function runDevice(kind: 'P' | 'N', plans: Plan[]): Promise<number> {
    const deviceId = `setkill-${kind}`;
    const dataDir = join(server.dir, 'setkill', deviceId);
    mkdirSync(dataDir, { recursive: true });
    const spec = AgentProcess.writeSpec(dataDir, {
      config: {
        deviceId, dataDir, mqttUrl: server.mqttUrl, serverUrl: server.baseUrl, rootPublicKey: server.rootPublicKey, enrollmentToken: server.enrollmentToken,
        reconnectMinMs: 100, reconnectMaxMs: 1000, probationInferences: kind === 'P' ? 40 : 0, probationSeconds: 0,
        download: { retries: 2, backoffMs: 20, timeoutMs: 10_000 },
      },
      feeds: { x: [1, 8] }, // device code calls the primary model in a loop (it counts for probation)
    });
    const fail = (why: string): never => { failures.push(`${deviceId}: ${why}`); throw new Error(`${deviceId}: ${why}`); };
    const statusOf = (l: AgentLine) => l.status as { state: string; reason?: string; manifestSha256?: string; activeSet?: { manifestSha256: string }[] } | undefined;
    const settledOn = (p: AgentProcess, set: string[], since: number) => p.waitFor((l) => {
      const s = statusOf(l);
      return l.event === 'status' && s?.state === (kind === 'P' ? 'probation_passed' : 'active') && JSON.stringify(s.activeSet?.map((m) => m.manifestSha256)) === JSON.stringify(set);
    }, 60_000, since).catch((err) => fail(`waiting for the set to settle: ${(err as Error).message}; last lines ${JSON.stringify(p.lines.slice(-4))}`));

    let proc = new AgentProcess(spec);
    await proc.waitFor((l) => l.event === 'ready', 60_000);
    let current = await pushSet();
    const since = proc.lines.length;
    await server.app.fleet.director.assignSet(current, [deviceId]);
    await settledOn(proc, current, since);

    let kills = 0;
    for (const plan of plans) {
      const target = await pushSet();
      const linesBefore = proc.lines.length;
      await proc.arm(plan.at);
      await server.app.fleet.director.assignSet(target, [deviceId], { name: 'wakeword', version: fresh });
      const exited = await Promise.race([proc.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 30_000))]);
      if (!exited) { proc.kill(); await proc.exited; fail(`${plan.at}: never reached (no kill within 30 s)`); }
      const crashing = proc.lines.slice(linesBefore).find((l) => l.event === 'crashing') as (AgentLine & { phase: string; n: number }) | undefined;
      const [phase, n] = plan.at.startsWith('disk:') ? [plan.at, 1] : [plan.at.replace(/:\d+$/, ''), Number(/:(\d+)$/.exec(plan.at)?.[1] ?? 1)];
      if (!(crashing && crashing.phase === phase && crashing.n === n)) fail(`${plan.at}: killed at ${JSON.stringify(crashing ?? null)}`);
      if (proc.lines.slice(linesBefore).some((l) => l.event === 'infer_failed')) fail(`${plan.at}: infer() failed before the kill`);
      kills++;

      proc = new AgentProcess(spec);
      const ready = await proc.waitFor((l) => l.event === 'ready', 60_000);
      const want = plan.expect === 'new' ? target : current;
      const check = (ok: boolean, why: string) => { if (!ok) fail(`${plan.at}: ${why}`); };
      // ---- on disk and in memory, as start() left it ----
      const state = AgentState.parse((ready.disk as { state: unknown }).state);
      const rec = state.active ? state.slots[state.active] : null;
      const models = rec ? slotModels(rec) : [];
      check(JSON.stringify(models.map((m) => m.manifestSha256)) === JSON.stringify(want), `active slot names ${models.map((m) => m.manifestSha256.slice(0, 6))}, expected the ${plan.expect} set`);
      for (const [i, m] of models.entries()) {
        const file = join(dataDir, 'slots', i === 0 ? `${state.active}.onnx` : `${state.active}.${i}.onnx`);
        const sha = existsSync(file) ? createHash('sha256').update(readFileSync(file)).digest('hex') : null;
        check(sha === m.artifactSha256, `${m.modelId} in slot ${state.active} is not byte-intact`);
      }
      check(JSON.stringify((ready.activeSet as { manifestSha256: string }[]).map((m) => m.manifestSha256)) === JSON.stringify(want), 'the agent serves another set than its record names');
      check(ready.onProbation === false, 'still on probation after the restart');
      check(state.update === null && state.probation === null, 'an update or probation record survived recovery');
      const stray = (ready.disk as { slotFiles: string[] }).slotFiles.filter((f) => f.endsWith('.part') || f.endsWith('.tmp') || (['a', 'b'] as const).some((s) => !state.slots[s] && f.startsWith(`${s}.`)));
      check(stray.length === 0, `files left: ${stray.join(', ')}`);
      for (const [i, id] of IDS.entries()) {
        const floor = state.trust.versionFloors[id];
        check(typeof floor === 'number' && floor >= 1, `no floor for ${id} (model ${i})`);
      }
      // ---- the exact report of the crash, for the new set's primary ----
      if (plan.report) {
        const [st, reason] = plan.report;
        const line = await proc.waitFor((l) => l.event === 'status' && statusOf(l)?.manifestSha256 === target[0] && statusOf(l)?.state === st, 20_000).catch(() => null);
        check(!!line && statusOf(line!)?.reason === reason, `expected a ${st}/${reason} report, got ${JSON.stringify(line && statusOf(line))}`);
      }
      current = want;
    }
    proc.send({ stop: true });
    await proc.exited;
    return kills;
  }

  it(`${P_PLANS.length + N_PLANS.length} SIGKILLs during set switches, each at its point: old set or new set, never a mix`, async () => {
    const t0 = Date.now();
    const runs = await Promise.allSettled([runDevice('P', P_PLANS), runDevice('N', N_PLANS)]);
    const kills = runs.reduce((n, r) => n + (r.status === 'fulfilled' ? r.value : 0), 0);
    console.log(JSON.stringify({ kills, seconds: Math.round((Date.now() - t0) / 1000) }));
    expect(failures).toEqual([]);
    expect(runs.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason))).toEqual([]);
    expect(kills).toBe(P_PLANS.length + N_PLANS.length);
  }, 600_000);
});
