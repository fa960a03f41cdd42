// Memory, measured in child processes so each figure is one process's own RSS:
// 1. agentRssVsBare: peak RSS of a process running one real FleetAgent that got the digits bundle
//    (INT8, from a real server: signed desired state, download, verification, health check) and then
//    served inferences, against a process holding the same artifact in a bare onnxruntime-web session
//    (createSession + the same inferences). Both children run under tsx alike. Peak = the kernel's
//    high-water mark (process.resourceUsage().maxRSS), so a short spike counts.
// 2. serverRssPer1000DevicesMB: a fleet server in a child process (--expose-gc), 2,000 enrolled devices
//    connected from another child as bare mqtt.js clients that behave like agents (client id = device
//    id, username + device token, last will, subscribe to their desired topic, retained presence), in
//    two halves. Server RSS after a GC with the first half connected and with all: the growth per 1,000
//    further devices (the first half also pays for what the server allocates once; reported as
//    serverRssPer1000DevicesFromEmptyMB, the figure's definition before 2026-11-30).
// Run alone: npx tsx bench/memory.ts [--runs N] [--devices N] [--inferences N]
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import type { MqttClient } from 'mqtt';
import type { FleetAgent } from '../device-agent/agent.ts';
import type { buildServer } from '../server/app.ts';
import { ask, childRole, cpuCount, forkRole, isMain, median, nextMessage, round, runAlone, serveParent, sleep, stopChild, withTempDir, type Msg } from './util.ts';

// Each role imports only what it uses (dynamic imports below): the bare child must hold onnxruntime-web
// and nothing else, the agent child what an agent loads, so neither pays for the other's modules.
const DIGITS_INPUT = 'input'; // server/training/digits.ts DIGITS_INPUT, checked against it in agentVsBare
const THIS_FILE = fileURLToPath(import.meta.url);
const MB = 1e6;

export interface BenchMemoryOptions { runs?: number; devices?: number; inferences?: number }

export async function benchMemory(opts: BenchMemoryOptions = {}) {
  const runs = opts.runs ?? 3;
  const devices = opts.devices ?? 2000;
  const inferences = opts.inferences ?? 500;
  const agent = await agentVsBare(runs, inferences);
  const server = await serverPerDevices(runs, devices);
  return { ...agent, ...server, runs: { runsEach: runs, inferences, devices, ...agent.runs, ...server.runs }, cpus: cpuCount() };
}

// ---- 1. one agent against a bare onnxruntime-web session ----------------------------------------

interface ProcMemory { peakRss: number; rss: number; heapUsed: number; external: number }

