// A real NATS JetStream cluster (3 nodes unless told otherwise) with its MQTT listener (Debian's /usr/sbin/nats-server, .ci/run
// installs it), on loopback and free ports, in its own temp folder. Every node includes one users file
// (users.conf) that the fleet server rewrites (brokerDeviceAuth 'nats'); until then it holds only the
// server's user. A node can be SIGKILLed and started again on the same ports and store.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, stopChild, waitForPort } from './mosquitto.ts';

export const NATS_SERVER = '/usr/sbin/nats-server';
export const natsAvailable = () => existsSync(NATS_SERVER);

export interface NatsNode { name: string; mqttUrl: string; mqttPort: number; pidFile: string; monitorPort: number }

export interface NatsCluster {
  dir: string;
  nodes: NatsNode[];
  usersFile: string;
  pidFiles: string[];
  serverUser: string;
  serverPassword: string;
  /** every node's MQTT URL, comma-separated (an agent's mqttUrl; the server's brokerUrls) */
  urls: string;
  kill(i: number, signal?: NodeJS.Signals): Promise<void>;
  start(i: number): Promise<void>;
  /** waits until JetStream has a meta leader and the MQTT listener answers on every running node */
  ready(): Promise<void>;
  log(i: number): string;
  stop(): Promise<void>;
}

/**
 * The `mqtt {}` options of nats-server 2.9.10 that shape how MQTT state lives in JetStream
 * (docs/brokers.md "Tuning the cluster"). Defaults here: streams and consumers R3 (sessions, retained
 * messages, QoS 1 messages and the server's own subscriptions survive a node). Each QoS 1 subscription
 * is a consumer (an R3 consumer is a Raft group of its own), so devices subscribe at QoS 0 on NATS
 * (agent mqttSubscribeQos 0): the consumers left are the fleet server's three.
 */
export interface NatsMqttOptions {
  streamReplicas?: number;
  consumerReplicas?: number;
  consumerMemoryStorage?: boolean;
  /** e.g. "5m": consumers of sessions gone this long are removed */
  consumerInactiveThreshold?: string;
  maxAckPending?: number;
  /** e.g. "30s": a QoS 1 message not PUBACKed this long is sent again */
  ackWait?: string;
}

/** the fleet server's brokerPublishConnections on a cluster started here (one retained publish per connection at a time on NATS) */
export const NATS_PUBLISH_CONNECTIONS = 8;

export const NATS_MQTT_DEFAULTS: NatsMqttOptions = { streamReplicas: 3, consumerReplicas: 3 };

/** the agent's mqttSubscribeQos on a NATS cluster started here (no JetStream consumer per device) */
export const NATS_DEVICE_SUBSCRIBE_QOS = 0;

/** the `mqtt {}` block's tuning fields, in nats-server's syntax */
export function natsMqttOptionLines(o: NatsMqttOptions): string[] {
  return [
    ...(o.streamReplicas !== undefined ? [`stream_replicas: ${o.streamReplicas}`] : []),
    ...(o.consumerReplicas !== undefined ? [`consumer_replicas: ${o.consumerReplicas}`] : []),
    ...(o.consumerMemoryStorage !== undefined ? [`consumer_memory_storage: ${o.consumerMemoryStorage}`] : []),
    ...(o.consumerInactiveThreshold !== undefined ? [`consumer_inactive_threshold: ${JSON.stringify(o.consumerInactiveThreshold)}`] : []),
    ...(o.maxAckPending !== undefined ? [`max_ack_pending: ${o.maxAckPending}`] : []),
    ...(o.ackWait !== undefined ? [`ack_wait: ${JSON.stringify(o.ackWait)}`] : []),
  ];
}

