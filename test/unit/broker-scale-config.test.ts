// The settings issue 15's cluster scaling added: the server's publishing connections, the agent's
// subscription QoS, the NATS mqtt {} lines the cluster starter writes, and how devices spread over nodes.
import { describe, expect, it } from 'vitest';
import { loadServerConfig, parseServerConfig } from '../../server/config.ts';
import { loadAgentConfig, parseAgentConfig } from '../../device-agent/config.ts';
import { NATS_MQTT_DEFAULTS, natsMqttOptionLines } from '../../firmware-sim/brokers/nats-cluster.ts';
import { deviceUrlList } from '../../firmware-sim/brokers/broker-mode.ts';

const agentBase = { deviceId: 'dev-1', dataDir: '/tmp/x', mqttUrl: 'mqtt://127.0.0.1:1883', serverUrl: 'http://127.0.0.1:8080', rootPublicKey: Buffer.alloc(32, 1).toString('base64') };

describe('brokerPublishConnections', () => {
  it('defaults to 1 (the session only) and is read from FLEET_BROKER_PUBLISH_CONNECTIONS', () => {
    expect(parseServerConfig({}).brokerPublishConnections).toBe(1);
    expect(loadServerConfig({ env: { FLEET_BROKER_PUBLISH_CONNECTIONS: '8' } }).brokerPublishConnections).toBe(8);
  });
  it.each([0, 65, 2.5, 'many'])('refuses %j with the field named', (v) => {
    expect(() => parseServerConfig({ brokerPublishConnections: v as never })).toThrow(/brokerPublishConnections/);
  });
});

describe('agent mqttSubscribeQos', () => {
  it('defaults to 1; 0 from the config or FLEET_AGENT_MQTT_SUBSCRIBE_QOS', () => {
    expect(parseAgentConfig(agentBase).mqttSubscribeQos).toBe(1);
    expect(parseAgentConfig({ ...agentBase, mqttSubscribeQos: 0 }).mqttSubscribeQos).toBe(0);
    expect(loadAgentConfig({ env: {
      FLEET_AGENT_DEVICE_ID: 'dev-1', FLEET_AGENT_DATA_DIR: '/tmp/x', FLEET_AGENT_MQTT_URL: agentBase.mqttUrl, FLEET_AGENT_SERVER_URL: agentBase.serverUrl,
      FLEET_AGENT_ROOT_PUBLIC_KEY: agentBase.rootPublicKey, FLEET_AGENT_MQTT_SUBSCRIBE_QOS: '0',
    } }).mqttSubscribeQos).toBe(0);
  });
  it('refuses QoS 2 with the field named', () => {
    expect(() => parseAgentConfig({ ...agentBase, mqttSubscribeQos: 2 })).toThrow(/mqttSubscribeQos/);
  });
});

describe('NATS cluster shape', () => {
  it('defaults: streams and consumers R3; the mqtt {} lines in nats-server syntax', () => {
    expect(NATS_MQTT_DEFAULTS).toEqual({ streamReplicas: 3, consumerReplicas: 3 });
    expect(natsMqttOptionLines({ streamReplicas: 3, consumerReplicas: 1, consumerMemoryStorage: true, consumerInactiveThreshold: '5m', maxAckPending: 2048, ackWait: '30s' }))
      .toEqual(['stream_replicas: 3', 'consumer_replicas: 1', 'consumer_memory_storage: true', 'consumer_inactive_threshold: "5m"', 'max_ack_pending: 2048', 'ack_wait: "30s"']);
    expect(natsMqttOptionLines({})).toEqual([]);
  });
  it('device i lists every node, starting at node i mod n', () => {
    const urls = ['mqtt://a:1', 'mqtt://b:2', 'mqtt://c:3'];
    expect(deviceUrlList(urls, 0)).toBe('mqtt://a:1,mqtt://b:2,mqtt://c:3');
    expect(deviceUrlList(urls, 1)).toBe('mqtt://b:2,mqtt://c:3,mqtt://a:1');
    expect(deviceUrlList(urls, 5)).toBe('mqtt://c:3,mqtt://a:1,mqtt://b:2');
    expect(deviceUrlList(['mqtt://only:1'], 7)).toBe('mqtt://only:1');
  });
});
