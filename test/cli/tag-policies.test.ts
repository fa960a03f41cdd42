// fleetctl tag-policies (issue 18) as an operator runs it: a child process against a real server on
// loopback. set from a file, list, delete (each audited once); a bad file is a usage error before anything is sent, and the server's refusal comes through.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFleetctl } from '../helpers/fleetctl.ts';
import { startTestServer, type TestServer } from '../helpers/harness.ts';

describe('fleetctl tag-policies', () => {
  let server: TestServer;
  let dir = '';
  const fleetctl = (...args: string[]) => runFleetctl(server.baseUrl, server.adminToken, ...args);

  beforeAll(async () => {
    server = await startTestServer();
    dir = join(server.dir, 'policy-files');
    mkdirSync(dir, { recursive: true });
  }, 60_000);
  afterAll(async () => { await server?.close(); });

  it('set, list and delete a tag policy; bad files are usage errors', async () => {
    const night = join(dir, 'night.json');
    writeFileSync(night, JSON.stringify({
      downloadWindows: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '22:00', end: '05:00' }],
      conditions: { minBatteryPercent: 40, unmeteredOnly: true },
    }));
    const set = await fleetctl('tag-policies', 'set', 'lobby', night);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout.trim()).toBe('tag lobby: download mon,tue,wed,thu,fri 22:00-05:00; battery >= 40% or on a charger; unmetered network only');

    const list = await fleetctl('--json', 'tag-policies', 'list');
    expect(list.code, list.stderr).toBe(0);
    const policies = (JSON.parse(list.stdout) as { policies: { tag: string; policy: unknown }[] }).policies;
    expect(policies.map((p) => p.tag)).toEqual(['lobby']);
    expect(policies[0].policy).toEqual({
      downloadWindows: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '22:00', end: '05:00' }],
      conditions: { minBatteryPercent: 40, unmeteredOnly: true },
    });
    const human = await fleetctl('tag-policies', 'list');
    expect(human.stdout.split('\n').filter((l) => l.startsWith('lobby'))).toHaveLength(1);

    // bad input: a clear message and exit 1, nothing stored
    writeFileSync(join(dir, 'bad-time.json'), JSON.stringify({ downloadWindows: [{ days: ['mon'], start: '25:00', end: '05:00' }] }));
    const badTime = await fleetctl('tag-policies', 'set', 'lobby', join(dir, 'bad-time.json'));
    expect(badTime.code).toBe(1);
    // refused by fleetctl itself (the file named), not by the server
    expect(badTime.stderr).toContain(`${join(dir, 'bad-time.json')}: downloadWindows.0.start: a local time as HH:MM`);
    writeFileSync(join(dir, 'not-json.json'), '{ downloadWindows: ');
    const notJson = await fleetctl('tag-policies', 'set', 'lobby', join(dir, 'not-json.json'));
    expect(notJson.code).toBe(1);
    expect(notJson.stderr).toContain('is not JSON');
    const missing = await fleetctl('tag-policies', 'set', 'lobby', join(dir, 'nope.json'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no policy file');
    const tooLong = await fleetctl('tag-policies', 'set', 'x'.repeat(65), night);
    expect(tooLong.code).toBe(1);
    expect(tooLong.stderr).toContain('tag');
    const rows = server.app.fleet.db.prepare('SELECT tag FROM tag_policies').all();
    expect(rows).toEqual([{ tag: 'lobby' }]);

    const del = await fleetctl('tag-policies', 'delete', 'lobby');
    expect(del.code, del.stderr).toBe(0);
    expect(del.stdout.trim()).toBe('tag lobby: policy removed');
    const again = await fleetctl('tag-policies', 'delete', 'lobby');
    expect(again.stdout.trim()).toBe('tag lobby had no policy');
    expect(server.app.fleet.db.prepare('SELECT COUNT(*) AS n FROM tag_policies').get()).toEqual({ n: 0 });
    const audit = server.app.fleet.db.prepare("SELECT action, target FROM audit_log WHERE action LIKE 'tag_policies.%' ORDER BY id").all();
    expect(audit).toEqual([{ action: 'tag_policies.put', target: 'lobby' }, { action: 'tag_policies.delete', target: 'lobby' }]);
  }, 60_000);
});
