// Broker settings of the server and the agent (issue 15): what is accepted, and the error for what is not.
import { describe, expect, it } from 'vitest';
import { parseServerConfig } from '../../server/config.ts';
import { brokerUrls, parseAgentConfig } from '../../device-agent/config.ts';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NatsUsersFile, natsSubject } from '../../server/mqtt/nats-auth.ts';
import { deviceAcls } from '../../server/mqtt/dynsec.ts';
import { topicMatches } from '../../server/mqtt/external-bus.ts';

const agentBase = { deviceId: 'dev-1', dataDir: '/tmp/x', serverUrl: 'http://127.0.0.1:8080', rootPublicKey: Buffer.alloc(32, 1).toString('base64') };

describe('server broker config', () => {
  it('defaults to the embedded broker', () => {
    const c = parseServerConfig({});
    expect(c.brokerMode).toBe('embedded');
    expect(c.brokerUrls).toEqual([]);
  });
  it('takes a comma-separated URL list for an external broker', () => {
    const c = parseServerConfig({ brokerMode: 'external', brokerUrls: 'mqtt://a:1883, mqtts://b:8883' });
    expect(c.brokerUrls).toEqual(['mqtt://a:1883', 'mqtts://b:8883']);
    expect(c.brokerClientId).toBe('fleet-server');
  });
  it.each([
    [{ brokerMode: 'external' }, 'brokerMode external needs brokerUrls'],
    [{ brokerMode: 'external', brokerUrls: 'http://a' }, 'each broker URL starts with mqtt://'],
    [{ brokerUrls: 'mqtt://a:1883' }, 'are for brokerMode external'],
    [{ brokerMode: 'external', brokerUrls: 'mqtt://a', brokerDeviceAuth: 'dynsec' }, 'dynsec needs brokerUsername'],
    [{ brokerMode: 'external', brokerUrls: 'mqtt://a', brokerDeviceAuth: 'nats', brokerUsername: 'u', brokerPassword: 'p' }, 'nats needs natsUsersFile'],
    [{ brokerMode: 'external', brokerUrls: 'mqtt://a', brokerClientId: 'has space' }, 'brokerClientId is 1-64 characters'],
  ])('refuses %j', (input, message) => {
    expect(() => parseServerConfig(input as never)).toThrow(message);
  });
});

describe('agent broker URLs', () => {
  it('keeps a single URL valid and accepts a comma-separated list', () => {
    expect(parseAgentConfig({ ...agentBase, mqttUrl: 'mqtt://127.0.0.1:1883' }).mqttUrl).toBe('mqtt://127.0.0.1:1883');
    const c = parseAgentConfig({ ...agentBase, mqttUrl: 'mqtt://n1:1883,mqtt://n2:1883, mqtt://n3:1883' });
    expect(brokerUrls(c.mqttUrl)).toEqual(['mqtt://n1:1883', 'mqtt://n2:1883', 'mqtt://n3:1883']);
  });
  it.each(['http://n1', 'mqtt://n1,http://n2', '', ','])('refuses %j', (mqttUrl) => {
    expect(() => parseAgentConfig({ ...agentBase, mqttUrl })).toThrow('mqttUrl must be one URL');
  });
});

describe('topic and subject mapping', () => {
  it('maps MQTT topics to NATS subjects as nats-server does', () => {
    expect(natsSubject('fleet/v1/dev-1/status')).toBe('fleet.v1.dev-1.status');
    expect(natsSubject('fleet/v1/cam.7/desired')).toBe('fleet.v1.cam//7.desired');
    expect(natsSubject('fleet/v1/+/desired')).toBe('fleet.v1.*.desired');
    expect(natsSubject('fleet/v1/#')).toBe('fleet.v1.>');
  });
  it('never writes a device user named as the server\'s own NATS user (refused as reserved)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nats-users-'));
    try {
      const usersFile = join(dir, 'users.conf');
      // a state file from before the check, naming the server's user as a device
      writeFileSync(`${usersFile}.json`, JSON.stringify({ 'fleet-server': 'device-secret', d1: 's1' }));
      const f = new NatsUsersFile({ usersFile, pidFiles: [], serverUser: 'fleet-server', serverPassword: 'server-secret', log: console as never });
      expect(f.reservedDeviceId('fleet-server')).toBe("fleet-server is the fleet server's own user on the NATS cluster");
      expect(f.reservedDeviceId('d1')).toBeUndefined();
      const users = [...f.render().matchAll(/\{ user: "([^"]+)", password: "([^"]+)"/g)].map((m) => [m[1], m[2]]);
      expect(users).toEqual([['fleet-server', 'server-secret'], ['d1', 's1']]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('gives a device\'s dynsec role exactly its own five topics', () => {
    expect(deviceAcls('d1').map((a) => `${a.acltype} ${a.topic}`)).toEqual([
      'publishClientSend fleet/v1/d1/status', 'publishClientSend fleet/v1/d1/telemetry', 'publishClientSend fleet/v1/d1/presence',
      'subscribeLiteral fleet/v1/d1/desired', 'subscribeLiteral fleet/v1/freshness',
    ]);
  });
  it('matches MQTT filters', () => {
    expect(topicMatches('fleet/v1/+/status', 'fleet/v1/d1/status')).toBe(true);
    expect(topicMatches('fleet/v1/+/status', 'fleet/v1/d1/telemetry')).toBe(false);
    expect(topicMatches('fleet/v1/#', 'fleet/v1/d1/status')).toBe(true);
    expect(topicMatches('fleet/v1/+', 'fleet/v1/d1/status')).toBe(false);
  });
});
