// mosquitto's dynamic security kept in step in bounded chunks: a real mosquitto, a real server. An
// enrollment batch larger than one control message is applied whole (counted back through the plugin's
// own listClients/getClient), a command mosquitto refuses is reported with mosquitto's reason and what was
// and was not applied, a batch mosquitto does not answer (SIGSTOP) fails with 503 naming the devices and
// leaves none half enrolled (revoked in the server, removed from the plugin once mosquitto runs again), and
// a device id naming the server's own broker user is refused before anything is stored.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt, { type MqttClient } from 'mqtt';
import pino from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import { startTestServer, type TestServer } from '../helpers/harness.ts';
import { startMosquitto, type Mosquitto } from '../helpers/mosquitto.ts';
import { DynsecBatchError, DynsecControl, type DynsecUnit } from '../../server/mqtt/dynsec.ts';
import { endClient, tryConnect, waitFor } from '../security/helpers.ts';

let mosquitto: Mosquitto;
let server: TestServer;
let admin: MqttClient;
let control: DynsecControl;
const clients: MqttClient[] = [];
const log = pino({ level: 'silent' }) as unknown as FastifyBaseLogger;

/** every client the plugin holds, by username */
async function dynsecClients(): Promise<string[]> {
  const [r] = await control.run([{ command: 'listClients', verbose: false, count: -1, offset: 0 }]);
  expect(r.error).toBeUndefined();
  return (r.data as { clients: string[] }).clients;
}
async function dynsecRoles(): Promise<string[]> {
  const [r] = await control.run([{ command: 'listRoles', verbose: false, count: -1, offset: 0 }]);
  expect(r.error).toBeUndefined();
  return (r.data as { roles: string[] }).roles;
}
async function enrollmentToken(uses: number): Promise<string> {
  const tok = await server.app.inject({ method: 'POST', url: '/v1/enrollment-tokens', payload: { uses, ttlSeconds: 600 } });
  expect(tok.statusCode, tok.body).toBe(201);
  return tok.json().token;
}

beforeAll(async () => {
  mosquitto = await startMosquitto();
  server = await startTestServer({ config: {
    brokerMode: 'external', brokerUrls: mosquitto.url, brokerUsername: mosquitto.adminUser, brokerPassword: mosquitto.adminPassword, brokerDeviceAuth: 'dynsec',
    brokerControlTimeoutMs: 1500,
  } });
  // a second admin session of our own, to count what the plugin holds
  admin = await mqtt.connectAsync(mosquitto.url, { username: mosquitto.adminUser, password: mosquitto.adminPassword, clientId: 'test-dynsec-reader', reconnectPeriod: 0 });
  control = new DynsecControl(admin, log, { timeoutMs: 5000 });
}, 60_000);

afterAll(async () => {
  const pid = mosquitto?.pid();
  if (pid) try { process.kill(pid, 'SIGCONT'); } catch { /* gone */ }
  await Promise.all([...clients, admin].map(endClient));
  await server?.close();
  await mosquitto?.stop();
}, 30_000);

