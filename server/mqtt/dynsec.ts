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
const TIMEOUT = 'timeout';

type Command = Record<string, unknown> & { command: string };
interface Response { command: string; error?: string; data?: unknown; correlationData?: string }

/** What one subject (a device, a role) needs done: its commands, sent together in one control message. */
export interface DynsecUnit {
  subject: string;
  /** a delete of something that is not there is fine; every other error is a refusal */
  commands: Command[];
}

export interface DynsecRefusal { subject: string; command: string; reason: string }

/**
 * A batch that mosquitto did not take whole: what it refused (with its reason) or did not answer, and
 * which subjects were applied before it stopped and which were not. The server undoes the batch (an
 * enrollment stores nothing then), so no device is left half enrolled.
 */
export class DynsecBatchError extends Error {
  constructor(readonly what: string, readonly refused: DynsecRefusal[], readonly unanswered: string[], readonly applied: string[], readonly notApplied: string[], readonly sent: string[]) {
    const list = (ids: string[]) => ids.slice(0, 5).join(', ') + (ids.length > 5 ? `, ... (${ids.length})` : '');
    const why = refused.length
      ? `refused ${refused.slice(0, 3).map((r) => `${r.command} for ${r.subject}: ${r.reason}`).join('; ')}${refused.length > 3 ? `; and ${refused.length - 3} more` : ''}`
      : `no answer for ${list(unanswered)}`;
    super(`mosquitto dynamic security: ${what}: ${why}; ${applied.length} of ${applied.length + notApplied.length} applied${notApplied.length ? `, not applied: ${list(notApplied)}` : ''}`);
  }
}

export interface DynsecOptions {
  /** how long mosquitto may take to answer one control message; past it the message is sent once more, then the batch fails naming what was not applied (ms) */
  timeoutMs?: number;
  /** most commands in one control message */
  maxChunkCommands?: number;
  /**
   * aim for control messages mosquitto answers within this time (ms). mosquitto 2.0's plugin rewrites its
   * whole JSON file after every change, so a command costs more the more clients it holds, and mosquitto
   * serves no device while it works: chunks are sized from the last chunk's time per command.
   */
  targetChunkMs?: number;
}

/** The ACL of one device's role: server/mqtt/acl.ts, written for mosquitto. */
export function deviceAcls(deviceId: string): { acltype: string; topic: string; allow: boolean; priority: number }[] {
  const send = [topics.status(deviceId), topics.telemetry(deviceId), topics.presence(deviceId)];
  const read = [topics.desired(deviceId), topics.freshness()];
  return [
    ...send.map((topic) => ({ acltype: 'publishClientSend', topic, allow: true, priority: 0 })),
    ...read.map((topic) => ({ acltype: 'subscribeLiteral', topic, allow: true, priority: 0 })),
  ];
}

/** forget a device: its client (mosquitto drops its connection) and its role; 'not found' is fine */
const forgetUnit = (deviceId: string): DynsecUnit => ({ subject: deviceId, commands: [
  { command: 'deleteClient', username: deviceId },
  { command: 'deleteRole', rolename: deviceRole(deviceId) },
] });

/** (re)create a device with a secret: forget it first, so an older session and password end */
const enrollUnit = (deviceId: string, secret: string): DynsecUnit => ({ subject: deviceId, commands: [
  ...forgetUnit(deviceId).commands,
  { command: 'createRole', rolename: deviceRole(deviceId), textname: DEVICE_TEXT, acls: deviceAcls(deviceId) },
  { command: 'createClient', username: deviceId, clientid: deviceId, password: secret, textname: DEVICE_TEXT, roles: [{ rolename: deviceRole(deviceId) }] },
] });

export class DynsecControl implements DeviceAccessSync {
  readonly acceptsKeyPairs = false;
  private readonly pending = new Map<string, { resolve: (r: Response) => void; timer: NodeJS.Timeout }>();
  private ready: Promise<void> | null = null;
  private readonly timeoutMs: number;
  private readonly maxChunkCommands: number;
  private readonly targetChunkMs: number;
  /** measured cost of one command in the last chunk (ms); grows with the plugin's file */
  private msPerCommand = 0;
  private serverUsername: string | undefined;
  /** control messages and commands sent so far (a resend counts again) */
  readonly sent = { messages: 0, commands: 0 };

