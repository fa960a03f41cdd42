// The packaged agent (npm run package:agent; docs/agent.md "Install"): built once here, the tarball is
// installed into an empty prefix with an empty npm cache and --offline (so nothing can come from the
// registry or the repository's node_modules), started with a PATH that holds only node and the installed
// command (no tsx, esbuild or compiler), against a real server; it installs an INT8 bundle, answers
// inference on its local endpoint, stops on SIGTERM and is uninstalled without leftovers. The .deb is
// read with dpkg-deb (-I, -c, -e, -x) and installed, upgraded, removed and purged with `dpkg --root` in a
// throwaway root (its maintainer scripts honour DPKG_ROOT), never on this machine's own system; systemd
// is not exercised (the scripts skip systemctl under DPKG_ROOT).
//
// Enrollment as on a device: the server refuses unenrolled devices (the product default); the installed
// `fleet-agent enroll` makes the device's key pair and registers it with an enrollment token.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { isBuiltin } from 'node:module';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageAgent, type AgentPackages } from '../../scripts/package-agent.ts';
import { AGENT_VERSION } from '../../shared/version.ts';
import { assign, pushBundle, startTestServer, tempDir, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const INSTALLED_FILES = [
  'README.md', 'THIRD_PARTY_LICENSES.txt', 'agent.json.example', 'bin/fleet-agent.mjs', 'fleet-agent.service',
  'lib/agent.mjs', 'lib/ort-wasm-simd-threaded.mjs', 'lib/ort-wasm-simd-threaded.wasm', 'lib/shadow-thread.mjs', 'package.json',
];

function listFiles(dir: string, prefix = ''): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? listFiles(join(dir, e.name), `${prefix}${e.name}/`) : [`${prefix}${e.name}`]).sort();
}

function treeBytes(dir: string): number {
  return readdirSync(dir, { withFileTypes: true }).reduce((n, e) =>
    n + (e.isDirectory() ? treeBytes(join(dir, e.name)) : statSync(join(dir, e.name)).size), 0);
}

/** Inputs for the INT8 accuracy gate of tinyClassifier (one [1, 32] float32 tensor each), from a fixed seed. */
function calibrationSamples(n: number) {
  let s = 7;
  const next = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  return Array.from({ length: n }, () => ({
    inputs: { x: { dtype: 'float32' as const, dims: [1, 32], data: Buffer.from(Float32Array.from({ length: 32 }, next).buffer).toString('base64') } },
  }));
}

let work: string;
let pkgs: AgentPackages;

beforeAll(async () => {
  work = tempDir('fleet-pkg-');
  pkgs = await packageAgent(join(work, 'out'));
}, 240_000);

afterAll(() => { if (work) rmSync(work, { recursive: true, force: true }); });

