// The broker a scenario (or a bench) runs its fleet on: the server's own embedded aedes broker (the
// default: nothing to start), one mosquitto with its dynamic security plugin, or a NATS JetStream
// cluster with its MQTT listener. Started here as the tests start them (mosquitto.ts, nats-cluster.ts),
// it gives the server config that makes the server a client of it, the URLs devices connect to, and a
// stop that leaves nothing running.
import type { NatsMqttOptions } from './nats-cluster.ts';

export type BrokerMode = 'embedded' | 'mosquitto' | 'nats';

export interface BrokerSpec {
  mode: BrokerMode;
  /** NATS only: nodes in the cluster (default 3) */
  nodes?: number;
  /** NATS only: the mqtt {} tuning (default NATS_MQTT_DEFAULTS) */
  natsMqtt?: NatsMqttOptions;
}

export interface StartedBroker {
  mode: BrokerMode;
  /** merged into the fleet server's config (empty for embedded) */
  serverConfig: Record<string, unknown>;
  /** where devices connect (empty for embedded: the server's own port, known once it listens) */
  deviceUrls: string[];
  /** external brokers check passwords: devices enroll with bearer secrets, not key pairs (docs/brokers.md) */
  needsSecrets: boolean;
  /** the agents' mqttSubscribeQos on this broker (0 on NATS: no JetStream consumer per device) */
  deviceSubscribeQos: 0 | 1;
  /** each broker process's id (memory and CPU figures) */
  pids(): Record<string, number | undefined>;
  stop(): Promise<void>;
}

export async function startBroker(spec: BrokerSpec): Promise<StartedBroker> {
  if (spec.mode === 'embedded') {
    return { mode: 'embedded', serverConfig: {}, deviceUrls: [], needsSecrets: false, deviceSubscribeQos: 1, pids: () => ({}), stop: async () => {} };
  }
  if (spec.mode === 'mosquitto') {
    const { startMosquitto } = await import('./mosquitto.ts');
    const m = await startMosquitto();
    return {
      mode: 'mosquitto', deviceUrls: [m.url], needsSecrets: true, deviceSubscribeQos: 1,
      serverConfig: { brokerMode: 'external', brokerUrls: m.url, brokerUsername: m.adminUser, brokerPassword: m.adminPassword, brokerDeviceAuth: 'dynsec' },
      pids: () => ({ mosquitto: m.pid() }),
      stop: () => m.stop(),
    };
  }
  const { startNatsCluster, NATS_PUBLISH_CONNECTIONS, NATS_DEVICE_SUBSCRIBE_QOS } = await import('./nats-cluster.ts');
  const { readFileSync } = await import('node:fs');
  const c = await startNatsCluster({ nodes: spec.nodes, mqtt: spec.natsMqtt });
  return {
    mode: 'nats', deviceUrls: c.nodes.map((x) => x.mqttUrl), needsSecrets: true, deviceSubscribeQos: NATS_DEVICE_SUBSCRIBE_QOS,
    serverConfig: {
      brokerMode: 'external', brokerUrls: c.urls, brokerUsername: c.serverUser, brokerPassword: c.serverPassword,
      // unguessable: NATS 2.9 does not bind client ids to users (docs/brokers.md)
      brokerClientId: `fleet-server-${Math.random().toString(36).slice(2)}`,
      brokerPublishConnections: NATS_PUBLISH_CONNECTIONS, brokerDeviceAuth: 'nats', natsUsersFile: c.usersFile, natsPidFiles: c.pidFiles,
    },
    pids: () => Object.fromEntries(c.nodes.map((x) => {
      try { return [x.name, Number(readFileSync(x.pidFile, 'utf8').trim())]; } catch { return [x.name, undefined]; }
    })),
    stop: () => c.stop(),
  };
}

/** Device i's broker URL list: every URL, starting at its own (devices spread over a cluster's nodes, each able to fail over). */
export function deviceUrlList(urls: string[], i: number): string {
  return urls.map((_u, j) => urls[(i + j) % urls.length]).join(',');
}