async function agentVsBare(runs: number, inferences: number) {
  const { buildServer } = await import('../server/app.ts');
  const { newSecret } = await import('../server/auth/secrets.ts');
  const { b64 } = await import('../shared/crypto.ts');
  const { encodeTensor } = await import('../shared/tensor-codec.ts');
  const digitsModule = await import('../server/training/digits.ts');
  if (digitsModule.DIGITS_INPUT !== DIGITS_INPUT) throw new Error('bench: the digits input name changed');
  return withTempDir('fleet-bench-memory-', async (dir) => {
    const adminToken = newSecret('apiToken');
    const authorization = `Bearer ${adminToken}`;
    // Security on (the product default): each agent enrolls itself on first start with its key pair
    // (config enrollmentToken) and connects with the tokens it signs.
    const app = await buildServer({ dataDir: join(dir, 'server'), httpPort: 0, mqttPort: 0, logLevel: 'silent', bootstrapAdminToken: adminToken });
    try {
      await app.listen({ host: '127.0.0.1', port: 0 });
      const serverUrl = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
      const digits = await digitsModule.buildDigitsModel();
      const upload = await app.inject({ method: 'POST', url: '/v1/uploads', headers: { 'content-type': 'application/octet-stream', authorization }, payload: Buffer.from(digits.onnx) });
      if (upload.statusCode !== 201) throw new Error(`upload: ${upload.statusCode} ${upload.body}`);
      const [n, pixels] = digits.reference.shape;
      const push = await app.inject({
        method: 'POST', url: '/v1/models/digits/bundles', headers: { authorization },
        payload: { uploadSha256: upload.json().sha256, quantize: 'int8', reference: { inputs: { [DIGITS_INPUT]: encodeTensor('float32', [n, pixels], digits.reference.inputs) }, labels: digits.reference.labels } },
      });
      if (push.statusCode !== 201) throw new Error(`bundle: ${push.statusCode} ${push.body}`);
      const bundle = push.json() as { manifestSha256: string; manifest: { artifact: { sha256: string; length: number }; quantization: { sessionConfig: Record<string, string> } } };

      const made = await app.inject({ method: 'POST', url: '/v1/enrollment-tokens', headers: { authorization }, payload: { uses: runs } });
      if (made.statusCode !== 201) throw new Error(`enrollment token: ${made.statusCode} ${made.body}`);
      const enrollmentToken = made.json().token as string;
      const agentRuns: ProcMemory[] = [], bareRuns: ProcMemory[] = [];
      const runAgent = async (r: number) => {
        const deviceId = `mem-agent-${r}`;
        const child = forkRole(THIS_FILE, 'agent');
        try {
          const done = nextMessage<Msg & ProcMemory>(child, 'done', 120_000);
          await ask(child, {
            type: 'start', manifestSha256: bundle.manifestSha256, inferences,
            config: { deviceId, dataDir: join(dir, deviceId), mqttUrl: `mqtt://127.0.0.1:${app.fleet.broker.port}`, serverUrl, rootPublicKey: b64.encode(app.fleet.keys.rootPublicKey), telemetryWindowMs: 60_000, enrollmentToken },
          }, 'connected', 30_000);
          const assigned = await app.inject({ method: 'POST', url: '/v1/assignments', headers: { authorization }, payload: { manifestSha256: bundle.manifestSha256, deviceIds: [deviceId] } });
          if (assigned.statusCode !== 202) throw new Error(`assign: ${assigned.statusCode} ${assigned.body}`);
          agentRuns.push(pickMemory(await done));
        } finally {
          await stopChild(child);
        }
      };
      const runBare = async () => {
        const child = forkRole(THIS_FILE, 'bare');
        try {
          bareRuns.push(pickMemory(await ask(child, { type: 'start', artifactPath: app.fleet.blobs.pathOf(bundle.manifest.artifact.sha256), sessionConfig: bundle.manifest.quantization.sessionConfig, inferences }, 'done', 60_000)));
        } finally {
          await stopChild(child);
        }
      };
      for (let r = 0; r < runs; r++) {
        if (r % 2 === 0) { await runAgent(r); await runBare(); } else { await runBare(); await runAgent(r); }
      }
      const agentPeak = median(agentRuns.map((m) => m.peakRss)), barePeak = median(bareRuns.map((m) => m.peakRss));
      const mb = (x: number) => round(x / MB);
      return {
        agentPeakRssMB: mb(agentPeak), barePeakRssMB: mb(barePeak), agentRssVsBare: round(agentPeak / barePeak), agentTarget: '<= 1.2',
        agentRssAfterInferencesMB: mb(median(agentRuns.map((m) => m.rss))), bareRssAfterInferencesMB: mb(median(bareRuns.map((m) => m.rss))),
        agentHeapUsedMB: mb(median(agentRuns.map((m) => m.heapUsed))), bareHeapUsedMB: mb(median(bareRuns.map((m) => m.heapUsed))),
        runs: { artifactBytes: bundle.manifest.artifact.length, quantization: 'int8', agentPeakRssMB: agentRuns.map((m) => mb(m.peakRss)), barePeakRssMB: bareRuns.map((m) => mb(m.peakRss)) },
      };
    } finally {
      await app.close();
    }
  });
}