describe('npm tarball', () => {
  let server: TestServer | undefined;
  let child: ChildProcess | undefined;
  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await server?.close();
  });

  it('installs offline into an empty prefix, installs an INT8 bundle, serves inference, stops, uninstalls cleanly', async () => {
    expect(pkgs.tgz.endsWith(`fleet-agent-${AGENT_VERSION}.tgz`)).toBe(true);
    const prefix = join(work, 'prefix');
    const npmEnv = { ...process.env, npm_config_cache: join(work, 'npm-cache'), npm_config_update_notifier: 'false' };
    execFileSync('npm', ['install', '-g', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', '--prefix', prefix, pkgs.tgz],
      { cwd: work, env: npmEnv, stdio: 'pipe', timeout: 120_000 });

    const installed = join(prefix, 'lib', 'node_modules', 'fleet-agent');
    // exactly the agent's files: no node_modules, no TypeScript, only the WASM build the agent loads
    expect(listFiles(installed)).toEqual(INSTALLED_FILES);
    expect(treeBytes(installed)).toBeLessThan(30 * 1024 * 1024);
    expect(readlinkSync(join(prefix, 'bin', 'fleet-agent'))).toContain('fleet-agent/bin/fleet-agent.mjs');
    // the bundle reaches outside itself only for Node built-ins and three optional packages that ws and
    // debug require inside try/catch (native speed-ups and terminal colours)
    const bundleText = readFileSync(join(installed, 'lib', 'agent.mjs'), 'utf8');
    const specifiers = new Set([...bundleText.matchAll(/(?:\bfrom ?|require\(|\bimport\()"([^"./][^"]*)"/g)].map((m) => m[1]));
    expect([...specifiers].filter((x) => !isBuiltin(x)).sort()).toEqual(['bufferutil', 'supports-color', 'utf-8-validate']);
    expect(readFileSync(join(installed, 'THIRD_PARTY_LICENSES.txt'), 'utf8')).toMatch(/mqtt@[\s\S]*onnxruntime-web@[\s\S]*tweetnacl@[\s\S]*zod@/);
    // the shadow candidate's thread (lib/shadow-thread.mjs) runs from the installed files alone: it loads
    // onnxruntime-web's WASM from lib/ and answers a load (its hash checked) and a run
    const model = tinyClassifier(2);
    const probe = `import { Worker } from 'node:worker_threads'; import { createHash } from 'node:crypto';
      const bytes = new Uint8Array(Buffer.from(${JSON.stringify(Buffer.from(model).toString('base64'))}, 'base64'));
      const w = new Worker(${JSON.stringify(join(installed, 'lib', 'shadow-thread.mjs'))}, { execArgv: [] });
      const ask = (m) => new Promise((r) => { w.once('message', r); w.postMessage(m); });
      const load = await ask({ op: 'load', id: 1, bytes, sha256: createHash('sha256').update(bytes).digest('hex'), sessionConfig: {} });
      const run = await ask({ op: 'run', id: 2, session: load.session, feeds: { x: { data: new Float32Array(8), dims: [1, 8] } } });
      console.log(JSON.stringify({ load: load.ok, run: run.ok, outputs: Object.keys(run.outputs ?? {}) })); await w.terminate();`;
    const probed = execFileSync(process.execPath, ['--input-type=module', '-e', probe], { cwd: work, env: { PATH: '' }, encoding: 'utf8', timeout: 60_000 });
    expect(JSON.parse(probed.trim())).toEqual({ load: true, run: true, outputs: ['probs'] });

    // a PATH with node and the installed command only
    const nodeBin = join(work, 'node-bin');
    mkdirSync(nodeBin);
    symlinkSync(process.execPath, join(nodeBin, 'node'));
    const runEnv = { PATH: `${join(prefix, 'bin')}:${nodeBin}`, HOME: work };
    const runDir = join(work, 'run');
    mkdirSync(runDir);
    expect(execFileSync('fleet-agent', ['--version'], { cwd: runDir, env: runEnv, encoding: 'utf8', timeout: 30_000 }).trim()).toBe(AGENT_VERSION);
    server = await startTestServer();
    const bundle = await pushBundle(server, 'tiny', tinyClassifier(1, { inputs: 32, classes: 16 }), {
      quantize: 'int8', samples: calibrationSamples(32),
      // random weights on random inputs: a near tie can flip one top-1 of 32; the test is about the package, not the gate
      gate: { minAgreement: 0.9 },
    });
    expect(bundle.manifest).toMatchObject({ quantization: expect.objectContaining({ scheme: 'int8-weight-symmetric' }) });
    const configPath = join(runDir, 'agent.json');
    // (run without blocking: the server answering the enrollment is in this process)
    const runAsync = (args: string[]) => new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      const c = spawn('fleet-agent', args, { cwd: runDir, env: runEnv, stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
      let stdout = '', stderr = '';
      c.stdout!.on('data', (d) => { stdout += d; });
      c.stderr!.on('data', (d) => { stderr += d; });
      c.once('close', (status) => resolve({ status, stdout, stderr }));
    });
    // installing a device: install the package, enroll (which writes the config), start the service
    const device = ['--config', configPath, '--server', server.baseUrl, '--device-id', 'pkg-0001', '--mqtt-url', server.mqttUrl,
      '--root-public-key', server.rootPublicKey, '--data-dir', join(runDir, 'data')];
    // missing what a new config needs: a usage error, nothing written
    const incomplete = await runAsync(['enroll', '--config', configPath, '--token', server.enrollmentToken, '--server', server.baseUrl]);
    expect(incomplete.status).toBe(2);
    expect(incomplete.stderr).toContain('give --device-id, --mqtt-url, --root-public-key');
    // a bad token is refused with the server's reason, and no config is written
    const refused = await runAsync(['enroll', ...device, '--token', `fleet_et_${'A'.repeat(43)}`]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain('enrollment of pkg-0001 refused (HTTP 401)');
    expect(existsSync(configPath)).toBe(false);
    const enroll = await runAsync(['enroll', ...device, '--token', server.enrollmentToken]);
    expect(enroll.status, enroll.stderr).toBe(0);
    const enrolled = JSON.parse(enroll.stdout.trim()) as { event: string; deviceId: string; publicKey: string };
    expect(enrolled).toMatchObject({ event: 'enrolled', deviceId: 'pkg-0001', configWritten: configPath });
    expect(JSON.parse(readFileSync(configPath, 'utf8'))).toEqual({
      deviceId: 'pkg-0001', dataDir: join(runDir, 'data'), mqttUrl: server.mqttUrl, serverUrl: server.baseUrl, rootPublicKey: server.rootPublicKey,
    });
    expect(statSync(join(runDir, 'data', 'device-key.pem')).mode & 0o777).toBe(0o600);

    child = spawn('fleet-agent', ['--config', configPath, '--http-port', '0'], { cwd: runDir, env: runEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d) => { stderr = (stderr + d).slice(-4000); });
    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
    const lines: { event: string; [k: string]: unknown }[] = [];
    createInterface({ input: child.stdout! }).on('line', (t) => { try { lines.push(JSON.parse(t)); } catch { /* not a log line */ } });
    const waitLine = async (event: string, timeoutMs: number) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = lines.find((l) => l.event === event);
        if (found) return found;
        if (Date.now() > deadline || child!.exitCode !== null) throw new Error(`no ${event} line in ${timeoutMs} ms; stderr: ${stderr}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    };
    const started = await waitLine('agent_started', 30_000);
    const port = started.httpPort as number;
    expect(port).toBeGreaterThan(0);

    await assign(server, bundle.manifestSha256, ['pkg-0001']);
    const deadline = Date.now() + 60_000;
    let status: { active: { manifestSha256: string; modelId: string; version: number } | null } = { active: null };
    while (status.active?.manifestSha256 !== bundle.manifestSha256) {
      if (Date.now() > deadline) throw new Error(`model not active in 60 s: ${JSON.stringify(status)}; stderr: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
      status = await (await fetch(`http://127.0.0.1:${port}/v1/status`)).json();
    }
    expect(status.active).toMatchObject({ modelId: 'tiny', version: bundle.version, manifestSha256: bundle.manifestSha256 });

    const res = await fetch(`http://127.0.0.1:${port}/v1/infer`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ inputs: { x: { dims: [1, 32], data: Array.from({ length: 32 }, (_, i) => Math.sin(i)), type: 'float32' } } }),
    });
    expect(res.status).toBe(200);
    const out = await res.json() as { model: { manifestSha256: string }; outputs: { probs: { dims: number[]; data: number[] } } };
    expect(out.model.manifestSha256).toBe(bundle.manifestSha256);
    expect(out.outputs.probs.dims).toEqual([1, 16]);
    expect(out.outputs.probs.data.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 3);

    // the server sees the device on exactly this manifest
    const view = (await server.app.inject({ url: '/v1/devices/pkg-0001' })).json() as { activeManifestSha256?: string; active?: { manifestSha256: string } };
    expect(JSON.stringify(view)).toContain(bundle.manifestSha256);

    child.kill('SIGTERM');
    expect(await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 15_000))])).toBe(0);

    execFileSync('npm', ['uninstall', '-g', '--offline', '--ignore-scripts', '--prefix', prefix, 'fleet-agent'],
      { cwd: work, env: npmEnv, stdio: 'pipe', timeout: 120_000 });
    expect(existsSync(installed)).toBe(false);
    expect(existsSync(join(prefix, 'bin', 'fleet-agent'))).toBe(false);
  }, 240_000);
});