  constructor(private readonly client: MqttClient, private readonly log: FastifyBaseLogger, opts: DynsecOptions | number = {}) {
    const o = typeof opts === 'number' ? { timeoutMs: opts } : opts;
    this.timeoutMs = o.timeoutMs ?? 10_000;
    this.maxChunkCommands = o.maxChunkCommands ?? 200;
    this.targetChunkMs = o.targetChunkMs ?? 1000;
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

  /** One control message; resolves with one response each, in order; an unanswered command gets error 'timeout' after waitMs. */
  private async send(commands: Command[], waitMs: number): Promise<Response[]> {
    await this.subscribed();
    const tagged = commands.map((c) => ({ ...c, correlationData: randomBytes(9).toString('base64url') }));
    const answers = tagged.map((c) => new Promise<Response>((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(c.correlationData);
        resolve({ command: c.command, error: TIMEOUT });
      }, waitMs);
      this.pending.set(c.correlationData, { resolve, timer });
    }));
    this.sent.messages++;
    this.sent.commands += tagged.length;
    this.client.publish(CONTROL, JSON.stringify({ commands: tagged }), { qos: 1 });
    return Promise.all(answers);
  }

  /**
   * One control message, answered: if mosquitto does not answer within the timeout (a lost link, a lost
   * answer) the same commands go once more (every command the server sends is safe to repeat: deletes
   * tolerate 'not found', creates follow their delete), and the first answer of either is taken.
   */
  async run(commands: Command[]): Promise<Response[]> {
    const first = this.send(commands, this.timeoutMs * 3);
    const early = await Promise.race([first, new Promise<null>((r) => setTimeout(() => r(null), this.timeoutMs).unref())]);
    if (early) return early;
    this.log.warn({ event: 'dynsec_resend', commands: commands.length, timeoutMs: this.timeoutMs }, 'mosquitto did not answer a dynamic security message in time: sending it once more');
    const second = this.send(commands, this.timeoutMs * 2);
    const [a, b] = await Promise.all([first, second]);
    return a.map((r, i) => (r.error === TIMEOUT ? b[i] : r));
  }

  /**
   * Apply many subjects' commands in bounded control messages, one after the other, each answered before
   * the next goes (chunks sized to the measured cost, see targetChunkMs). Stops at the first chunk with a
   * refused or unanswered command and throws a DynsecBatchError naming it and what was and was not applied.
   */
  async apply(units: DynsecUnit[], what: string): Promise<void> {
    const applied: string[] = [];
    let i = 0;
    let size = Math.min(8, this.maxChunkCommands); // commands; grows once a chunk's cost is known
    while (i < units.length) {
      const chunk: DynsecUnit[] = [];
      let n = 0;
      while (i < units.length && (chunk.length === 0 || n + units[i].commands.length <= size)) { n += units[i].commands.length; chunk.push(units[i++]); }
      const started = performance.now();
      const rs = await this.run(chunk.flatMap((u) => u.commands));
      const elapsed = performance.now() - started;
      const refused: DynsecRefusal[] = [];
      const unanswered: string[] = [];
      let k = 0;
      for (const u of chunk) {
        let ok = true;
        for (const c of u.commands) {
          const r = rs[k++];
          if (!r.error || (c.command.startsWith('delete') && /not found/i.test(r.error))) continue;
          ok = false;
          if (r.error === TIMEOUT) { if (!unanswered.includes(u.subject)) unanswered.push(u.subject); } else refused.push({ subject: u.subject, command: c.command, reason: r.error });
        }
        if (ok) applied.push(u.subject);
      }
      if (refused.length || unanswered.length) {
        const bad = new Set([...refused.map((r) => r.subject), ...unanswered]);
        throw new DynsecBatchError(what, refused, unanswered, applied, [...chunk.filter((u) => bad.has(u.subject)).map((u) => u.subject), ...units.slice(i).map((u) => u.subject)], units.slice(0, i).map((u) => u.subject));
      }
      this.msPerCommand = elapsed / n;
      size = Math.max(1, Math.min(this.maxChunkCommands, size * 4, Math.floor(this.targetChunkMs / Math.max(this.msPerCommand, 0.01))));
    }
  }

  /** the last chunk's cost per command (ms): how slow mosquitto's plugin has become at the fleet's size */
  costPerCommandMs(): number { return this.msPerCommand; }

  /** run, and throw on the first error (a delete of something not there is fine) */
  private async must(commands: Command[], what: string): Promise<Response[]> {
    const rs = await this.run(commands);
    const bad = rs.find((r, i) => r.error && !(commands[i].command.startsWith('delete') && /not found/i.test(r.error)));
    if (bad) throw new Error(`mosquitto dynamic security: ${what}: ${bad.command}: ${bad.error === TIMEOUT ? `no answer within ${this.timeoutMs * 3} ms (sent twice)` : bad.error}`);
    return rs;
  }

  /** A device id the server must never hand to the plugin: its own broker user (deleting it would lock the server out). */
  reservedDeviceId(deviceId: string): string | undefined {
    return deviceId === this.serverUsername ? `${deviceId} is the fleet server's own broker user on mosquitto` : undefined;
  }

  /**
   * At start: the server's own role (added to its user if missing), then drop the dynsec clients of
   * devices that hold no active secret any more (revoked while the server was down).
   */
  async init(serverUsername: string, activeSecretDevices: (deviceIds: string[]) => Set<string>): Promise<void> {
    this.serverUsername = serverUsername;
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
    await this.apply(stale.map(forgetUnit), 'remove revoked devices');
    if (stale.length) this.log.info({ event: 'dynsec_reconciled', removed: stale.length }, 'removed dynsec clients of devices without an active credential');
  }

  async secretIssued(deviceId: string, secret: string): Promise<boolean> {
    this.refuseReserved([deviceId]);
    // a new secret for a known client: delete and create again in one message, so the old session ends with the old secret
    try {
      const rs = await this.must(enrollUnit(deviceId, secret).commands, `add ${deviceId}`);
      return !rs[0].error;
    } catch (err) {
      // the server revokes the secret (access routes): take out whatever part of it the plugin applied
      await this.run(forgetUnit(deviceId).commands).catch(() => undefined);
      throw err;
    }
  }

  /**
   * An enrollment batch, in bounded control messages (see apply). If mosquitto refuses or does not answer
   * part of it, the devices already added are removed again (the server revokes the whole batch), and the
   * error names what was refused and what was not applied.
   */
  async secretsIssued(devices: { deviceId: string; secret: string }[]): Promise<void> {
    this.refuseReserved(devices.map((d) => d.deviceId));
    try {
      await this.apply(devices.map((d) => enrollUnit(d.deviceId, d.secret)), 'add devices');
    } catch (err) {
      if (!(err instanceof DynsecBatchError)) throw err;
      const undo = err.sent; // every device of every message sent, the failed one included (an unanswered one may still be applied)
      try {
        await this.apply(undo.map(forgetUnit), 'undo the refused batch');
        err.message += `; the ${undo.length} devices sent were removed again`;
      } catch (undoErr) {
        err.message += `; removing the ${undo.length} devices added or sent failed too (${(undoErr as Error).message}): they are removed at the server's next start`;
      }
      this.log.warn({ event: 'dynsec_batch_failed', refused: err.refused.length, unanswered: err.unanswered.length, applied: err.applied.length, notApplied: err.notApplied.length }, err.message);
      throw err;
    }
  }

  async revoked(deviceId: string): Promise<boolean> {
    this.refuseReserved([deviceId]);
    const [client] = await this.must(forgetUnit(deviceId).commands, `remove ${deviceId}`);
    return !client.error;
  }

  private refuseReserved(deviceIds: string[]): void {
    for (const d of deviceIds) {
      const why = this.reservedDeviceId(d);
      if (why) throw new Error(why);
    }
  }

  async close(): Promise<void> {
    for (const [id, p] of this.pending) { clearTimeout(p.timer); p.resolve({ command: '?', error: 'closed' }); this.pending.delete(id); }
  }
}