const pickMemory = (m: Msg & ProcMemory): ProcMemory => ({ peakRss: m.peakRss, rss: m.rss, heapUsed: m.heapUsed, external: m.external });

function memoryNow(): ProcMemory {
  const m = process.memoryUsage();
  return { peakRss: process.resourceUsage().maxRSS * 1024, rss: m.rss, heapUsed: m.heapUsed, external: m.external };
}

/** 16 fixed pseudo-random 28x28 inputs in [0, 1): the same in both children. */
function inputs(): Float32Array[] {
  let s = 12345;
  const next = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  return Array.from({ length: 16 }, () => Float32Array.from({ length: 784 }, next));
}

function agentChild(): void {
  let agent: FleetAgent | null = null;
  serveParent(async (m) => {
    if (m.type !== 'start') return;
    const { FleetAgent } = await import('../device-agent/agent.ts');
    const { parseAgentConfig } = await import('../device-agent/config.ts');
    agent = new FleetAgent(parseAgentConfig(m.config));
    const connected = new Promise<void>((resolve) => agent!.once('connected', () => resolve()));
    await agent.start();
    await connected;
    process.send!({ type: 'connected' });
    await agent.waitForStatus((s) => s.manifestSha256 === m.manifestSha256 && ['active', 'failed', 'rejected'].includes(s.state), 60_000);
    if (agent.active?.manifestSha256 !== m.manifestSha256) throw new Error(`the agent did not install the bundle: ${JSON.stringify(agent.lastStatus)}`);
    const xs = inputs();
    for (let i = 0; i < (m.inferences as number); i++) await agent.infer({ [DIGITS_INPUT]: { data: xs[i & 15], dims: [1, 784] } });
    return { type: 'done', ...memoryNow() };
  }, async () => { await agent?.stop(); });
}

function bareChild(): void {
  serveParent(async (m) => {
    if (m.type !== 'start') return;
    const { createSession, ort } = await import('../runtime/onnx-session.ts');
    const session = await createSession(new Uint8Array(readFileSync(m.artifactPath as string)), { config: m.sessionConfig as Record<string, string> });
    const xs = inputs();
    for (let i = 0; i < (m.inferences as number); i++) await session.run({ [DIGITS_INPUT]: new ort.Tensor('float32', xs[i & 15], [1, 784]) });
    return { type: 'done', ...memoryNow() };
  });
}

// ---- 2. the server's RSS per 1,000 connected devices -----------------------------------------