describe('mosquitto dynamic security in bounded chunks', () => {
  it('an enrollment batch larger than one control message is applied whole', async () => {
    const access = server.app.fleet.broker.deviceAccess as DynsecControl;
    const before = { ...access.sent };
    const ids = Array.from({ length: 60 }, (_, i) => `batch-${String(i).padStart(3, '0')}`);
    const r = await server.anonInject({ method: 'POST', url: '/v1/enroll', payload: { enrollmentToken: await enrollmentToken(60), deviceIds: ids } });
    expect(r.statusCode, r.body).toBe(201);
    const secrets = new Map((r.json().devices as { deviceId: string; secret: string }[]).map((d) => [d.deviceId, d.secret]));
    expect(secrets.size).toBe(60);
    // 4 commands per device (delete client, delete role, create role, create client), in several messages of at most 200
    const messages = access.sent.messages - before.messages;
    expect(access.sent.commands - before.commands).toBe(240);
    expect(messages).toBeGreaterThan(1);
    expect(messages).toBeLessThanOrEqual(240 / 4); // never one message per device or worse: no resends here
    // the plugin holds all 60, each bound to its own client id and role
    const held = (await dynsecClients()).filter((u) => u.startsWith('batch-'));
    expect(held.sort()).toEqual(ids);
    expect((await dynsecRoles()).filter((u) => u.startsWith('fleet-device-batch-')).length).toBe(60);
    const [one] = await control.run([{ command: 'getClient', username: 'batch-059' }]);
    const c = (one.data as { client: { clientid: string; roles: { rolename: string }[] } }).client;
    expect(c.clientid).toBe('batch-059');
    expect(c.roles.map((x) => x.rolename)).toEqual(['fleet-device-batch-059']);
    // first and last can connect with their secrets, and a wrong one cannot
    for (const d of ['batch-000', 'batch-059']) {
      const ok = await tryConnect(mosquitto.url, { clientId: d, username: d, password: secrets.get(d), reconnectPeriod: 0 });
      expect(ok.ok, d).toBe(true);
      if (ok.ok) clients.push(ok.client);
    }
    const bad = await tryConnect(mosquitto.url, { clientId: 'batch-001', username: 'batch-001', password: secrets.get('batch-000'), reconnectPeriod: 0 });
    expect(bad.ok).toBe(false);
  }, 60_000);

  it('a command mosquitto refuses is reported with its reason, and what was applied before it and what was not', async () => {
    const ctl = new DynsecControl(admin, log, { timeoutMs: 5000, maxChunkCommands: 4 });
    const role = (n: number): DynsecUnit => ({ subject: `probe-role-${n}`, commands: [{ command: 'createRole', rolename: `probe-role-${n}` }] });
    const units: DynsecUnit[] = [
      ...[0, 1, 2, 3, 4, 5].map(role),
      // a client naming a role that does not exist: mosquitto refuses it
      { subject: 'probe-bad', commands: [{ command: 'createClient', username: 'probe-bad', password: 'x'.repeat(20), roles: [{ rolename: 'no-such-role' }] }] },
      ...[6, 7, 8].map(role),
    ];
    const err = await ctl.apply(units, 'probe batch').then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(DynsecBatchError);
    const e = err as DynsecBatchError;
    expect(e.refused).toEqual([{ subject: 'probe-bad', command: 'createClient', reason: 'Role not found' }]);
    expect(e.unanswered).toEqual([]);
    // chunks of 4 commands: [0-3], [4, 5, bad, 6]: 6 was in the refused chunk and applied; 7 and 8 never sent
    expect(e.applied).toEqual(['probe-role-0', 'probe-role-1', 'probe-role-2', 'probe-role-3', 'probe-role-4', 'probe-role-5', 'probe-role-6']);
    expect(e.notApplied).toEqual(['probe-bad', 'probe-role-7', 'probe-role-8']);
    expect(e.message).toBe('mosquitto dynamic security: probe batch: refused createClient for probe-bad: Role not found; 7 of 10 applied, not applied: probe-bad, probe-role-7, probe-role-8');
    expect(ctl.sent).toEqual({ messages: 2, commands: 8 });
    // counted back: exactly the applied roles exist, and no client probe-bad
    expect((await dynsecRoles()).filter((r) => r.startsWith('probe-role-')).sort()).toEqual(e.applied);
    expect(await dynsecClients()).not.toContain('probe-bad');
  }, 60_000);

  it('a batch mosquitto does not answer fails with 503 naming the devices, and leaves none half enrolled', async () => {
    const ids = Array.from({ length: 12 }, (_, i) => `stuck-${String(i).padStart(2, '0')}`);
    const token = await enrollmentToken(12);
    const pid = mosquitto.pid()!;
    process.kill(pid, 'SIGSTOP');
    let r;
    try {
      r = await server.anonInject({ method: 'POST', url: '/v1/enroll', payload: { enrollmentToken: token, deviceIds: ids } });
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    expect(r.statusCode, r.body).toBe(503);
    expect(r.json().error).toBe('FLEET_ERR_BROKER_UNAVAILABLE');
    const msg = r.json().message as string;
    // the first chunk (8 commands: 2 devices) was sent twice and never answered; nothing was applied
    expect(msg).toContain('the external broker did not take the change (enrollment): mosquitto dynamic security: add devices: no answer for stuck-00, stuck-01; 0 of 12 applied, not applied: stuck-00, stuck-01, stuck-02, stuck-03, stuck-04, ... (12)');
    // none of them holds a credential in the server
    for (const d of ids) {
      const s = await server.app.inject({ method: 'GET', url: `/v1/devices/${d}/credential` });
      expect(s.json().enrolled, d).toBe(false);
    }
    // mosquitto runs again: the messages it had not read apply, then the undo removes what they added
    await waitFor(async () => (await dynsecClients()).filter((u) => u.startsWith('stuck-')).length === 0 && !(await dynsecRoles()).some((x) => x.startsWith('fleet-device-stuck-')), 20_000);
    // and the server still works through the plugin afterwards
    const again = await server.anonInject({ method: 'POST', url: '/v1/enroll', payload: { enrollmentToken: await enrollmentToken(1), deviceIds: ['after-stuck'] } });
    expect(again.statusCode, again.body).toBe(201);
    expect(await dynsecClients()).toContain('after-stuck');
  }, 90_000);

  it("a device id naming the server's own broker user is refused before anything is stored", async () => {
    const r = await server.anonInject({ method: 'POST', url: '/v1/enroll', payload: { enrollmentToken: await enrollmentToken(2), deviceIds: ['ok-device', mosquitto.adminUser] } });
    expect(r.statusCode, r.body).toBe(409);
    expect(r.json().error).toBe('FLEET_ERR_DEVICE_ID_RESERVED');
    const rv = await server.app.inject({ method: 'POST', url: `/v1/devices/${mosquitto.adminUser}/revoke` });
    expect(rv.statusCode, rv.body).toBe(409);
    expect((await server.app.inject({ method: 'GET', url: '/v1/devices/ok-device/credential' })).json().enrolled).toBe(false);
    const [me] = await control.run([{ command: 'getClient', username: mosquitto.adminUser }]);
    expect(me.error).toBeUndefined();
  }, 30_000);
});
