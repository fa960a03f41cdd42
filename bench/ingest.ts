// Telemetry ingest: windows stored per second through the real server (aedes with the fleet's auth,
// ACL, packet guard and rate limiter, then validation, then the writer thread's batched SQLite inserts), next to a bare
// aedes broker whose in-process subscriber only counts: the same `clients` MQTT connections from the
// same publisher child process, QoS 1, the same payload bytes (a realistic Telemetry JSON with drift
// histograms). The publishers get a process of their own so the brokers face the same load and share
// the CPU with it alike; the brokers live in this process, idle while another runs.
// A third target, 'inline', is the same server with telemetryWriter 'main' (the writer on the broker's
// thread, as before issue 13): before and after in the same run. The three run in rotating order so
// drift on a noisy machine hits all alike.
// A run's clock starts when the publishers are told to go (payloads are prebuilt) and stops when the
// last message is counted (raw) or its row is committed to SQLite (server; the writer thread commits
// whatever has arrived, up to 1,000 windows a transaction). Afterwards the rows are counted in SQLite:
// each window stored exactly once.
// Run alone: npx tsx bench/ingest.ts [--clients N] [--per-client N] [--runs N] [--inflight N]
import { Aedes } from 'aedes';
import { createServer, type AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { performance as perfHooks } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import mqtt, { type MqttClient } from 'mqtt';
import { buildServer } from '../server/app.ts';
import { newSecret } from '../server/auth/secrets.ts';
import { makeDeviceToken, newDeviceKeyPair } from '../shared/device-token.ts';
import { Telemetry } from '../shared/messages.ts';
import { topics } from '../shared/topics.ts';
import { TelemetryWriter } from '../server/devices/telemetry-writer.ts';
import { openDatabase } from '../server/db/database.ts';
import { ask, childRole, cpuCount, forkRole, isMain, median, round, runAlone, serveParent, stopChild, waitUntil, withTempDir, type Msg } from './util.ts';

const THIS_FILE = fileURLToPath(import.meta.url);
// (DOM's Performance type, in lib, hides node's eventLoopUtilization on the global)
const eventLoopUtilization = perfHooks.eventLoopUtilization.bind(perfHooks);


export interface BenchIngestOptions {
  /** MQTT connections, one device id each */
  clients?: number;
  /** telemetry windows each client publishes per run (the server's per-device burst is 2,000) */
  perClient?: number;
  runs?: number;
  /** QoS 1 publishes a client keeps unacknowledged */
  inflight?: number;
}

/** A realistic telemetry window of the digits model: latency figures and both drift histograms. */
export function telemetryPayload(deviceId: string, seq: number): Buffer {
  const k = seq % 97;
  const t: Telemetry = {
    deviceId, seq,
    windowStart: new Date(1_760_000_000_000 + seq * 60_000).toISOString(),
    windowEnd: new Date(1_760_000_000_000 + (seq + 1) * 60_000).toISOString(),
    active: { modelId: 'digits', version: 3, manifestSha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' },
    count: 600 + k, errors: k % 3,
    latencyMs: { p50: 0.21 + k / 1000, p95: 0.35 + k / 1000, p99: 0.61 + k / 1000, max: 1.9 + k / 100 },
    rssBytes: 83_000_000 + k * 4096,
    inputHistograms: { input: { kind: 'values', edges: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], counts: Array.from({ length: 10 }, (_, i) => 1900 * (i === 0 ? 8 : 1) + i * 13 + k) } },
    outputHistograms: { probabilities: { kind: 'argmax', edges: [], counts: Array.from({ length: 10 }, (_, i) => 55 + ((i * 7 + k) % 11)) } },
  };
  return Buffer.from(JSON.stringify(t));
}

const deviceIds = (n: number) => Array.from({ length: n }, (_, i) => `bench-${String(i).padStart(5, '0')}`);

interface RunFigures {
  target: 'raw' | 'server' | 'inline'; messages: number; counted: number; ms: number; perSecond: number;
  /** fractions of one core over the run, and the broker process's event-loop utilization: which side was busy */
  publisherCpu: number; brokerCpu: number; brokerEventLoop: number;
  /** CPU time of the broker process per message (less sensitive to other load than wall time) */
  brokerCpuUsPerMessage: number;
  /** the telemetry writer thread's event-loop utilization over the run (its share of one core spent storing) */
  writerThreadEventLoop?: number | null;
  /** windows per SQLite transaction (group commit: bigger transactions cost less per window) */
  windowsPerTransaction?: number;
}

export async function benchIngest(opts: BenchIngestOptions = {}) {
  const clients = opts.clients ?? 200;
  const perClient = opts.perClient ?? 100;
  const runs = opts.runs ?? 3;
  const inflight = opts.inflight ?? 10;
  const ids = deviceIds(clients);
  const n = clients * perClient;

  const loadAtStart = loadavg().map((x) => round(x)); // other load on the machine skews wall-time figures
  return withTempDir('fleet-bench-ingest-', async (dir) => {
    const adminToken = newSecret('apiToken');
    // The product's defaults (auth on, rate limit 100/s with a 2,000 burst per device); a run sends
    // perClient <= 2,000 per device, inside the burst, so the limiter is paid for but never trips.
    const app = await buildServer({ dataDir: join(dir, 'server'), httpPort: 0, mqttPort: 0, logLevel: 'silent', bootstrapAdminToken: adminToken });
    // "before", in the same run: the same server with the writer on the broker's thread (telemetryWriter: 'main')
    const inlineApp = await buildServer({ dataDir: join(dir, 'server-inline'), httpPort: 0, mqttPort: 0, logLevel: 'silent', bootstrapAdminToken: adminToken, telemetryWriter: 'main' });
    const raw = await startRawBroker();
    const child = forkRole(THIS_FILE, 'publisher');
    try {
      const servers = { server: app, inline: inlineApp };
      for (const [group, a] of Object.entries(servers)) {
        const secrets = await enroll(a, adminToken, ids);
        await ask(child, { type: 'connect', group, port: a.fleet.broker.port, devices: ids.map((id) => ({ id, password: secrets.get(id) })) }, 'connected', 60_000);
      }
      await ask(child, { type: 'connect', group: 'raw', port: raw.port, devices: ids.map((id) => ({ id })) }, 'connected', 60_000);
      await app.fleet.ingest.telemetry.started();

      const figures: RunFigures[] = [];
      type Target = RunFigures['target'];
      // one unmeasured run each first: JIT, SQLite page cache and socket buffers warm for all; then the
      // three in a rotating order so drift on a noisy machine hits all alike
      const order: { target: Target; warmup: boolean }[] = (['raw', 'server', 'inline'] as const).map((target) => ({ target, warmup: true }));
      const rotations: Target[][] = [['raw', 'server', 'inline'], ['inline', 'raw', 'server'], ['server', 'inline', 'raw']];
      for (let r = 0; r < runs; r++) order.push(...rotations[r % 3].map((target) => ({ target, warmup: false })));
      const serverRuns0 = { server: 0, inline: 0 };
      const integrityOf = () => ({ published: 0, stored: 0, duplicates: 0, dropped: 0, lost: 0 });
      const integrity = { server: integrityOf(), inline: integrityOf() };

      for (const { target, warmup } of order) {
        const a = target === 'raw' ? null : servers[target];
        const writer = a?.fleet.ingest.telemetry ?? null;
        const counters = a?.fleet.ingest.counters ?? null;
        const seqBase = target === 'raw' ? 0 : serverRuns0[target]++ * perClient;
        await ask(child, { type: 'arm', group: target, seqBase, perClient }, 'armed', 60_000);
        const count = writer ? () => writer.stored : () => raw.count;
        const before = count();
        const dup0 = writer?.duplicates ?? 0, drop0 = counters?.dropped.telemetry ?? 0, tx0 = writer?.transactions ?? 0, answered0 = writer ? writer.stored + writer.duplicates + writer.failed : 0;
        const cpu0 = process.cpuUsage(), elu0 = eventLoopUtilization(), writerElu0 = writer?.eventLoopUtilization() ?? null;
        const t0 = performance.now();
        const published = ask<Msg & { acked: number; cpuMs: number }>(child, { type: 'go', group: target, inflight }, 'published', 120_000);
        // Stop waiting when everything arrived, or nothing has for 5 s (then the difference is lost).
        let last = before, lastChange = performance.now(), tEnd = t0;
        await waitUntil(() => {
          const c = count();
          if (c !== last) { last = c; lastChange = tEnd = performance.now(); }
          return c - before >= n || performance.now() - lastChange > 5000;
        }, 180_000, 1);
        const cpu = process.cpuUsage(cpu0), elu = eventLoopUtilization(elu0), writerElu = writerElu0 ? writer!.eventLoopUtilization(writerElu0) : null;
        const pub = await published;
        const ms = tEnd - t0;
        if (!warmup) figures.push({
          target, messages: n, counted: count() - before, ms: round(ms), perSecond: round((count() - before) / (ms / 1000)),
          // fractions of one core over the run: which process was saturated
          publisherCpu: round(pub.cpuMs / ms), brokerCpu: round((cpu.user + cpu.system) / 1000 / ms), brokerEventLoop: round(elu.utilization),
          brokerCpuUsPerMessage: round((cpu.user + cpu.system) / n),
          ...(target === 'server' ? { writerThreadEventLoop: writerElu ? round(writerElu.utilization) : null } : {}),
          ...(writer && writer.transactions > tx0 ? { windowsPerTransaction: round((writer.stored + writer.duplicates + writer.failed - answered0) / (writer.transactions - tx0)) } : {}),
        });
        if (a && writer && counters && target !== 'raw') {
          await new Promise((resolve) => setTimeout(resolve, 100)); // a late duplicate would show up here
          await writer.flush();
          const rows = (a.fleet.db.prepare('SELECT COUNT(*) AS c FROM telemetry WHERE seq >= ? AND seq < ?').get(seqBase, seqBase + perClient) as { c: number }).c;
          const i = integrity[target];
          i.published += pub.acked;
          i.stored += rows;
          i.duplicates += writer.duplicates - dup0;
          i.dropped += (counters.dropped.telemetry ?? 0) - drop0;
          i.lost += n - rows;
        }
      }
      const runsOf = (t: Target) => figures.filter((f) => f.target === t);
      const rawPerSecond = median(runsOf('raw').map((f) => f.perSecond));
      const storedPerSecond = median(runsOf('server').map((f) => f.perSecond));
      const inlinePerSecond = median(runsOf('inline').map((f) => f.perSecond));
      const cpuOf = (t: Target) => round(median(runsOf(t).map((f) => f.brokerCpuUsPerMessage)));
      return {
        storedPerSecond: round(storedPerSecond),
        rawBrokerPerSecond: round(rawPerSecond),
        ingestVsRawBroker: round(storedPerSecond / rawPerSecond),
        target: '>= 0.9',
        // before (issue 13): the writer on the broker's thread, measured in the same run
        writerOnBrokerThread: { storedPerSecond: round(inlinePerSecond), ingestVsRawBroker: round(inlinePerSecond / rawPerSecond), cpuUsPerMessage: cpuOf('inline') },
        // why the target is out of reach on this machine (measured by the fields below)
        floor: 'the raw broker spends ~25 us of CPU per message; the server ~95-115 (both threads; issue 13 cut it from ~125): the broker thread adds auth, ACL (remembered per connection), rate limiter, packet guard, JSON.parse and the validator, and holds each PUBACK on a promise; the writer thread parses the window again (~5 us: cheaper than any structured clone) and stores it in ~35-45 us at the ~500 windows a transaction this load gives (raw row with its three indexes and the commit ~30, rollups ~6). Each index the raw table has is used by a query (key: exactly-once; manifest: gates; received_at: retention), and two of them are ordered by device, so a commit writes a page of each per device in it. With the publishers on the same 2 cores, 0.9 would need storage at ~10% of the raw broker cost per message; SQLite alone (~25 us a window at 1,000 a transaction) costs more than the whole raw broker does',
        // what each message costs the broker process in CPU (all its threads), server vs raw (median over runs)
        cpuUsPerMessage: { server: cpuOf('server'), raw: cpuOf('raw') },
        // every window published once must be a row once: rows == published, no losses
        integrity: { ...integrity.server, exactlyOnce: integrity.server.stored === integrity.server.published && integrity.server.lost === 0 },
        integrityWriterOnBrokerThread: { ...integrity.inline, exactlyOnce: integrity.inline.stored === integrity.inline.published && integrity.inline.lost === 0 },
        ingestStepCostUs: await ingestStepCosts(dir),
        runs: {
          runsEach: runs, clients, perClient, messagesPerRun: n, inflightPerClient: inflight, qos: 1,
          payloadBytes: telemetryPayload(ids[0], 0).length,
          setup: 'publishers: one child process with all connections; the raw broker and both servers (writer thread, writer on the broker thread) in the bench process; runs in rotating order',
          figures,
        },
        cpus: cpuCount(),
        loadAverageAtStart: loadAtStart,
      };
    } finally {
      await stopChild(child);
      await raw.close();
      await app.close();
      await inlineApp.close();
    }
  });
}

/**
 * Enroll devices the operator's way: an enrollment token made with the admin token, then one batch of
 * public keys (key pairs made here). Returns each device's MQTT token (good for one CONNECT).
 */
async function enroll(app: Awaited<ReturnType<typeof buildServer>>, adminToken: string, ids: string[]): Promise<Map<string, string>> {
  const keys = ids.map((deviceId) => ({ deviceId, ...newDeviceKeyPair() }));
  const authorization = `Bearer ${adminToken}`;
  const tok = await app.inject({ method: 'POST', url: '/v1/enrollment-tokens', headers: { authorization }, payload: { uses: ids.length, ttlSeconds: 600 } });
  if (tok.statusCode !== 201) throw new Error(`enrollment token: ${tok.statusCode} ${tok.body}`);
  const res = await app.inject({ method: 'POST', url: '/v1/enroll', payload: { enrollmentToken: tok.json().token, devices: keys.map((k) => ({ deviceId: k.deviceId, publicKey: k.publicKey })) } });
  if (res.statusCode !== 201) throw new Error(`enroll: ${res.statusCode} ${res.body}`);
  return new Map(keys.map((k) => [k.deviceId, makeDeviceToken(k.privateKey, { deviceId: k.deviceId, aud: 'mqtt', nowMs: Date.now(), lifetimeSeconds: 300 })]));
}

/** A bare aedes broker on TCP (no auth, no ACL) with an in-process subscriber that only counts. */
async function startRawBroker() {
  const aedes = await Aedes.createBroker({ id: 'bench-raw' });
  const state = { count: 0 };
  await new Promise<void>((resolve) => aedes.subscribe(topics.all('telemetry'), (_packet, cb) => { state.count++; cb(); }, resolve));
  const server = createServer({ noDelay: true }, (socket) => { socket.on('error', () => {}); aedes.handle(socket); }); // noDelay as the fleet broker
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    get count() { return state.count; },
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
    },
  };
}

