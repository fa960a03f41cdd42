// npm run build (scripts/build.ts): the server compiled by tsc runs with plain node, without tsx.
// Built once into a temp folder (with the repository's node_modules linked beside it, as a deployment
// has its own), started as `node dist/server/main.js` on ephemeral loopback ports, asked for /healthz
// and the web console, stopped with SIGTERM. The CLI's compiled entry answers --help.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { newSecret } from '../../server/auth/secrets.ts';
import { tempDir } from '../helpers/harness.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe('server production build', () => {
  const work = tempDir('fleet-build-');
  let child: ChildProcess | undefined;
  afterAll(() => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    rmSync(work, { recursive: true, force: true });
  });

  it('runs with node from dist/: healthz, web console, clean stop', async () => {
    const app = join(work, 'app');
    mkdirSync(app);
    symlinkSync(join(ROOT, 'node_modules'), join(app, 'node_modules'));
    symlinkSync(join(ROOT, 'package.json'), join(app, 'package.json')); // "type": "module" for dist/*.js
    execFileSync(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts', 'build.ts'), '--out', join(app, 'dist')], { cwd: ROOT, stdio: 'pipe', timeout: 400_000 });
    expect(existsSync(join(app, 'dist', 'server', 'main.js'))).toBe(true);
    expect(existsSync(join(app, 'dist', 'server', 'web', 'index.html'))).toBe(true);

    const token = newSecret('apiToken');
    // no --import tsx, no NODE_OPTIONS: a .ts import left in dist/ would fail here
    const env = {
      PATH: process.env.PATH ?? '', HOME: work, FLEET_DATA_DIR: join(work, 'data'), FLEET_HTTP_HOST: '127.0.0.1',
      FLEET_HTTP_PORT: '0', FLEET_MQTT_HOST: '127.0.0.1', FLEET_MQTT_PORT: '0', FLEET_LOG_LEVEL: 'warn', FLEET_BOOTSTRAP_TOKEN: token,
    };
    child = spawn(process.execPath, [join(app, 'dist', 'server', 'main.js')], { cwd: work, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d) => { stderr = (stderr + d).slice(-4000); });
    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
    const baseUrl = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no start line in 60 s; stderr: ${stderr}`)), 60_000);
      createInterface({ input: child!.stdout! }).on('line', (l) => {
        const m = /^fleet server: (http:\/\/127\.0\.0\.1:\d+) /.exec(l);
        if (m) { clearTimeout(timer); resolve(m[1]); }
      });
      child!.once('exit', (code) => reject(new Error(`server exited with ${code}; stderr: ${stderr}`)));
    });

    const health = await fetch(`${baseUrl}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ ok: true, devicesConnected: 0 });
    const page = await fetch(`${baseUrl}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<html');
    const keys = await fetch(`${baseUrl}/v1/keys`, { headers: { authorization: `Bearer ${token}` } });
    expect(keys.status).toBe(200);

    child.kill('SIGTERM');
    expect(await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 15_000))])).toBe(0);

    const help = execFileSync(process.execPath, [join(app, 'dist', 'cli', 'fleetctl.js'), '--help'], { encoding: 'utf8', timeout: 30_000 });
    expect(help).toContain('fleetctl');
  }, 480_000);
});
