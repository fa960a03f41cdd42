// TLS built in: the API serves HTTPS and the embedded broker MQTTS when given a certificate, and nothing
// plain; the agent trusts only the CA it pins (caFile); fleetctl dev-ca makes a CA and certificates a
// server and an agent can use as they are. Real server, real broker, real TLS handshakes over loopback.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeDevCa, writeIssued } from '../../cli/dev-ca.ts';
import { FleetAgent } from '../../device-agent/agent.ts';
import { parseAgentConfig } from '../../device-agent/config.ts';
import { downloadArtifact } from '../../device-agent/downloader.ts';
import { pinnedFetch, readCaFile } from '../../device-agent/pinned-fetch.ts';
import { buildServer } from '../../server/app.ts';
import { UpdateRefused } from '../../shared/reason-codes.ts';
import { assign, devTls, enrollDevices, pushBundle, startTestServer, tempDir, type DevTls, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { outcome, startAgent } from '../agent/fixture.ts';
import { endClient, tryConnect, waitFor } from './helpers.ts';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');
const FLEETCTL = join(ROOT, 'bin', 'fleetctl.mjs');
const FLEET_SERVER = join(ROOT, 'bin', 'fleet-server.mjs');

let server: TestServer;
let secrets: Map<string, string>;
let work: string;
/** a second dev CA: a server certificate from it is not the fleet's */
let otherCa: DevTls;

beforeAll(async () => {
  server = await startTestServer({ tls: true, config: { allowUnenrolledDevices: false } });
  secrets = await enrollDevices(server, ['tls-1', 'tls-2', 'tls-3', 'tls-4']);
  work = tempDir('fleet-tls-test-');
  const caDir = join(work, 'other-ca');
  const { certFile: caFile } = writeDevCa(caDir);
  const issued = writeIssued(caDir, join(caDir, 'server'), { name: 'localhost', dns: ['localhost'], ips: ['127.0.0.1'] });
  otherCa = { caDir, caFile, certFile: issued.certFile, keyFile: issued.keyFile };
}, 60_000);

afterAll(async () => {
  await server?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

const mqttPort = () => Number(new URL(server.mqttUrl).port);
const httpPort = () => Number(new URL(server.baseUrl).port);

/** An agent that is not awaited to connect (it should not), with its log lines. */
function looseAgent(deviceId: string, over: Record<string, unknown>): { agent: FleetAgent; log: { event: string; fields: Record<string, unknown> }[] } {
  const log: { event: string; fields: Record<string, unknown> }[] = [];
  const dataDir = join(work, 'agents', deviceId);
  mkdirSync(dataDir, { recursive: true });
  const agent = new FleetAgent(parseAgentConfig({
    deviceId, dataDir, mqttUrl: server.mqttUrl, serverUrl: server.baseUrl, rootPublicKey: server.rootPublicKey,
    deviceSecret: secrets.get(deviceId), reconnectMinMs: 100, reconnectMaxMs: 400, ...over,
  }), { log: (event, fields) => log.push({ event, fields }) });
  return { agent, log };
}

describe('the server speaks TLS only when given a certificate', () => {
  it('a device with the fleet CA connects over mqtts://; the same credential over plain mqtt:// to that port never reaches CONNACK', async () => {
    const ca = readCaFile(server.caFile!);
    const good = await tryConnect(server, { clientId: 'tls-1', username: 'tls-1', password: secrets.get('tls-1'), ca, rejectUnauthorized: true });
    expect(good.ok).toBe(true);
    if (good.ok) await endClient(good.client);

    const plain = await tryConnect(`mqtt://127.0.0.1:${mqttPort()}`, { clientId: 'tls-2', username: 'tls-2', password: secrets.get('tls-2'), connectTimeout: 3000 });
    expect(plain.ok).toBe(false);
    await waitFor(() => server.app.fleet.broker.connectedClients() === 0, 5000, 'no client connected');
    expect(server.app.fleet.db.prepare('SELECT COUNT(*) AS n FROM devices WHERE device_id = ? AND online = 1').get('tls-2')).toEqual({ n: 0 });
  });

  it('a plain MQTT CONNECT written on the raw socket gets no CONNACK byte (0x20) back, and the socket is closed', async () => {
    // CONNECT, MQTT 3.1.1, clean session, keepalive 60, client id "tls-3"
    const id = Buffer.from('tls-3');
    const body = Buffer.concat([Buffer.from([0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, id.length]), id]);
    const packet = Buffer.concat([Buffer.from([0x10, body.length]), body]);
    const got: Buffer[] = [];
    const closed = await new Promise<boolean>((resolve) => {
      const s = netConnect(mqttPort(), '127.0.0.1', () => s.write(packet));
      const t = setTimeout(() => { s.destroy(); resolve(false); }, 10_000);
      s.on('data', (d) => got.push(d));
      s.on('error', () => {});
      s.on('close', () => { clearTimeout(t); resolve(true); });
    });
    expect(closed).toBe(true);
    const reply = Buffer.concat(got);
    expect(reply.length === 0 || reply[0] !== 0x20).toBe(true);
  });

  it('plain HTTP to the API port gets no answer; HTTPS with the fleet CA gets /healthz', async () => {
    const plain = await fetch(`http://127.0.0.1:${httpPort()}/healthz`, { signal: AbortSignal.timeout(10_000) }).then((r) => r.status, (e: Error) => e.name);
    expect(plain).not.toBe(200);
    const tls = await pinnedFetch(readCaFile(server.caFile!))(`${server.baseUrl}/healthz`);
    expect(tls.status).toBe(200);
    expect((await tls.json()).mqttPort).toBe(mqttPort());
  });
});

describe('the agent trusts only the CA it pins', () => {
  it('an agent pinned to another CA refuses the broker: mqtt_tls_refused with the TLS reason, never connected', async () => {
    const { agent, log } = looseAgent('tls-3', { caFile: otherCa.caFile });
    let connected = 0;
    agent.on('connected', () => connected++);
    try {
      await agent.start();
      await waitFor(() => log.filter((l) => l.event === 'mqtt_tls_refused').length >= 2, 20_000, 'two refused handshakes');
      const refused = log.find((l) => l.event === 'mqtt_tls_refused')!;
      expect(refused.fields.code).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
      expect(refused.fields.caFile).toBe(otherCa.caFile);
      expect(connected).toBe(0);
      expect(server.app.fleet.db.prepare('SELECT COUNT(*) AS n FROM status_events WHERE device_id = ?').get('tls-3')).toEqual({ n: 0 });
    } finally {
      await agent.stop();
    }
  });

  it('an agent with mqtts:// and no caFile uses Node\'s default store, which does not hold a dev CA: refused the same way', async () => {
    const { agent, log } = looseAgent('tls-4', {});
    try {
      await agent.start();
      await waitFor(() => log.some((l) => l.event === 'mqtt_tls_refused'), 20_000, 'refused handshake');
      expect(log.find((l) => l.event === 'mqtt_tls_refused')!.fields.code).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
      expect(log.filter((l) => l.event === 'mqtt_tls_refused').every((l) => l.fields.caFile === null)).toBe(true);
    } finally {
      await agent.stop();
    }
  });

  it('a download pinned to another CA is refused before any byte (DOWNLOAD_FAILED naming the TLS error); pinned to the fleet CA it succeeds', async () => {
    const v1 = await pushBundle(server, 'tiny', tinyClassifier(1));
    await assign(server, v1.manifestSha256, ['tls-1']);
    const sha = v1.manifest.artifact;
    const common = { url: `${server.baseUrl}/v1/artifacts/${sha.sha256}`, expectedLength: sha.length, retries: 1, backoffMs: 10, timeoutMs: 10_000, headers: { authorization: `Bearer ${secrets.get('tls-1')}` } };
    const wrong = join(work, 'wrong.part');
    const err = await downloadArtifact({ ...common, dest: wrong, fetch: pinnedFetch(readCaFile(otherCa.caFile)) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpdateRefused);
    expect((err as UpdateRefused).reason).toBe('DOWNLOAD_FAILED');
    expect((err as Error).message).toMatch(/unable to verify the first certificate/);
    expect(() => statSync(wrong)).toThrow(); // nothing written
    const right = await downloadArtifact({ ...common, dest: join(work, 'right.part'), fetch: pinnedFetch(readCaFile(server.caFile!)) });
    expect(right.bytes).toBe(sha.length);
  });

  it('a certificate from the fleet CA for another host name is refused too (ERR_TLS_CERT_ALTNAME_INVALID)', async () => {
    const tls = devTls();
    const elsewhere = writeIssued(tls.caDir, join(work, 'elsewhere'), { name: 'elsewhere', dns: ['elsewhere.example'] });
    const other = await startTestServer({ tls: { ...tls, certFile: elsewhere.certFile, keyFile: elsewhere.keyFile } });
    try {
      const r = await tryConnect(other.mqttUrl, { clientId: 'tls-1', ca: readCaFile(tls.caFile), rejectUnauthorized: true, connectTimeout: 5000 });
      expect(r.ok).toBe(false);
      expect(r.ok ? '' : r.message).toMatch(/IP: 127\.0\.0\.1 is not in the cert's list/);
      const f = await pinnedFetch(readCaFile(tls.caFile))(`${other.baseUrl}/healthz`).catch((e: NodeJS.ErrnoException) => e.code);
      expect(f).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
    } finally {
      await other.close();
    }
  });

  it('an agent config that pins a CA but names a plain URL is refused at parse time', () => {
    const base = { deviceId: 'x-1', dataDir: work, rootPublicKey: server.rootPublicKey, caFile: server.caFile };
    expect(() => parseAgentConfig({ ...base, mqttUrl: 'mqtt://127.0.0.1:1883', serverUrl: server.baseUrl })).toThrow('mqttUrl: caFile is set, so the broker must be mqtts://');
    expect(() => parseAgentConfig({ ...base, mqttUrl: server.mqttUrl, serverUrl: 'http://127.0.0.1:8080' })).toThrow('serverUrl: caFile is set, so the server must be https://');
    expect(() => new FleetAgent(parseAgentConfig({ ...base, caFile: join(work, 'missing.pem'), mqttUrl: server.mqttUrl, serverUrl: server.baseUrl }))).toThrow(`caFile ${join(work, 'missing.pem')}: cannot read it (ENOENT)`);
  });
});

describe('downloads over the pinned CA keep resume, timeout and abort', () => {
  let art: { sha256: string; length: number };
  let bytes: Buffer;
  const opts = (dest: string) => ({
    url: `${server.baseUrl}/v1/artifacts/${art.sha256}`, dest, expectedLength: art.length, retries: 0, backoffMs: 10, timeoutMs: 10_000,
    headers: { authorization: `Bearer ${secrets.get('tls-2')}` }, fetch: pinnedFetch(readCaFile(server.caFile!)),
  });
  beforeAll(async () => {
    const v = await pushBundle(server, 'tiny', tinyClassifier(5));
    await assign(server, v.manifestSha256, ['tls-2']);
    art = v.manifest.artifact;
    bytes = readFileSync(server.app.fleet.blobs.pathOf(art.sha256));
  });

  it('a partial file is resumed with Range (206): only the rest is fetched, and the file is the artifact', async () => {
    const dest = join(work, 'resume.part');
    const half = Math.floor(art.length / 2);
    writeFileSync(dest, bytes.subarray(0, half));
    let first = -1;
    const r = await downloadArtifact({ ...opts(dest), onProgress: (n) => { if (first < 0) first = n; } });
    expect(r).toMatchObject({ bytes: art.length, attempts: 1, resumed: true });
    expect(r.content.sha256).toBe(art.sha256); // hashed while downloading, the part already on disk first
    expect(first).toBeGreaterThan(half); // the first chunk written lands after the half already there
    expect(createHash('sha256').update(readFileSync(dest)).digest('hex')).toBe(art.sha256);
  });

  it('an aborted download stops at once (DOWNLOAD_FAILED "the agent is stopping"), a silent TLS server times out', async () => {
    const stop = new AbortController();
    stop.abort();
    await expect(downloadArtifact({ ...opts(join(work, 'abort.part')), signal: stop.signal })).rejects.toThrow('the agent is stopping');

    // a server that completes the TLS handshake and then never answers
    const tls = devTls();
    const silent = createTlsServer({ key: readFileSync(tls.keyFile), cert: readFileSync(tls.certFile) }, () => { /* say nothing */ });
    silent.on('connection', (c: Socket) => silentSockets.push(c));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const port = (silent.address() as AddressInfo).port;
      const t0 = Date.now();
      const err = await downloadArtifact({ ...opts(join(work, 'silent.part')), url: `https://127.0.0.1:${port}/v1/artifacts/${art.sha256}`, timeoutMs: 500 }).catch((e: Error) => e);
      expect((err as UpdateRefused).reason).toBe('DOWNLOAD_FAILED');
      expect((err as Error).message).toMatch(/aborted due to timeout/);
      expect(Date.now() - t0).toBeLessThan(5000);
    } finally {
      await new Promise<void>((r) => { silent.close(() => r()); for (const c of silentSockets) c.destroy(); });
    }
  });
});
const silentSockets: Socket[] = [];

describe('fleetctl dev-ca output is usable as it is', () => {
  it('init + issue: keys 0600; a server started with the files serves a model to an agent pinned to the CA; fleetctl reaches it with NODE_EXTRA_CA_CERTS', async () => {
    const dir = join(work, 'fleetctl');
    await run(process.execPath, [FLEETCTL, 'dev-ca', 'init', '--out', join(dir, 'ca')], { cwd: ROOT });
    const issued = await run(process.execPath, [FLEETCTL, 'dev-ca', 'issue', '--ca', join(dir, 'ca'), '--name', 'fleet-test', '--ip', '127.0.0.1', '--dns', 'localhost', '--out', join(dir, 'srv'), '--json'], { cwd: ROOT });
    const files = JSON.parse(issued.stdout) as { certFile: string; keyFile: string; caFile: string };
    expect(files).toMatchObject({ certFile: join(dir, 'srv', 'fleet-test.pem'), keyFile: join(dir, 'srv', 'fleet-test.key'), caFile: join(dir, 'ca', 'ca.pem') });
    expect(statSync(join(dir, 'ca', 'ca.key')).mode & 0o777).toBe(0o600);
    expect(statSync(files.keyFile).mode & 0o777).toBe(0o600);
    // a second init on the same folder would orphan every device pinned to the first CA
    const again = await run(process.execPath, [FLEETCTL, 'dev-ca', 'init', '--out', join(dir, 'ca')], { cwd: ROOT }).then(() => 0, (e: { code: number; stderr: string }) => e);
    expect(again).toMatchObject({ code: 1, stderr: expect.stringContaining('already holds a CA') });

    const own = await startTestServer({ tls: { caDir: join(dir, 'ca'), caFile: files.caFile, certFile: files.certFile, keyFile: files.keyFile } });
    try {
      expect(own.baseUrl).toMatch(/^https:/);
      const deviceId = 'ctl-1';
      const agent = await startAgent(own, deviceId, { deviceSecret: (await enrollDevices(own, [deviceId])).get(deviceId), caFile: files.caFile });
      try {
        const v1 = await pushBundle(own, 'tiny', tinyClassifier(3));
        await assign(own, v1.manifestSha256, [deviceId]);
        const s = await outcome(agent, v1.manifestSha256, 30_000);
        expect(s.state).toBe('active'); // downloaded over HTTPS through the pinned CA, installed
        expect(agent.active?.manifestSha256).toBe(v1.manifestSha256);
      } finally {
        await agent.stop();
      }
      const ctl = await run(process.execPath, [FLEETCTL, '--server', own.baseUrl, '--json', 'devices'], { cwd: ROOT, env: { ...process.env, FLEET_TOKEN: own.adminToken, NODE_EXTRA_CA_CERTS: files.caFile } });
      expect(JSON.parse(ctl.stdout).devices.map((d: { deviceId: string }) => d.deviceId)).toEqual(['ctl-1']);
    } finally {
      await own.close();
    }
  }, 90_000);
});

describe('bad TLS files stop the server at start with an error naming the file', () => {
  const cases: [string, () => Record<string, string>, RegExp][] = [
    ['a missing certificate', () => ({ tlsCertFile: join(work, 'nope.pem'), tlsKeyFile: devTls().keyFile }), /^tlsCertFile \S+nope\.pem: cannot read it \(no such file\)$/],
    ['a certificate file that is not PEM', () => ({ tlsCertFile: writeTo('garbage.pem', 'hello'), tlsKeyFile: devTls().keyFile }), /^tlsCertFile \S+garbage\.pem: not a PEM file/],
    ['a key that is not PEM', () => ({ tlsCertFile: devTls().certFile, tlsKeyFile: writeTo('bad.key', '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n') }), /^tlsKeyFile \S+bad\.key: not a usable PEM private key/],
    ['the key of another certificate', () => ({ tlsCertFile: devTls().certFile, tlsKeyFile: otherCa.keyFile }), /^tlsKeyFile \S+ is not the key of the certificate in tlsCertFile \S+localhost\.pem$/],
    ['a CA bundle that is a folder', () => ({ tlsCertFile: devTls().certFile, tlsKeyFile: devTls().keyFile, tlsCaFile: work }), /^tlsCaFile \S+: cannot read it \(is a folder\)$/],
    ['a certificate without its key', () => ({ tlsCertFile: devTls().certFile }), /TLS needs both tlsCertFile and tlsKeyFile/],
  ];
  const writeTo = (name: string, text: string) => { const p = join(work, name); writeFileSync(p, text); return p; };

  it.each(cases)('%s', async (_name, config, message) => {
    const dataDir = join(work, 'bad-start');
    const err = await buildServer({ dataDir, httpPort: 0, mqttPort: 0, logLevel: 'silent', ...config() }).then(() => null, (e: Error) => e);
    expect(err?.message.replace(/^invalid server config: /, '')).toMatch(message);
  });

  it('fleet-server prints one line naming the file and exits 1 (no stack trace)', async () => {
    const r = await run(process.execPath, [FLEET_SERVER], {
      cwd: ROOT, timeout: 30_000,
      env: { ...process.env, FLEET_DATA_DIR: join(work, 'bad-main'), FLEET_HTTP_PORT: '0', FLEET_MQTT_PORT: '0', FLEET_TLS_CERT_FILE: join(work, 'absent.pem'), FLEET_TLS_KEY_FILE: devTls().keyFile },
    }).then(() => ({ code: 0, stderr: '' }), (e: { code: number; stderr: string }) => e);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(`fleet-server: cannot start: tlsCertFile ${join(work, 'absent.pem')}: cannot read it (no such file)`);
  }, 40_000);
});