export async function serverPerDevices(runs: number, devices: number) {
  const { newSecret } = await import('../server/auth/secrets.ts');
  const deltas: number[] = [], fromEmpty: number[] = [], heapDeltas: number[] = [], baselines: number[] = [], connectMs: number[] = [];
  const ids = Array.from({ length: devices }, (_, i) => `mem-dev-${String(i).padStart(5, '0')}`);
  const half = Math.floor(devices / 2);
  for (let r = 0; r < runs; r++) {
    // a fresh server each run: nothing left from the previous run's sessions or retained messages
    await withTempDir('fleet-bench-memory-server-', async (dir) => {
      const adminToken = newSecret('apiToken');
      const server = forkRole(THIS_FILE, 'server', { exposeGc: true });
      let fleet: ReturnType<typeof forkRole> | null = null;
      try {
        const ready = await ask<Msg & { httpPort: number; mqttPort: number }>(server, { type: 'start', dataDir: join(dir, 'server'), adminToken }, 'ready', 60_000);
        const passwords = await enrollOverHttp(`http://127.0.0.1:${ready.httpPort}`, adminToken, ids);
        const before = await ask<Msg & { rss: number; heapUsed: number }>(server, { type: 'rss' }, 'rss', 30_000);
        fleet = forkRole(THIS_FILE, 'devices');
        const connect = async (slice: string[]) => {
          const up = await ask<Msg & { connected: number; ms: number }>(fleet!, { type: 'start', mqttPort: ready.mqttPort, devices: slice.map((id) => ({ id, password: passwords.get(id) })) }, 'connected', 120_000);
          await sleep(500); // let the presence rows land
          return up.ms;
        };
        // Two steps: the first half, then the second. The second step's growth is what each further
        // device costs; the first also pays for what the server makes once, on its first connections
        // (mqtt-packet's table of 65,536 two-byte packet-id buffers, 6.4 MB; JIT code), which is not
        // per device.
        const ms1 = await connect(ids.slice(0, half));
        const mid = await ask<Msg & { rss: number; heapUsed: number }>(server, { type: 'rss' }, 'rss', 30_000);
        const ms2 = await connect(ids.slice(half));
        const after = await ask<Msg & { rss: number; heapUsed: number; connectedClients: number }>(server, { type: 'rss' }, 'rss', 30_000);
        if (after.connectedClients !== devices) throw new Error(`server sees ${after.connectedClients} of ${devices} devices connected`);
        const second = devices - half;
        deltas.push(((after.rss - mid.rss) / second) * 1000);
        heapDeltas.push(((after.heapUsed - mid.heapUsed) / second) * 1000);
        fromEmpty.push(((after.rss - before.rss) / devices) * 1000);
        baselines.push(before.rss);
        connectMs.push(ms1 + ms2);
      } finally {
        await stopChild(fleet);
        await stopChild(server);
      }
    });
  }
  return {
    serverRssPer1000DevicesMB: round(median(deltas) / MB),
    serverRssPer1000DevicesTarget: '<= 10',
    serverHeapPer1000DevicesMB: round(median(heapDeltas) / MB),
    // the figure as measured before 2026-11-30: all RSS growth from an empty server over all devices
    serverRssPer1000DevicesFromEmptyMB: round(median(fromEmpty) / MB),
    serverBaselineRssMB: round(median(baselines) / MB),
    runs: {
      serverRssPer1000DevicesMBPerRun: deltas.map((d) => round(d / MB)), devicesConnectMs: connectMs.map((x) => round(x)), measuredAfterGc: true,
      method: `RSS after GC with ${half} devices connected and with ${devices}: growth per 1,000 further devices`,
    },
  };
}

/** Key pairs made here, public keys registered in one batch; returns each device's MQTT token (good for one CONNECT). */
async function enrollOverHttp(baseUrl: string, adminToken: string, ids: string[]): Promise<Map<string, string>> {
  const { makeDeviceToken, newDeviceKeyPair } = await import('../shared/device-token.ts');
  const keys = ids.map((deviceId) => ({ deviceId, ...newDeviceKeyPair() }));
  const post = async (path: string, body: unknown, auth: boolean) => {
    const res = await fetch(baseUrl + path, { method: 'POST', headers: { 'content-type': 'application/json', ...(auth ? { authorization: `Bearer ${adminToken}` } : {}) }, body: JSON.stringify(body) });
    if (res.status !== 201) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    return res.json();
  };
  const tok = await post('/v1/enrollment-tokens', { uses: ids.length, ttlSeconds: 600 }, true);
  await post('/v1/enroll', { enrollmentToken: tok.token, devices: keys.map((k) => ({ deviceId: k.deviceId, publicKey: k.publicKey })) }, false);
  return new Map(keys.map((k) => [k.deviceId, makeDeviceToken(k.privateKey, { deviceId: k.deviceId, aud: 'mqtt', nowMs: Date.now(), lifetimeSeconds: 300 })]));
}

