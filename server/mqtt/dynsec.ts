// mosquitto's dynamic security plugin, kept in step with the server's device credentials, live, over
// the plugin's control topic ($CONTROL/dynamic-security/v1, JSON commands, answers on .../response).
//
// Each device is a dynsec client: username = the device id, bound to client id = the device id (so no
// one else can take its session over), password = its bearer secret (mosquitto stores only a salted
// PBKDF2 hash), and one role of its own, `fleet-device-<id>`, whose ACL is the fleet topic ACL of
// server/mqtt/acl.ts: send on its own status, telemetry and presence topics, subscribe to its own
// desired topic and the fleet-wide freshness topic. Everything else stays at dynsec's default (deny
// sending and subscribing), so `#`, `$SYS/#` and other devices' topics are refused by mosquitto itself.
// Enrollment adds the client and role, rotation sets the new password and ends the old session
// (deleteClient + createClient: mosquitto drops a deleted client's connection), revocation deletes both.
//
// The server's own user is the plugin's admin (made by `mosquitto_ctrl dynsec init`); at start it gives
// itself the role `fleet-server` (publish desired states and the freshness statement, read the fleet
// topics), and removes the clients of devices whose credential is no longer active.
import { randomBytes } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import type { FastifyBaseLogger } from 'fastify';
import { TOPIC_ROOT, topics } from '../../shared/topics.ts';
import type { DeviceAccessSync } from './broker.ts';

const CONTROL = '$CONTROL/dynamic-security/v1';
const RESPONSE = `${CONTROL}/response`;
export const SERVER_ROLE = 'fleet-server';
export const deviceRole = (deviceId: string) => `fleet-device-${deviceId}`;
const DEVICE_TEXT = 'fleet device';

type Command = Record<string, unknown> & { command: string };
interface Response { command: string; error?: string; data?: unknown; correlationData?: string }

/** The ACL of one device's role: server/mqtt/acl.ts, written for mosquitto. */
export function deviceAcls(deviceId: string): { acltype: string; topic: string; allow: boolean; priority: number }[] {
  const send = [topics.status(deviceId), topics.telemetry(deviceId), topics.presence(deviceId)];
  const read = [topics.desired(deviceId), topics.freshness()];
  return [
    ...send.map((topic) => ({ acltype: 'publishClientSend', topic, allow: true, priority: 0 })),
    ...read.map((topic) => ({ acltype: 'subscribeLiteral', topic, allow: true, priority: 0 })),
  ];
}

export class DynsecControl implements DeviceAccessSync {
  readonly acceptsKeyPairs = false;
  private readonly pending = new Map<string, { resolve: (r: Response) => void; timer: NodeJS.Timeout }>();
  private ready: Promise<void> | null = null;

  constructor(private readonly client: MqttClient, private readonly log: FastifyBaseLogger, private readonly timeoutMs = 10_000) {
    client.on('message', (topic, payload) => {
      if (topic !== RESPONSE) return;
      let body: { responses?: Response[] };
      try { body = JSON.parse(payload.toString('utf8')); } catch { return; }
      for (const r of body.responses ?? []) {
        const p = r.correlationData ? this.pending.get(r.correlationData) : undefined;
        if (!p) continue;
        clearTimeout(p.timer);
        this.pending.delete(r.correlationData!);
        p.resolve(r);
      }
    });
  }

  /** subscribe to the answers (again after every reconnect: mqtt.js resubscribes) */
  private subscribed(): Promise<void> {
    this.ready ??= new Promise((resolve, reject) => this.client.subscribe(RESPONSE, { qos: 1 }, (err, granted) => {
      if (err || granted?.[0]?.qos === 128) { this.ready = null; return reject(new Error(`cannot subscribe to ${RESPONSE}: is the server's broker user the dynamic security admin?`)); }
      resolve();
    }));
    return this.ready;
  }

