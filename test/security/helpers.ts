// Shared by the attack suite: raw MQTT clients (mqtt.js, no reconnect), store counts, leak checks.
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { TestServer } from '../helpers/harness.ts';

export type ConnectResult = { ok: true; client: MqttClient } | { ok: false; code: number | undefined; message: string };

/** One CONNECT attempt: resolves with the client, or with the refusal (CONNACK return code). */
export function tryConnect(url: string, opts: IClientOptions): Promise<ConnectResult> {
  return new Promise((resolve) => {
    const client = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, clean: true, ...opts });
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
  const r = await tryConnect(server.mqttUrl, { clientId: deviceId, username: deviceId, password: secret, ...extra });
  if (!r.ok) throw new Error(`${deviceId} could not connect: ${r.message}`);
  return r.client;
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