/**
 * What one message costs in each server step, in this process, without MQTT: JSON.parse + zod
 * Telemetry.safeParse, and TelemetryWriter's batched INSERT OR IGNORE on a fresh database of ours.
 * CPU microseconds per message (process.cpuUsage: less skewed by other load than wall time), median
 * of 5 repetitions after one warm-up.
 */
async function ingestStepCosts(dir: string) {
  const payloads = deviceIds(100).flatMap((id) => Array.from({ length: 50 }, (_, s) => telemetryPayload(id, s)));
  const cpuUs = (fn: () => void) => { const c0 = process.cpuUsage(); fn(); const c = process.cpuUsage(c0); return (c.user + c.system) / payloads.length; };
  const jsonUs: number[] = [], zodUs: number[] = [], insertUs: number[] = [];
  for (let rep = 0; rep <= 5; rep++) {
    let raw: unknown[] = [], parsed: Telemetry[] = [];
    const j = cpuUs(() => { raw = payloads.map((p) => JSON.parse(p.toString('utf8'))); });
    const z = cpuUs(() => { parsed = raw.map((r) => Telemetry.parse(r)); });
    const db = openDatabase(join(dir, `steps-${rep}.db`));
    // on the main thread here, so its CPU is this process's: what one window costs SQLite (the server's writer thread pays it)
    const writer = new TelemetryWriter(db, { thread: 'main', maxBatch: 500 });
    const ins = cpuUs(() => { for (const t of parsed) void writer.add(t); void writer.flush(); });
    await writer.close();
    db.close();
    if (rep > 0) { jsonUs.push(j); zodUs.push(z); insertUs.push(ins); }
  }
  return { jsonParse: round(median(jsonUs)), zodTelemetry: round(median(zodUs)), sqliteInsert: round(median(insertUs)), messagesPerRep: payloads.length, reps: 5 };
}