  /** Send commands in one message; resolves with one response each (error included), in order. */
  async run(commands: Command[]): Promise<Response[]> {
    await this.subscribed();
    const tagged = commands.map((c) => ({ ...c, correlationData: randomBytes(9).toString('base64url') }));
    const answers = tagged.map((c) => new Promise<Response>((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(c.correlationData);
        resolve({ command: c.command, error: `no answer from mosquitto's dynamic security plugin within ${this.timeoutMs} ms` });
      }, this.timeoutMs);
      this.pending.set(c.correlationData, { resolve, timer });
    }));
    this.client.publish(CONTROL, JSON.stringify({ commands: tagged }), { qos: 1 });
    return Promise.all(answers);
  }

  private async must(commands: Command[], what: string, tolerate: RegExp = /^$/): Promise<Response[]> {
    const rs = await this.run(commands);
    const bad = rs.find((r) => r.error && !tolerate.test(r.error));
    if (bad) throw new Error(`mosquitto dynamic security: ${what}: ${bad.command}: ${bad.error}`);
    return rs;
  }

  /**
   * At start: the server's own role (added to its user if missing), then drop the dynsec clients of
   * devices that hold no active secret any more (revoked while the server was down).
   */
  async init(serverUsername: string, activeSecretDevices: (deviceIds: string[]) => Set<string>): Promise<void> {
    const acls = [
      { acltype: 'publishClientSend', topic: `${TOPIC_ROOT}/+/desired`, allow: true },
      { acltype: 'publishClientSend', topic: topics.freshness(), allow: true },
      { acltype: 'subscribePattern', topic: `${TOPIC_ROOT}/#`, allow: true },
      { acltype: 'publishClientReceive', topic: `${TOPIC_ROOT}/#`, allow: true },
    ];
    const [role] = await this.run([{ command: 'getRole', rolename: SERVER_ROLE }]);
    if (role.error) await this.must([{ command: 'createRole', rolename: SERVER_ROLE, textname: 'fleet server', acls }], 'server role');
    const hasRole = async () => {
      const [me] = await this.must([{ command: 'getClient', username: serverUsername }], 'server user');
      return ((me.data as { client?: { roles?: { rolename: string }[] } })?.client?.roles ?? []).some((r) => r.rolename === SERVER_ROLE);
    };
    if (!(await hasRole())) {
      // adding a role to a connected client makes mosquitto 2.0 drop it (here: ourselves, so the answer may
      // be 'Internal error' while the role was added); ask again once we are back
      await this.run([{ command: 'addClientRole', username: serverUsername, rolename: SERVER_ROLE }]);
      if (!(await hasRole())) throw new Error(`mosquitto dynamic security: could not give ${serverUsername} the role ${SERVER_ROLE}`);
      this.log.info({ event: 'dynsec_server_role', username: serverUsername }, `gave the server's broker user the role ${SERVER_ROLE}`);
    }
    const [list] = await this.must([{ command: 'listClients', verbose: true, count: -1, offset: 0 }], 'list clients');
    const clients = ((list.data as { clients?: { username: string; textname?: string }[] })?.clients ?? [])
      .filter((c) => c.textname === DEVICE_TEXT).map((c) => c.username);
    const active = activeSecretDevices(clients);
    const stale = clients.filter((d) => !active.has(d));
    for (let i = 0; i < stale.length; i += 100) {
      await this.must(stale.slice(i, i + 100).flatMap((d) => [{ command: 'deleteClient', username: d }, { command: 'deleteRole', rolename: deviceRole(d) }]), 'remove revoked devices', /not found/i);
    }
    if (stale.length) this.log.info({ event: 'dynsec_reconciled', removed: stale.length }, 'removed dynsec clients of devices without an active credential');
  }

  async secretIssued(deviceId: string, secret: string): Promise<boolean> {
    // a new secret for a known client: delete and create again, so the old session ends with the old secret
    const [known] = await this.must([
      { command: 'deleteClient', username: deviceId },
      { command: 'deleteRole', rolename: deviceRole(deviceId) },
    ], `forget ${deviceId}`, /not found/i);
    await this.must([
      { command: 'createRole', rolename: deviceRole(deviceId), textname: DEVICE_TEXT, acls: deviceAcls(deviceId) },
      { command: 'createClient', username: deviceId, clientid: deviceId, password: secret, textname: DEVICE_TEXT, roles: [{ rolename: deviceRole(deviceId) }] },
    ], `add ${deviceId}`);
    return !known.error;
  }

  /** An enrollment batch: 100 devices per control message (one round trip each, not two per device). */
  async secretsIssued(devices: { deviceId: string; secret: string }[]): Promise<void> {
    for (let i = 0; i < devices.length; i += 100) {
      const chunk = devices.slice(i, i + 100);
      await this.must(chunk.flatMap((d) => [{ command: 'deleteClient', username: d.deviceId }, { command: 'deleteRole', rolename: deviceRole(d.deviceId) }]), 'forget devices', /not found/i);
      await this.must(chunk.flatMap((d) => [
        { command: 'createRole', rolename: deviceRole(d.deviceId), textname: DEVICE_TEXT, acls: deviceAcls(d.deviceId) },
        { command: 'createClient', username: d.deviceId, clientid: d.deviceId, password: d.secret, textname: DEVICE_TEXT, roles: [{ rolename: deviceRole(d.deviceId) }] },
      ]), 'add devices');
    }
  }

  async revoked(deviceId: string): Promise<boolean> {
    const [client] = await this.must([
      { command: 'deleteClient', username: deviceId },
      { command: 'deleteRole', rolename: deviceRole(deviceId) },
    ], `remove ${deviceId}`, /not found/i);
    return !client.error;
  }

  async close(): Promise<void> {
    for (const [id, p] of this.pending) { clearTimeout(p.timer); p.resolve({ command: '?', error: 'closed' }); this.pending.delete(id); }
  }
}
