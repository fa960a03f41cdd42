// The packaged agent (npm run package:agent) against the agent run from a checkout with tsx: tarball and
// .deb sizes, installed size and file count (npm install -g --offline into an empty prefix), and for
// both ways of running it the time from spawn to the first inference served on its local endpoint, with
// the model already installed (a restart; median of `restarts`), plus the first start that installs
// the model, and the resident memory after that first served inference. One real server in this
// process, the agents in child processes. Targets (issue 16): at most 30 MB installed, no native build
// step, first inference within 2 s of start.
// Run alone: npx tsx bench/agent-package.ts [--restarts N]
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildServer } from '../server/app.ts';
import { newSecret } from '../server/auth/secrets.ts';
import { b64 } from '../shared/crypto.ts';
import { tinyClassifier } from '../firmware-sim/sample-models.ts';
import { packageAgent } from '../scripts/package-agent.ts';
import { isMain, median, round } from './util.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function tree(dir: string): { bytes: number; files: number } {
  let bytes = 0, files = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) { const t = tree(join(dir, e.name)); bytes += t.bytes; files += t.files; } else { bytes += statSync(join(dir, e.name)).size; files++; }
  }
  return { bytes, files };
}

interface Run { startedMs: number; firstInferenceMs: number; rssBytes: number; cpuMs: number }