// ---- the publisher child ----------------------------------------------------------------------

function publisherChild(): void {
  const groups = new Map<string, { clients: MqttClient[]; ids: string[]; armed: Buffer[][] }>();
  serveParent(async (m) => {
    if (m.type === 'connect') {
      const devices = m.devices as { id: string; password?: string }[];
      const clients: MqttClient[] = [];
      // 50 at a time: a connect storm is not what this measures
      for (let i = 0; i < devices.length; i += 50) {
        clients.push(...await Promise.all(devices.slice(i, i + 50).map((d) => connectOne(m.port as number, d.id, d.password))));
      }
      groups.set(m.group as string, { clients, ids: devices.map((d) => d.id), armed: [] });
      return { type: 'connected' };
    }
    if (m.type === 'arm') {
      const g = groups.get(m.group as string)!;
      const seqBase = m.seqBase as number, perClient = m.perClient as number;
      g.armed = g.ids.map((id) => Array.from({ length: perClient }, (_, k) => telemetryPayload(id, seqBase + k)));
      return { type: 'armed' };
    }
    if (m.type === 'go') {
      const g = groups.get(m.group as string)!;
      const cpu0 = process.cpuUsage();
      const acks = await Promise.all(g.clients.map((c, i) => pump(c, topics.telemetry(g.ids[i]), g.armed[i], m.inflight as number)));
      const cpu = process.cpuUsage(cpu0);
      return { type: 'published', acked: acks.reduce((a, b) => a + b, 0), cpuMs: (cpu.user + cpu.system) / 1000 };
    }
  }, async () => {
    for (const g of groups.values()) for (const c of g.clients) c.end(true);
  });
}

