// Shared by the attack suite: raw MQTT clients (mqtt.js, no reconnect), store counts, leak checks.
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { pinnedFetch, readCaFile } from '../../device-agent/pinned-fetch.ts';
import type { TestServer } from '../helpers/harness.ts';

export type ConnectResult = { ok: true; client: MqttClient } | { ok: false; code: number | undefined; message: string };

/** the server's CA as a client pins it (a TLS test server), or nothing (plain) */
const tlsOf = (server: TestServer) => (server.caFile ? { ca: readCaFile(server.caFile), rejectUnauthorized: true } : {});

/**
 * One CONNECT attempt to a URL, or to a test server's broker (over MQTTS with its CA when it has TLS):
 * resolves with the client, or with the refusal (CONNACK return code).
 */
export function tryConnect(target: string | TestServer, opts: IClientOptions): Promise<ConnectResult> {
  const url = typeof target === 'string' ? target : target.mqttUrl;
  const tls = typeof target === 'string' ? {} : tlsOf(target);
  return new Promise((resolve) => {
    const client = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, clean: true, ...tls, ...opts });
    const done = (r: ConnectResult) => {
      client.removeAllListeners('connect');
      client.removeAllListeners('error');
      client.on('error', () => {});
      resolve(r);
    };
    client.once('connect', () => done({ ok: true, client }));
    client.once('error', (err: Error & { code?: number }) => { client.end(true); done({ ok: false, code: err.code, message: err.message }); });
    client.once('close', () => done({ ok: false, code: undefined, message: 'closed' }));
  });
}

export async function connectDevice(server: TestServer, deviceId: string, secret: string, extra: IClientOptions = {}): Promise<MqttClient> {
  const r = await tryConnect(server, { clientId: deviceId, username: deviceId, password: secret, ...extra });
  if (!r.ok) throw new Error(`${deviceId} could not connect: ${r.message}`);
  return r.client;
}

/** A raw socket to the test server's broker port (TLS with its CA when it has TLS); onReady once bytes may be written. */
export function rawBrokerSocket(server: TestServer, onReady: () => void): Socket {
  const port = Number(new URL(server.mqttUrl).port);
  return server.caFile ? tlsConnect({ host: '127.0.0.1', port, ...tlsOf(server) }, onReady) : netConnect(port, '127.0.0.1', onReady);
}

/** fetch as a device reaches the test server's HTTP API (pinned to its CA when it has TLS) */
export function deviceFetch(server: TestServer): typeof fetch {
  return server.caFile ? pinnedFetch(readCaFile(server.caFile)) : fetch;
}

/** GET over the network as a device sends it (TLS pinned to the server's CA when it has TLS), answered like app.inject */
export async function deviceGet(server: TestServer, path: string, headers: Record<string, string> = {}): Promise<{ statusCode: number; body: string; json: () => any }> {
  const res = await deviceFetch(server)(`${server.baseUrl}${path}`, { headers, signal: AbortSignal.timeout(10_000) });
  const body = await res.text();
  return { statusCode: res.status, body, json: () => JSON.parse(body) };
}

/** Resolves true if the client's connection closes within ms. */
export function closesWithin(client: MqttClient, ms: number): Promise<boolean> {
  if (!client.connected) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    client.once('close', () => { clearTimeout(t); resolve(true); });
  });
}

export function publishAsync(client: MqttClient, topic: string, payload: string | Buffer, qos: 0 | 1 = 1): Promise<void> {
  return new Promise((resolve, reject) => client.publish(topic, payload, { qos }, (err) => (err ? reject(err) : resolve())));
}

export function subscribeAsync(client: MqttClient, filter: string): Promise<number> {
  // mqtt.js 5 reports a SUBACK of 0x80 (refused) as an error
  return new Promise((resolve, reject) => client.subscribe(filter, { qos: 1 }, (err, granted) => {
    if (err) return /Subscribe error/.test(err.message) ? resolve(128) : reject(err);
    resolve(granted![0].qos);
  }));
}

export const endClient = (c: MqttClient | undefined) => new Promise<void>((r) => (c ? c.end(true, {}, () => r()) : r()));

/** Row counts of the tables nothing may lose. */
export function storeCounts(server: TestServer): Record<string, number> {
  const db = server.app.fleet.db;
  const out: Record<string, number> = {};
  for (const t of ['uploads', 'artifacts', 'models', 'bundles', 'devices', 'status_events', 'telemetry', 'keysets', 'audit_log', 'api_tokens', 'device_credentials']) {
    out[t] = (db.prepare(`SELECT COUNT(*) AS n FROM ${t}`).get() as { n: number }).n;
  }
  return out;
}

export function expectNothingLost(before: Record<string, number>, after: Record<string, number>): string[] {
  return Object.keys(before).filter((k) => after[k] < before[k]).map((k) => `${k}: ${before[k]} -> ${after[k]}`);
}

export async function stillServing(server: TestServer): Promise<boolean> {
  const res = await server.app.inject({ method: 'GET', url: '/healthz' });
  const dev = await server.app.inject({ method: 'GET', url: '/v1/devices?limit=1' });
  return res.statusCode === 200 && dev.statusCode === 200;
}

export function leakProblems(body: string, dirs: string[]): string[] {
  const problems: string[] = [];
  if (/\n\s+at\s/.test(body) || /\bat [\w.<>]+ \(/.test(body)) problems.push('stack trace');
  if (/"stack"\s*:/.test(body)) problems.push('stack field');
  for (const d of dirs) if (d && body.includes(d)) problems.push(`path ${d}`);
  if (body.includes(process.cwd())) problems.push('repo path');
  if (/node_modules|\/tmp\/|fleet\.db|blobs\//.test(body)) problems.push('file system path');
  return problems;
}

export { waitFor } from '../helpers/wait.ts';

/** mulberry32: a small seeded PRNG, so a fuzz failure replays exactly. */
export { mulberry32 as prng } from '../../shared/prng.ts';
