// Device credentials and the per-device topic ACL on a NATS cluster's MQTT listener, kept in step by
// the server: it writes the cluster's users file (a NATS config include holding one `authorization`
// block) and tells every node to reload it (SIGHUP, what `nats-server --signal reload` sends). A node
// drops the connections of users the reload removed, so revocation ends a session at once.
//
// Each device is a user (username = device id, password = its bearer secret, MQTT connections only)
// allowed to publish on its own status, telemetry and presence subjects and to subscribe to its own
// desired subject, the freshness subject and `$MQTT.sub.>` (where nats-server 2.9 delivers QoS 1
// messages to MQTT sessions; an MQTT client cannot name a `$MQTT` topic itself, so this opens nothing
// else). MQTT topics are NATS subjects with `/` as `.` (and a `.` in a device id as `//`).
//
// The state (device -> secret) lives in `<usersFile>.json` beside the generated file, both 0600: NATS
// compares passwords in clear or as bcrypt, and this repository has no bcrypt, so this file holds the
// device secrets in clear (docs/brokers.md). The server's own user is written from its config.
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { FastifyBaseLogger } from 'fastify';
import { TOPIC_ROOT, topics } from '../../shared/topics.ts';
import type { DeviceAccessSync } from './broker.ts';

/** An MQTT topic (or filter) as the NATS subject nats-server maps it to. */
export function natsSubject(topic: string): string {
  return topic.split('/').map((level) => (level === '#' ? '>' : level === '+' ? '*' : level.replace(/\./g, '//'))).join('.');
}

const quote = (s: string) => JSON.stringify(s);

export interface NatsAuthOptions {
  usersFile: string;
  /** pid files of the nodes to reload (same machine); a node that is down is skipped */
  pidFiles: string[];
  serverUser: string;
  serverPassword: string;
  log: FastifyBaseLogger;
  /** how long a reload takes to apply after the signal (nats-server reloads in a few ms) */
  settleMs?: number;
}

export class NatsUsersFile implements DeviceAccessSync {
  readonly acceptsKeyPairs = false;
  private readonly devices: Map<string, string>;
  private pending: Promise<void> | null = null;

  constructor(private readonly opts: NatsAuthOptions) {
    const state = `${opts.usersFile}.json`;
    this.devices = new Map(existsSync(state) ? Object.entries(JSON.parse(readFileSync(state, 'utf8')) as Record<string, string>) : []);
  }

  /** At start: drop devices whose credential is no longer active, write the file, reload every node. */
  async init(activeSecretDevices: (deviceIds: string[]) => Set<string>): Promise<void> {
    const active = activeSecretDevices([...this.devices.keys()]);
    for (const d of [...this.devices.keys()]) if (!active.has(d)) this.devices.delete(d);
    await this.apply();
  }

  async secretIssued(deviceId: string, secret: string): Promise<boolean> {
    const known = this.devices.has(deviceId);
    this.devices.set(deviceId, secret);
    await this.apply();
    return known;
  }

  /** an enrollment batch: one write and one reload */
  async secretsIssued(devices: { deviceId: string; secret: string }[]): Promise<void> {
    for (const d of devices) this.devices.set(d.deviceId, d.secret);
    await this.apply();
  }

  async revoked(deviceId: string): Promise<boolean> {
    const known = this.devices.delete(deviceId);
    await this.apply();
    return known;
  }

  /**
   * A device id the server must never write as a device user: its own NATS user. A second user of that
   * name makes the include invalid, so every later reload fails and revocations stop reaching the
   * cluster (the enrollment and revoke routes answer 409 FLEET_ERR_DEVICE_ID_RESERVED).
   */
  reservedDeviceId(deviceId: string): string | undefined {
    return deviceId === this.opts.serverUser ? `${deviceId} is the fleet server's own user on the NATS cluster` : undefined;
  }

  /** the generated NATS config include */
  render(): string {
    const server = `    { user: ${quote(this.opts.serverUser)}, password: ${quote(this.opts.serverPassword)}, permissions: { `
      + `publish: { allow: [${quote(natsSubject(`${TOPIC_ROOT}/+/desired`))}, ${quote(natsSubject(topics.freshness()))}] }, `
      + `subscribe: { allow: [${quote(natsSubject(`${TOPIC_ROOT}/#`))}, "$MQTT.sub.>"] } } }`;
    // the server's own user is never written twice (a state file from before the check may name it)
    const lines = [...this.devices].filter(([id]) => id !== this.opts.serverUser).map(([id, secret]) => {
      const pub = [topics.status(id), topics.telemetry(id), topics.presence(id)].map((t) => quote(natsSubject(t)));
      const sub = [topics.desired(id), topics.freshness()].map((t) => quote(natsSubject(t)));
      return `    { user: ${quote(id)}, password: ${quote(secret)}, allowed_connection_types: ["MQTT"], permissions: { publish: { allow: [${pub.join(', ')}] }, subscribe: { allow: [${sub.join(', ')}, "$MQTT.sub.>"] } } }`;
    });
    return `# written by the fleet server (server/mqtt/nats-auth.ts): do not edit, it is rewritten on every enrollment, rotation and revocation\nauthorization {\n  users = [\n${[server, ...lines].join('\n')}\n  ]\n}\n`;
  }

  /** Write and reload, coalescing the changes made in the same tick (an enrollment batch is one reload). */
  private apply(): Promise<void> {
    this.pending ??= new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
      this.pending = null;
      this.write(`${this.opts.usersFile}.json`, JSON.stringify(Object.fromEntries(this.devices)));
      this.write(this.opts.usersFile, this.render());
      let reloaded = 0;
      for (const f of this.opts.pidFiles) {
        try {
          process.kill(Number(readFileSync(f, 'utf8').trim()), 'SIGHUP');
          reloaded++;
        } catch (err) {
          this.opts.log.warn({ pidFile: f, err: (err as Error).message, event: 'nats_reload_skipped' }, 'a NATS node could not be told to reload (down?); it reads the file when it starts');
        }
      }
      if (reloaded === 0) throw new Error(`no NATS node could be told to reload (${this.opts.pidFiles.join(', ')})`);
      await new Promise((r) => setTimeout(r, this.opts.settleMs ?? 150));
    });
    return this.pending;
  }

  private write(file: string, text: string): void {
    const tmp = `${file}.tmp`;
    writeFileSync(tmp, text, { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, file);
  }
}