function connectOne(port: number, id: string, password?: string): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
      clientId: id, protocolVersion: 4, clean: true, keepalive: 60, reconnectPeriod: 0, connectTimeout: 30_000,
      ...(password ? { username: id, password } : {}),
    });
    c.once('connect', () => resolve(c));
    c.once('error', (err) => reject(new Error(`${id}: ${err.message}`)));
  });
}

/** Publish all payloads at QoS 1 keeping `inflight` unacknowledged; resolves with the count acked (a lost connection stops it). */
function pump(c: MqttClient, topic: string, payloads: Buffer[], inflight: number): Promise<number> {
  return new Promise((resolve) => {
    let next = 0, acked = 0, settled = 0;
    c.once('close', () => resolve(acked)); // a dropped connection: what was not acked counts as lost
    const send = () => {
      const i = next++;
      c.publish(topic, payloads[i], { qos: 1 }, (err) => {
        settled++;
        if (!err) acked++;
        if (settled === payloads.length || (err && !c.connected)) return resolve(acked);
        if (next < payloads.length) send();
      });
    };
    for (let k = 0; k < Math.min(inflight, payloads.length); k++) send();
  });
}

if (isMain(import.meta.url)) {
  if (childRole() === 'publisher') publisherChild();
  else {
    const { values } = parseArgs({ options: { clients: { type: 'string' }, 'per-client': { type: 'string' }, runs: { type: 'string' }, inflight: { type: 'string' } } });
    const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
    await runAlone(() => benchIngest({ clients: num(values.clients), perClient: num(values['per-client']), runs: num(values.runs), inflight: num(values.inflight) }));
  }
}
