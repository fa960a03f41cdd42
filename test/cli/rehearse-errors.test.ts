// fleetctl campaigns rehearse refuses what it cannot rehearse, with a clear message and exit 1, before
// any twin starts: a campaign file that is not JSON or not a campaign, an unknown bundle, an empty target.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tinyClassifier } from '../../firmware-sim/sample-models.ts';
import { runFleetctl } from '../helpers/fleetctl.ts';
import { pushBundle, startTestServer, tempDir, type TestServer } from '../helpers/harness.ts';

describe('fleetctl campaigns rehearse: refusals', { timeout: 120_000 }, () => {
  let server: TestServer;
  let dir: string;
  let sha: string;

  beforeAll(async () => {
    server = await startTestServer();
    dir = tempDir('rehearse-err-');
    sha = (await pushBundle(server, 'm', tinyClassifier(1))).manifestSha256;
  });

  afterAll(async () => {
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const rehearse = async (body: string, ...flags: string[]) => {
    const file = join(dir, `c-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(file, body);
    return runFleetctl(server.baseUrl, server.adminToken, 'campaigns', 'rehearse', file, ...flags);
  };

  it.each([
    ['not JSON', '{', /c-.*\.json: .*JSON/],
    ['no manifestSha256', '{"waves": [{"percent": 100}]}', /manifestSha256: /],
    ['a last wave under 100%', JSON.stringify({ manifestSha256: 'a'.repeat(64), waves: [{ percent: 50 }] }), /waves\.0\.percent: the last wave must reach 100%/],
    ['an unknown field', JSON.stringify({ manifestSha256: 'a'.repeat(64), colour: 'red' }), /Unrecognized key/],
  ])('%s', async (_name, body, message) => {
    const r = await rehearse(body);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toContain('[FLEETCTL_ERR_CONFIG]');
  });

  it('an unknown bundle is the server\'s 404', async () => {
    const r = await rehearse(JSON.stringify({ manifestSha256: 'b'.repeat(64) }));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`no bundle with manifest ${'b'.repeat(64)}`);
  });

  it('a target no device matches', async () => {
    const r = await rehearse(JSON.stringify({ manifestSha256: sha, target: { hardware: ['nothing'] } }));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('the campaign target matches no device: nothing to rehearse');
  });

  it('bad flags', async () => {
    const r = await rehearse(JSON.stringify({ manifestSha256: sha }), '--max-devices', '0');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('--max-devices');
  });
});