export async function startNatsCluster(opts: { maxPayloadBytes?: number; mqtt?: NatsMqttOptions; /** 1-5, default 3 */ nodes?: number } = {}): Promise<NatsCluster> {
  const count = opts.nodes ?? 3;
  if (!Number.isInteger(count) || count < 1 || count > 5) throw new Error(`a NATS cluster here has 1 to 5 nodes, not ${count}`);
  // streams cannot have more replicas than there are nodes
  const mqttOptions = { ...NATS_MQTT_DEFAULTS, streamReplicas: Math.min(3, count), consumerReplicas: Math.min(3, count), ...opts.mqtt };
  if (!natsAvailable()) throw new Error('nats-server is not installed (apt-get install nats-server; .ci/run does it)');
  const dir = mkdtempSync(join(tmpdir(), 'fleet-nats-'));
  const serverUser = 'fleet-server';
  const serverPassword = `pw-${Math.random().toString(36).slice(2)}${Date.now().toString(36)}`;
  const usersFile = join(dir, 'users.conf');
  writeFileSync(usersFile, `authorization {\n  users = [\n    { user: ${JSON.stringify(serverUser)}, password: ${JSON.stringify(serverPassword)} }\n  ]\n}\n`, { mode: 0o600 });
  const ports = await Promise.all(Array.from({ length: count }, async () => ({ client: await freePort(), route: await freePort(), mqtt: await freePort(), monitor: await freePort() })));
  const routes = ports.map((p) => `nats-route://127.0.0.1:${p.route}`).join(', ');
  const nodes: NatsNode[] = ports.map((p, i) => {
    const name = `n${i + 1}`;
    const pidFile = join(dir, `${name}.pid`);
    writeFileSync(join(dir, `${name}.conf`), [
      `server_name: ${name}`,
      `listen: 127.0.0.1:${p.client}`,
      `http: 127.0.0.1:${p.monitor}`,
      `pid_file: ${JSON.stringify(pidFile)}`,
      ...(opts.maxPayloadBytes ? [`max_payload: ${opts.maxPayloadBytes}`] : []),
      `jetstream { store_dir: ${JSON.stringify(join(dir, `js-${name}`))} }`,
      ...(count > 1 ? [`cluster { name: fleet, listen: 127.0.0.1:${p.route}, routes: [${routes}] }`] : []),
      // MQTT streams (sessions, retained messages, QoS 1 in flight) replicated on all three nodes
      `mqtt { listen: 127.0.0.1:${p.mqtt}, ${natsMqttOptionLines(mqttOptions).join(', ')} }`,
      `include ./users.conf`,
    ].join('\n') + '\n');
    return { name, mqttUrl: `mqtt://127.0.0.1:${p.mqtt}`, mqttPort: p.mqtt, pidFile, monitorPort: p.monitor };
  });
  const children: (ChildProcess | null)[] = ports.map(() => null);
  const logs = ports.map(() => '');
  const start = async (i: number) => {
    const child = spawn(NATS_SERVER, ['-c', join(dir, `n${i + 1}.conf`)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const add = (b: Buffer) => { logs[i] = (logs[i] + b.toString()).slice(-30_000); };
    child.stdout!.on('data', add);
    child.stderr!.on('data', add);
    children[i] = child;
    await waitForPort(ports[i].monitor, 15_000);
  };
  await Promise.all(ports.map((_p, i) => start(i)));
  const cluster: NatsCluster = {
    dir, nodes, usersFile, pidFiles: nodes.map((n) => n.pidFile), serverUser, serverPassword,
    urls: nodes.map((n) => n.mqttUrl).join(','),
    async kill(i, signal = 'SIGKILL') {
      const c = children[i];
      if (c) await stopChild(c, 5000, signal);
      children[i] = null;
    },
    start,
    async ready() {
      const until = Date.now() + 60_000;
      for (const [i, p] of ports.entries()) {
        if (!children[i]) continue;
        for (;;) {
          const ok = await fetch(`http://127.0.0.1:${p.monitor}/healthz?js-enabled-only=true`, { signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false);
          const leader = await fetch(`http://127.0.0.1:${p.monitor}/jsz`, { signal: AbortSignal.timeout(2000) })
            .then((r) => r.json() as Promise<{ meta_cluster?: { leader?: string } }>, () => ({} as { meta_cluster?: { leader?: string } }));
          if (ok && leader.meta_cluster?.leader) break;
          if (Date.now() > until) throw new Error(`NATS node n${i + 1} not ready after 60 s\n${logs[i].slice(-3000)}`);
          await new Promise((r) => setTimeout(r, 200));
        }
        await waitForPort(p.mqtt, 15_000);
      }
    },
    log: (i) => logs[i],
    async stop() {
      await Promise.all(children.map((c) => (c ? stopChild(c, 5000) : undefined)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await cluster.ready();
  return cluster;
}
