// fleetctl tokens, enrollment-tokens, devices enroll/revoke and campaigns watch, as an operator runs
// them (child processes) against a real server on loopback, with a real agent started from the config
// `devices enroll` wrote and a real two-device fleet for the campaign.
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetAgent } from '../../device-agent/agent.ts';
import { loadAgentConfig } from '../../device-agent/config.ts';
import type { SimulatedFleet } from '../../firmware-sim/fleet.ts';
import { ApiClient, CliError } from '../../cli/api-client.ts';
import { watchCampaign } from '../../cli/commands/campaign-watch.ts';
import { brokerUrlFor } from '../../cli/commands/devices.ts';
import { runFleetctl } from '../helpers/fleetctl.ts';
import { pushBundle, startFleet, startTestServer, tempDir, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { waitFor } from '../helpers/wait.ts';

describe('fleetctl: tokens, enrollment tokens, first device, revocation, campaigns watch', { timeout: 180_000 }, () => {
  let server: TestServer;
  let fleet: SimulatedFleet | undefined;
  let agent: FleetAgent | undefined;
  const dir = tempDir('fleetctl-access-');
  const ctl = (...args: string[]) => runFleetctl(server.baseUrl, server.adminToken, ...args);
  const whoami = (token: string) => fetch(`${server.baseUrl}/v1/whoami`, { headers: { authorization: `Bearer ${token}` } });

  beforeAll(async () => {
    server = await startTestServer();
  });

  afterAll(async () => {
    await agent?.stop();
    await fleet?.stop();
    await server?.close();
  });

  it('tokens create | list | revoke: the secret works until it is revoked', async () => {
    const bad = await ctl('tokens', 'create', '--name', 'ci', '--role', 'root');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--role: .*viewer.*operator.*admin/);
    const made = await ctl('--json', 'tokens', 'create', '--name', 'ci', '--role', 'viewer', '--ttl-days', '7');
    expect(made.code, made.stderr).toBe(0);
    const t = JSON.parse(made.stdout);
    expect(t).toMatchObject({ name: 'ci', role: 'viewer', createdBy: 'bootstrap-admin', revokedAt: null });
    expect((await (await whoami(t.token)).json())).toEqual({ kind: 'token', name: 'ci', role: 'viewer', tokenId: t.tokenId });
    const human = await ctl('tokens', 'create', '--name', 'ops', '--role', 'operator');
    expect(human.stdout).toMatch(/^token [0-9a-f]{16} for ops \(operator\), no expiry\nsecret \(shown once\): \S+\n$/);
    const list = await ctl('tokens', 'list');
    expect(list.stdout.split('\n')[0]).toMatch(/^TOKEN\s+NAME\s+ROLE\s+CREATED BY\s+EXPIRES\s+REVOKED\s+LAST USED$/);
    expect(list.stdout.split('\n').filter((l) => /^[0-9a-f]{16} /.test(l))).toHaveLength(3); // bootstrap-admin, ci, ops
    expect(list.stdout).not.toContain(t.token);
    const revoked = await ctl('tokens', 'revoke', t.tokenId);
    expect(revoked.stdout).toMatch(new RegExp(`^revoked token ${t.tokenId} \\(ci, viewer\\) at \\d{4}-`));
    expect((await whoami(t.token)).status).toBe(401);
    const again = await ctl('tokens', 'revoke', 'nothex');
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/tokenId: token ids are 16 hex characters/);
  });

  it('enrollment-tokens create | revoke: a revoked token enrolls nobody', async () => {
    const made = await ctl('--json', 'enrollment-tokens', 'create', '--uses', '2', '--ttl-seconds', '600', '--id-prefix', 'cam-');
    expect(made.code, made.stderr).toBe(0);
    const t = JSON.parse(made.stdout);
    expect(t).toMatchObject({ uses: 2, idPrefix: 'cam-' });
    const bad = await ctl('enrollment-tokens', 'create', '--uses', '0');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--uses: /);
    const revoked = await ctl('enrollment-tokens', 'revoke', t.tokenId);
    expect(revoked.stdout.trim()).toBe(`revoked enrollment token ${t.tokenId}`);
    const res = await fetch(`${server.baseUrl}/v1/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ enrollmentToken: t.token, deviceIds: ['cam-1'] }) });
    expect(res.status).toBe(401);
    expect((await res.json()).error).toBe('FLEET_ERR_ENROLLMENT_REFUSED');
  });

  it('devices enroll writes the config a new device starts with; the agent enrolls itself and connects; devices revoke cuts it off', async () => {
    const out = join(dir, 'agent.json');
    const dataDir = join(dir, 'first-device');
    const r = await ctl('devices', 'enroll', 'first-1', '--out', out, '--data-dir', dataDir, '--hardware', 'cam-x', '--tags', 'lab,north');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^wrote ${out}: agent config for first-1 \\(mode 0600`));
    expect(r.stdout).toMatch(/fleet-agent enroll --config \/etc\/fleet-agent\/agent.json --token \S+ --server http:\/\/127.0.0.1:\d+ --device-id first-1 --mqtt-url mqtt:\/\/127.0.0.1:\d+ --root-public-key \S+ --data-dir /);
    expect(statSync(out).mode & 0o777).toBe(0o600);
    const written = JSON.parse(readFileSync(out, 'utf8'));
    expect(Object.keys(written).sort()).toEqual(['dataDir', 'deviceId', 'enrollmentToken', 'hardware', 'mqttUrl', 'rootPublicKey', 'serverUrl', 'tags']);
    expect(written).toMatchObject({ deviceId: 'first-1', hardware: 'cam-x', tags: ['lab', 'north'], dataDir, mqttUrl: server.mqttUrl, serverUrl: server.baseUrl, rootPublicKey: server.rootPublicKey });
    const again = await ctl('devices', 'enroll', 'first-1', '--out', out);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/exists: give --force/);

    // the device: starts from that file alone
    agent = new FleetAgent(loadAgentConfig({ file: out, env: {} }));
    await agent.start();
    await waitFor(async () => (await server.app.inject({ method: 'GET', url: '/v1/devices/first-1' })).json().online === true, 60_000, 'first-1 online');
    const cred = (await server.app.inject({ method: 'GET', url: '/v1/devices/first-1/credential' })).json();
    expect(cred).toMatchObject({ deviceId: 'first-1', enrolled: true, kind: 'ed25519' });
    const listed = await ctl('devices', '--hardware', 'cam-x');
    expect(listed.stdout.split('\n').filter((l) => l.startsWith('first-1'))).toHaveLength(1);
    const shown = await ctl('devices', 'show', 'first-1');
    expect(shown.stdout.split('\n')[0]).toMatch(/^first-1  cam-x  online  agent /);

    const rev = await ctl('devices', 'revoke', 'first-1');
    expect(rev.code, rev.stderr).toBe(0);
    expect(rev.stdout.trim()).toBe('revoked first-1 (its MQTT session was ended); enroll it again to bring it back');
    expect((await server.app.inject({ method: 'GET', url: '/v1/devices/first-1/credential' })).json()).toMatchObject({ enrolled: false, kind: null });
    await waitFor(async () => (await server.app.inject({ method: 'GET', url: '/v1/devices/first-1' })).json().online === false, 30_000, 'first-1 offline');
    await agent.stop();
    agent = undefined;
  });

  it('the broker URL a device gets follows the server URL', () => {
    expect(brokerUrlFor('http://127.0.0.1:8080', 1883)).toBe('mqtt://127.0.0.1:1883');
    expect(brokerUrlFor('https://fleet.example.com', 8883)).toBe('mqtts://fleet.example.com:8883');
    expect(brokerUrlFor('http://[::1]:8080/', 1883)).toBe('mqtt://[::1]:1883');
  });

  it('campaigns watch: plain lines off a terminal, exit 0 once the campaign completed', async () => {
    fleet = await startFleet(server, { count: 2, hardware: () => 'cam-w' });
    await waitFor(async () => (await server.app.inject({ method: 'GET', url: '/v1/devices?hardware=cam-w' })).json().devices.length === 2, 60_000, 'two devices');
    const v = await pushBundle(server, 'watched', tinyClassifier(21), { quantize: 'none', healthCheck: { latencyBudgetMs: 5000 } });
    const res = await server.app.inject({ method: 'POST', url: '/v1/campaigns', payload: { manifestSha256: v.manifestSha256, target: { hardware: ['cam-w'] }, waves: [{ percent: 100, soakSeconds: 0, minReporting: 0 }] } });
    expect(res.statusCode, res.body).toBe(201);
    const w = await ctl('campaigns', 'watch', res.json().campaignId, '--interval', '0.2', '--timeout', '120');
    expect(w.code, w.stderr).toBe(0);
    const lines = w.stdout.trim().split('\n');
    expect(lines.at(-1)).toMatch(/^\S+Z  completed  wave 1\/1  updated 2$/);
    expect(w.stdout).not.toContain('\r');
    const shown = await ctl('campaigns', 'show', res.json().campaignId);
    expect(shown.stdout.split('\n')[1]).toBe('actions: revert');
  });

  it('campaigns watch on a terminal redraws one bar per status, and exits non-zero when the campaign is aborted', async () => {
    const v = await pushBundle(server, 'watched', tinyClassifier(22), { quantize: 'none', healthCheck: { latencyBudgetMs: 5000 } });
    const res = await server.app.inject({ method: 'POST', url: '/v1/campaigns', payload: { manifestSha256: v.manifestSha256, target: { hardware: ['cam-w'] }, waves: [{ percent: 100, soakSeconds: 3600 }] } });
    const id = res.json().campaignId as string;
    const chunks: string[] = [];
    const out: string[] = [];
    const ctx = {
      io: { json: false, tty: true, write: (s: string) => chunks.push(s), out: (l: string) => out.push(l), err: () => {} },
      api: new ApiClient({ serverUrl: server.baseUrl, token: server.adminToken }),
      globals: { server: server.baseUrl, token: server.adminToken, json: false },
    };
    // the operator acts while the watch sleeps: pause, then abort
    const steps = ['pause', 'abort'];
    const sleep = async () => { await server.app.inject({ method: 'POST', url: `/v1/campaigns/${id}/${steps.shift()}` }); };
    const err = await watchCampaign(ctx, id, { intervalMs: 1, sleep }).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(CliError);
    expect((err as CliError).code).toBe('FLEETCTL_ERR_CAMPAIGN_ABORTED');
    expect(out).toEqual([]);
    const text = chunks.join('');
    // three looks: running, paused, aborted; each status change starts a new line, the last ends one
    expect(chunks.filter((c) => c.startsWith('\r['))).toHaveLength(3);
    const shownLines = text.split('\n').map((l) => l.split('\r').at(-1)!.trimEnd());
    expect(shownLines.map((l) => l.replace(/^\[[#-]{30}\] \d+\/2  /, '').split('  ')[0])).toEqual(['running', 'paused', 'aborted', '']);
  });
});