/** user + system CPU time of a process so far (Linux /proc; clock ticks of 10 ms): wall time on a shared, loaded machine says little. */
function cpuMsOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** Spawn an agent, time spawn -> agent_started line -> first 200 from POST /v1/infer, read its RSS, stop it. */
async function timeOneStart(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, body: string): Promise<Run> {
  const t0 = performance.now();
  const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => { stderr = (stderr + d).slice(-2000); });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    const started = await new Promise<{ port: number; ms: number }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`agent did not start in 60 s: ${stderr}`)), 60_000);
      createInterface({ input: child.stdout! }).on('line', (l) => {
        try {
          const j = JSON.parse(l) as { event?: string; httpPort?: number };
          if (j.event === 'agent_started') { clearTimeout(timer); resolve({ port: j.httpPort!, ms: performance.now() - t0 }); }
        } catch { /* not a log line */ }
      });
      child.once('exit', (code) => reject(new Error(`agent exited with ${code}: ${stderr}`)));
    });
    const deadline = Date.now() + 60_000;
    for (;;) {
      const res = await fetch(`http://127.0.0.1:${started.port}/v1/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      await res.arrayBuffer();
      if (res.status === 200) break;
      if (Date.now() > deadline) throw new Error(`no inference served in 60 s (last ${res.status})`);
      await new Promise((r) => setTimeout(r, 10));
    }
    const firstInferenceMs = performance.now() - t0;
    const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? NaN);
    return { startedMs: started.ms, firstInferenceMs, rssBytes: rssKiB * 1024, cpuMs: cpuMsOf(child.pid!) };
  } finally {
    child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

export async function benchAgentPackage(opts: { restarts?: number } = {}) {
  const restarts = opts.restarts ?? 3;
  const work = mkdtempSync(join(tmpdir(), 'fleet-bench-pkg-'));
  const adminToken = newSecret('apiToken');
  const app = await buildServer({
    dataDir: join(work, 'server'), httpPort: 0, mqttPort: 0, logLevel: 'silent', bootstrapAdminToken: adminToken,
  });
  try {
    const pkgs = await packageAgent(join(work, 'out'));
    const prefix = join(work, 'prefix');
    const t0 = performance.now();
    execFileSync('npm', ['install', '-g', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', '--prefix', prefix, pkgs.tgz],
      { cwd: work, env: { ...process.env, npm_config_cache: join(work, 'npm-cache') }, stdio: 'pipe' });
    const installMs = performance.now() - t0;
    const installed = tree(join(prefix, 'lib', 'node_modules', 'fleet-agent'));

    await app.listen({ host: '127.0.0.1', port: 0 });
    const baseUrl = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    const token = `Bearer ${adminToken}`;
    const up = await app.inject({ method: 'POST', url: '/v1/uploads', headers: { authorization: token, 'content-type': 'application/octet-stream' }, payload: Buffer.from(tinyClassifier(1, { inputs: 32, classes: 16 })) });
    const samples = Array.from({ length: 32 }, (_, i) => ({ inputs: { x: { dtype: 'float32', dims: [1, 32], data: Buffer.from(Float32Array.from({ length: 32 }, (_, j) => Math.sin(i * 32 + j)).buffer).toString('base64') } } }));
    const bundle = await app.inject({ method: 'POST', url: '/v1/models/tiny/bundles', headers: { authorization: token }, payload: { uploadSha256: up.json().sha256, quantize: 'int8', samples, gate: { minAgreement: 0.9 } } });
    if (bundle.statusCode !== 201) throw new Error(`bundle: ${bundle.statusCode} ${bundle.body}`);
    const assigned = await app.inject({ method: 'POST', url: '/v1/assignments', headers: { authorization: token }, payload: { manifestSha256: bundle.json().manifestSha256, deviceIds: ['bench-pkg', 'bench-tsx'] } });
    if (assigned.statusCode !== 202) throw new Error(`assign: ${assigned.statusCode} ${assigned.body}`);

    // each agent enrolls itself on its first start (enrollmentToken in its config): a key pair, as on a device
    const enrollment = await app.inject({ method: 'POST', url: '/v1/enrollment-tokens', headers: { authorization: token }, payload: { uses: 2, ttlSeconds: 3600 } });
    if (enrollment.statusCode !== 201) throw new Error(`enrollment token: ${enrollment.statusCode} ${enrollment.body}`);
    const body = JSON.stringify({ inputs: { x: { dims: [1, 32], data: Array.from({ length: 32 }, (_, i) => Math.cos(i)), type: 'float32' } } });
    const variants = {
      packaged: { cmd: join(prefix, 'bin', 'fleet-agent'), args: [] as string[], cwd: work },
      tsx: { cmd: process.execPath, args: ['--import', 'tsx', join(ROOT, 'device-agent', 'main.ts')], cwd: ROOT },
    };
    const result: Record<string, object> = {};
    for (const [name, v] of Object.entries(variants)) {
      const deviceId = name === 'packaged' ? 'bench-pkg' : 'bench-tsx';
      const config = join(work, `${name}.json`);
      mkdirSync(join(work, name));
      writeFileSync(config, JSON.stringify({
        deviceId, dataDir: join(work, name, 'data'), mqttUrl: `mqtt://127.0.0.1:${app.fleet.broker.port}`, serverUrl: baseUrl,
        rootPublicKey: b64.encode(app.fleet.keys.rootPublicKey), probationInferences: 1, probationSeconds: 0,
        enrollmentToken: enrollment.json().token,
      }));
      const args = [...v.args, '--config', config, '--http-port', '0'];
      const env = { PATH: process.env.PATH ?? '', HOME: work };
      const first = await timeOneStart(v.cmd, args, v.cwd, env, body);
      const runs: Run[] = [];
      for (let i = 0; i < restarts; i++) runs.push(await timeOneStart(v.cmd, args, v.cwd, env, body));
      result[name] = {
        firstStartInstallingModelMs: round(first.firstInferenceMs),
        restartToAgentStartedMs: round(median(runs.map((r) => r.startedMs))),
        restartToFirstInferenceMs: round(median(runs.map((r) => r.firstInferenceMs))),
        restartCpuMsToFirstInference: round(median(runs.map((r) => r.cpuMs))),
        rssAfterFirstInferenceMB: round(median(runs.map((r) => r.rssBytes)) / 1e6),
        runs: runs.map((r) => ({ startedMs: round(r.startedMs), firstInferenceMs: round(r.firstInferenceMs), rssMB: round(r.rssBytes / 1e6), cpuMs: r.cpuMs })),
      };
    }
    return {
      tarballMB: round(statSync(pkgs.tgz).size / 1e6),
      debMB: round(statSync(pkgs.deb).size / 1e6),
      installedMB: round(installed.bytes / 1e6),
      installedFiles: installed.files,
      offlineInstallMs: round(installMs),
      loadAverage1m: round(loadavg()[0]),
      nativeBuildStep: false,
      targets: { installedMaxMB: 30, firstInferenceMaxMs: 2000 },
      restarts,
      ...result,
    };
  } finally {
    await app.close();
    rmSync(work, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({ options: { restarts: { type: 'string' } } });
  console.log(JSON.stringify(await benchAgentPackage({ restarts: values.restarts ? Number(values.restarts) : undefined }), null, 2));
}