function serverChild(): void {
  let app: Awaited<ReturnType<typeof buildServer>> | null = null;
  const gc = (globalThis as { gc?: () => void }).gc;
  serveParent(async (m) => {
    if (m.type === 'start') {
      const { buildServer } = await import('../server/app.ts');
      // the product's defaults: device credentials required, allowUnenrolledDevices off
      app = await buildServer({ dataDir: m.dataDir as string, httpPort: 0, mqttPort: 0, logLevel: 'silent', bootstrapAdminToken: m.adminToken as string });
      await app.listen({ host: '127.0.0.1', port: 0 });
      return { type: 'ready', httpPort: (app.server.address() as { port: number }).port, mqttPort: app.fleet.broker.port };
    }
    if (m.type === 'rss') {
      if (!gc) throw new Error('run with --expose-gc');
      for (let i = 0; i < 3; i++) { gc(); await sleep(50); }
      const mem = process.memoryUsage();
      // FLEET_BENCH_HEAP_SNAPSHOT_DIR: a heap snapshot at each measurement, to see what a connection holds
      if (process.env.FLEET_BENCH_HEAP_SNAPSHOT_DIR) (await import('node:v8')).writeHeapSnapshot(join(process.env.FLEET_BENCH_HEAP_SNAPSHOT_DIR, `server-${Date.now()}.heapsnapshot`));
      return { type: 'rss', rss: mem.rss, heapUsed: mem.heapUsed, external: mem.external, arrayBuffers: mem.arrayBuffers, connectedClients: app?.fleet.broker.connectedClients() ?? 0 };
    }
  }, async () => { await app?.close(); });
}

/** Bare mqtt.js clients that look like agents to the server (connect, will, subscribe, presence). */
function devicesChild(): void {
  const clients: MqttClient[] = [];
  serveParent(async (m) => {
    if (m.type !== 'start') return;
    const { default: mqtt } = await import('mqtt');
    const { topics } = await import('../shared/topics.ts');
    const { AGENT_VERSION } = await import('../shared/version.ts');
    const t0 = performance.now();
    const list = m.devices as { id: string; password: string }[];
    for (let i = 0; i < list.length; i += 100) {
      clients.push(...await Promise.all(list.slice(i, i + 100).map((d) => deviceClient(mqtt, topics, AGENT_VERSION, m.mqttPort as number, d.id, d.password))));
    }
    return { type: 'connected', connected: clients.length, ms: performance.now() - t0 };
  }, async () => { for (const c of clients) c.end(true); });
}

type Mqtt = typeof import('mqtt').default;
type Topics = typeof import('../shared/topics.ts').topics;

function deviceClient(mqtt: Mqtt, topics: Topics, agentVersion: string, port: number, id: string, password: string): Promise<MqttClient> {
  const presence = (online: boolean) => JSON.stringify({ deviceId: id, online, ts: new Date().toISOString(), hardware: 'rpi4', tags: [], agentVersion });
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
      clientId: id, username: id, password, protocolVersion: 4, clean: true, keepalive: 30, reconnectPeriod: 0, connectTimeout: 30_000,
      will: { topic: topics.presence(id), payload: Buffer.from(presence(false)), qos: 1, retain: true },
    });
    c.once('error', (err) => reject(new Error(`${id}: ${err.message}`)));
    c.once('connect', () => {
      c.subscribe(topics.desired(id), { qos: 1 }, (err) => {
        if (err) return reject(err);
        c.publish(topics.presence(id), presence(true), { qos: 1, retain: true }, (e) => (e ? reject(e) : resolve(c)));
      });
    });
  });
}

if (isMain(import.meta.url)) {
  const role = childRole();
  if (role === 'agent') agentChild();
  else if (role === 'bare') bareChild();
  else if (role === 'server') serverChild();
  else if (role === 'devices') devicesChild();
  else {
    const { values } = parseArgs({ options: { runs: { type: 'string' }, devices: { type: 'string' }, inferences: { type: 'string' } } });
    const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
    await runAlone(() => benchMemory({ runs: num(values.runs), devices: num(values.devices), inferences: num(values.inferences) }));
  }
}
