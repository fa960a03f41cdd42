// fleetctl releases (issue 19) as an operator runs it: a child process against a real server on loopback.
// `releases push` pushes the models a release file names (one float, one with samples: INT8 behind the
// gate), takes a third as an existing bundle, and makes the release; bad files get a clear usage error.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeTensor } from '../../shared/tensor-codec.ts';
import { runFleetctl } from '../helpers/fleetctl.ts';
import { pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';

describe('fleetctl releases', () => {
  let server: TestServer;
  let dir = '';
  const fleetctl = (...args: string[]) => runFleetctl(server.baseUrl, server.adminToken, ...args);

  beforeAll(async () => {
    server = await startTestServer();
    dir = join(server.dir, 'release-files');
    mkdirSync(dir, { recursive: true });
  }, 60_000);
  afterAll(async () => { await server?.close(); });

  it('push makes the release from a small file; list, show and assign; bad files are usage errors', async () => {
    await pushBundle(server, 'cls', tinyClassifier(3, { inputs: 4, classes: 3 }));
    writeFileSync(join(dir, 'front.onnx'), tinyClassifier(1, { inputs: 8, classes: 6 }));
    writeFileSync(join(dir, 'mid.onnx'), tinyClassifier(2, { inputs: 6, classes: 4 }));
    const x = (n: number, i: number) => encodeTensor('float32', [1, n], Float32Array.from({ length: n }, (_, k) => Math.sin(i * 7 + k)));
    writeFileSync(join(dir, 'mid.samples.json'), JSON.stringify({ samples: Array.from({ length: 16 }, (_, i) => ({ inputs: { x: x(6, i) } })) }));
    const file = join(dir, 'release.json');
    writeFileSync(file, JSON.stringify({
      name: 'pipeline',
      models: [
        { modelId: 'front', file: 'front.onnx' },
        { modelId: 'mid', file: 'mid.onnx', samples: 'mid.samples.json' },
        { modelId: 'cls' },
      ],
    }));
    const push = await fleetctl('--json', 'releases', 'push', file);
    expect(push.code, push.stderr).toBe(0);
    const out = JSON.parse(push.stdout) as { pushed: { modelId: string; version: number }[]; release: { name: string; version: number; models: { modelId: string; version: number }[] } };
    expect(out.pushed.map((p) => `${p.modelId} v${p.version}`)).toEqual(['front v1', 'mid v1']);
    expect(out.release.name).toBe('pipeline');
    expect(out.release.version).toBe(1);
    expect(out.release.models.map((m) => `${m.modelId} v${m.version}`)).toEqual(['front v1', 'mid v1', 'cls v1']);
    // mid was pushed for INT8 (it had samples; its weights are too small to be worth it, so the float ships), front as float
    const outcome = (id: string) => (server.app.fleet.db.prepare("SELECT json_extract(report_json, '$.outcome') AS o FROM bundles WHERE model_id = ?").get(id) as { o: string }).o;
    expect(outcome('mid')).toBe('nothing-quantized');
    expect(outcome('front')).toBe('float');

    const again = await fleetctl('releases', 'push', file);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('release pipeline v2 (3 models');
    expect(again.stdout).toContain('front (primary)');

    const list = await fleetctl('releases', 'list');
    expect(list.code).toBe(0);
    expect(list.stdout.split('\n').filter((l) => l.startsWith('pipeline'))).toHaveLength(2);
    const show = await fleetctl('--json', 'releases', 'show', 'pipeline');
    expect((JSON.parse(show.stdout) as { versions: { version: number }[] }).versions.map((v) => v.version)).toEqual([2, 1]);
    const assign = await fleetctl('releases', 'assign', 'pipeline', '--devices', 'rel-dev-1,rel-dev-2', '--version', '1');
    expect(assign.code, assign.stderr).toBe(0);
    expect(assign.stdout.trim()).toBe('release pipeline v1 assigned to 2 devices');
    const audit = server.app.fleet.db.prepare("SELECT action, target FROM audit_log WHERE action LIKE 'releases.%' ORDER BY id").all();
    expect(audit).toEqual([
      { action: 'releases.create', target: 'pipeline:1' }, { action: 'releases.create', target: 'pipeline:2' }, { action: 'releases.assign', target: 'pipeline:1' },
    ]);

    // bad input: a clear message and exit 1, before anything is sent (usage) or with the server's refusal
    writeFileSync(join(dir, 'bad.json'), JSON.stringify({ name: 'p', models: [{ modelId: 'front', file: 'nope.onnx' }] }));
    const missing = await fleetctl('releases', 'push', join(dir, 'bad.json'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no model file nope.onnx');
    writeFileSync(join(dir, 'bad2.json'), JSON.stringify({ name: 'p', models: [] }));
    const empty = await fleetctl('releases', 'push', join(dir, 'bad2.json'));
    expect(empty.code).toBe(1);
    expect(empty.stderr).toContain('models');
    writeFileSync(join(dir, 'bad3.json'), JSON.stringify({ name: 'p', models: [{ modelId: 'ghost' }] }));
    const ghost = await fleetctl('releases', 'push', join(dir, 'bad3.json'));
    expect(ghost.code).not.toBe(0);
    expect(ghost.stderr).toContain('no bundle of ghost');
    const chainBad = join(dir, 'bad4.json');
    writeFileSync(chainBad, JSON.stringify({ name: 'p', models: [{ modelId: 'cls' }], chain: { steps: [{ modelId: 'front', inputs: { x: { from: 'input', name: 'x' } } }] } }));
    const chain = await fleetctl('releases', 'push', chainBad);
    expect(chain.code).not.toBe(0);
    expect(chain.stderr).toContain('step 0 runs front, which is not in the set');
  }, 120_000);

  it('campaigns create --release: a staged rollout of a release, shown with every model; a bundle and --release together is a usage error', async () => {
    const cfg = join(dir, 'campaign.json');
    writeFileSync(cfg, JSON.stringify({ target: { deviceIds: ['rel-dev-1', 'rel-dev-2'] }, waves: [{ percent: 100, soakSeconds: 3600 }] }));
    const created = await fleetctl('campaigns', 'create', '--release', 'pipeline', '--release-version', '2', '--config', cfg);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/^started \S+ {2}release pipeline v2 \(front v2, mid v2, cls v1\) {2}running {2}wave 1\/1/);
    const id = created.stdout.split(/\s+/)[1];
    const row = server.app.fleet.db.prepare('SELECT json_extract(release_json, \'$.name\') AS name, json_extract(config_json, \'$.releaseVersion\') AS v FROM campaigns WHERE campaign_id = ?').get(id);
    expect(row).toEqual({ name: 'pipeline', v: 2 });
    const both = await fleetctl('campaigns', 'create', 'a'.repeat(64), '--release', 'pipeline');
    expect(both.code).toBe(1);
    expect(both.stderr).toContain('name exactly one of a bundle (manifestSha256) or --release <name>');
    const aborted = await fleetctl('campaigns', 'abort', id);
    expect(aborted.code, aborted.stderr).toBe(0);
  }, 120_000);
});