describe('Debian package', () => {
  const deb = (...args: string[]) => execFileSync('dpkg-deb', [...args, pkgs.deb], { encoding: 'utf8', timeout: 60_000 });

  it('has the metadata a device needs', () => {
    expect(pkgs.deb.endsWith(`fleet-agent_${AGENT_VERSION}_all.deb`)).toBe(true);
    const field = (name: string) => deb('-f').split('\n').find((l) => l.startsWith(`${name}: `))?.slice(name.length + 2);
    expect(field('Package')).toBe('fleet-agent');
    expect(field('Version')).toBe(AGENT_VERSION);
    expect(field('Architecture')).toBe('all');
    expect(field('Depends')).toBe('nodejs (>= 20.19), passwd');
    const installedKiB = Number(field('Installed-Size'));
    expect(installedKiB).toBeGreaterThan(14_000);
    expect(installedKiB).toBeLessThan(30 * 1024);
    expect(deb('-I')).toMatch(/postinst[\s\S]*postrm[\s\S]*prerm/);
  });

  it('lays down the agent, the command, the unit, the template and docs, owned by root with fixed modes', () => {
    const entries = deb('-c').trim().split('\n').map((l) => {
      const [mode, owner, , , , ...rest] = l.split(/\s+/);
      return { mode, owner, path: rest.join(' ') };
    });
    const files = Object.fromEntries(entries.filter((e) => !e.mode.startsWith('d')).map((e) => [e.path, e]));
    expect(Object.keys(files).sort()).toEqual([
      './usr/bin/fleet-agent -> ../lib/fleet-agent/bin/fleet-agent.mjs',
      './usr/lib/fleet-agent/bin/fleet-agent.mjs',
      './usr/lib/fleet-agent/lib/agent.mjs',
      './usr/lib/fleet-agent/lib/ort-wasm-simd-threaded.mjs',
      './usr/lib/fleet-agent/lib/ort-wasm-simd-threaded.wasm',
      './usr/lib/fleet-agent/lib/shadow-thread.mjs',
      './usr/lib/fleet-agent/package.json',
      './usr/lib/systemd/system/fleet-agent.service',
      './usr/share/doc/fleet-agent/README.md',
      './usr/share/doc/fleet-agent/copyright',
      './usr/share/fleet-agent/agent.json.example',
    ]);
    for (const e of entries) expect(e.owner).toBe('root/root');
    expect(files['./usr/lib/fleet-agent/bin/fleet-agent.mjs'].mode).toBe('-rwxr-xr-x');
    expect(files['./usr/lib/fleet-agent/lib/agent.mjs'].mode).toBe('-rw-r--r--');
    expect(files['./usr/lib/systemd/system/fleet-agent.service'].mode).toBe('-rw-r--r--');
    // the package owns no file under /etc or /var/lib: config, credential, state and slots survive upgrades
    expect(entries.some((e) => e.path.startsWith('./etc') || e.path.startsWith('./var'))).toBe(false);
  });

  it('unpacked, its command runs; its unit names the fleet user, the config and the hardening', () => {
    const root = join(work, 'deb-x');
    execFileSync('dpkg-deb', ['-x', pkgs.deb, root]);
    expect(execFileSync(process.execPath, [join(root, 'usr', 'bin', 'fleet-agent'), '--version'], { encoding: 'utf8', timeout: 30_000 }).trim()).toBe(AGENT_VERSION);
    const unit = readFileSync(join(root, 'usr/lib/systemd/system/fleet-agent.service'), 'utf8');
    for (const line of ['User=fleet', 'Group=fleet', 'ExecStart=/usr/bin/fleet-agent --config /etc/fleet-agent/agent.json',
      'ConditionPathExists=/etc/fleet-agent/agent.json', 'Restart=always', 'StateDirectory=fleet-agent', 'ProtectSystem=strict', 'NoNewPrivileges=true']) {
      expect(unit.split('\n')).toContain(line);
    }
    // docs/agent.md shows the unit the package installs, verbatim
    expect(readFileSync(join(ROOT, 'docs', 'agent.md'), 'utf8')).toContain(unit);
  });

  it('its maintainer scripts parse and are executable', () => {
    const control = join(work, 'deb-control');
    execFileSync('dpkg-deb', ['-e', pkgs.deb, control]);
    for (const s of ['postinst', 'prerm', 'postrm']) {
      expect(statSync(join(control, s)).mode & 0o777).toBe(0o755);
      execFileSync('sh', ['-n', join(control, s)]);
    }
    expect(existsSync(join(control, 'conffiles'))).toBe(false);
  });

  // dpkg --root needs root (it sets owners); skipped, and says so, when the suite does not run as root
  it.skipIf(process.getuid?.() !== 0)('dpkg --root into a throwaway root: fleet user, folders with owners and modes; upgrade keeps config, state and slots; purge deletes them', () => {
    // A root of its own with its own dpkg database and user files; the maintainer scripts run outside a
    // chroot with DPKG_ROOT set (--force-script-chrootless) and change only files under it. Dependencies
    // (nodejs, passwd) are not in this root, hence --force-depends. The host's users are not touched.
    const root = join(work, 'root');
    for (const d of ['etc', 'var/lib/dpkg/info', 'var/lib/dpkg/updates', 'var/lib/dpkg/triggers']) mkdirSync(join(root, d), { recursive: true });
    for (const f of ['status', 'available']) writeFileSync(join(root, 'var/lib/dpkg', f), '');
    writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
    writeFileSync(join(root, 'etc/group'), 'root:x:0:\n');
    writeFileSync(join(root, 'etc/shadow'), 'root:*:19000:0:99999:7:::\n', { mode: 0o640 });
    writeFileSync(join(root, 'etc/gshadow'), 'root:*::\n', { mode: 0o640 });
    const hostPasswd = readFileSync('/etc/passwd', 'utf8');
    const dpkg = (...args: string[]) => execFileSync('dpkg', [`--root=${root}`, '--force-script-chrootless', '--force-depends', '--log=/dev/null', ...args],
      { encoding: 'utf8', stdio: 'pipe', timeout: 60_000 });
    const fleetLines = () => readFileSync(join(root, 'etc/passwd'), 'utf8').split('\n').filter((l) => l.startsWith('fleet:'));
    const stat = (p: string) => { const s = statSync(join(root, p)); return { uid: s.uid, gid: s.gid, mode: s.mode & 0o7777 }; };

    dpkg('-i', pkgs.deb);
    expect(fleetLines()).toHaveLength(1);
    const [, , uid, gid, , home, shell] = fleetLines()[0].split(':').map((x, i) => (i === 2 || i === 3 ? Number(x) : x)) as [string, string, number, number, string, string, string];
    expect(uid).toBeGreaterThan(0);
    expect(uid).toBeLessThan(1000); // a system user
    expect([home, shell]).toEqual(['/var/lib/fleet-agent', '/usr/sbin/nologin']);
    expect(readFileSync(join(root, 'etc/group'), 'utf8')).toContain(`fleet:x:${gid}:`);
    expect(stat('var/lib/fleet-agent')).toEqual({ uid, gid, mode: 0o750 });
    expect(stat('etc/fleet-agent')).toEqual({ uid: 0, gid, mode: 0o750 });
    expect(stat('usr/lib/fleet-agent/bin/fleet-agent.mjs')).toEqual({ uid: 0, gid: 0, mode: 0o755 });
    expect(stat('usr/lib/systemd/system/fleet-agent.service')).toEqual({ uid: 0, gid: 0, mode: 0o644 });
    expect(readlinkSync(join(root, 'usr/bin/fleet-agent'))).toBe('../lib/fleet-agent/bin/fleet-agent.mjs');
    expect(dpkg('-s', 'fleet-agent')).toContain('Status: install ok installed');

    // the device's own files, as the operator and the agent would have written them
    const mine = { 'etc/fleet-agent/agent.json': '{"deviceId":"cam-1"}', 'var/lib/fleet-agent/state.json': '{"v":1}', 'var/lib/fleet-agent/slots/a.onnx': 'model-bytes' };
    for (const [p, text] of Object.entries(mine)) { mkdirSync(join(root, p, '..'), { recursive: true }); writeFileSync(join(root, p), text); }

    // upgrade to a newer version: the same package with Version 0.1.0+1
    const repack = join(work, 'repack');
    execFileSync('dpkg-deb', ['-R', pkgs.deb, repack]);
    const controlFile = join(repack, 'DEBIAN', 'control');
    writeFileSync(controlFile, readFileSync(controlFile, 'utf8').replace(`Version: ${AGENT_VERSION}`, `Version: ${AGENT_VERSION}+1`));
    const newer = join(work, 'fleet-agent_newer_all.deb');
    execFileSync('dpkg-deb', ['--root-owner-group', '-Zgzip', '--build', repack, newer], { stdio: 'pipe' });
    dpkg('-i', newer);
    expect(dpkg('-s', 'fleet-agent')).toContain(`Version: ${AGENT_VERSION}+1`);
    for (const [p, text] of Object.entries(mine)) expect(readFileSync(join(root, p), 'utf8')).toBe(text);
    expect(fleetLines()).toHaveLength(1);
    expect(stat('var/lib/fleet-agent')).toEqual({ uid, gid, mode: 0o750 });
    expect(stat('etc/fleet-agent')).toEqual({ uid: 0, gid, mode: 0o750 });

    // remove keeps config and state; purge deletes them; the package's own files go either way
    dpkg('-r', 'fleet-agent');
    expect(existsSync(join(root, 'usr/lib/fleet-agent'))).toBe(false);
    expect(existsSync(join(root, 'usr/bin/fleet-agent'))).toBe(false);
    for (const [p, text] of Object.entries(mine)) expect(readFileSync(join(root, p), 'utf8')).toBe(text);
    dpkg('-P', 'fleet-agent');
    expect(existsSync(join(root, 'etc/fleet-agent'))).toBe(false);
    expect(existsSync(join(root, 'var/lib/fleet-agent'))).toBe(false);
    expect(readFileSync('/etc/passwd', 'utf8')).toBe(hostPasswd);
  }, 180_000);
});
