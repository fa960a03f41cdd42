// A hostile broker must not be able to spend the agent's memory. mqtt.js buffers a whole incoming packet
// before anyone sees it (up to MQTT's 256 MiB); four 250 MB desired messages took an agent from 166 MB to
// 980 MB. The agent now reads every incoming fixed header at the stream (shared/mqtt-packet-size.ts via
// device-agent/bounded-mqtt.ts) and cuts the connection when one announces more than
// maxIncomingPacketBytes (default 1 MiB), before the body is buffered; it reconnects with its backoff
// and stays up. Real agent in its own process (so its RSS is its own), a raw "broker" on 127.0.0.1 that
// speaks MQTTS with a certificate from the CA the agent pins: the guard sits on the TLS socket's reads.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { topics } from '../../shared/topics.ts';
import { devTls, tempDir } from '../helpers/harness.ts';
import { HostileBroker } from './hostile/hostile-broker.ts';
import { waitFor } from './helpers.ts';

const RUNNER = fileURLToPath(new URL('./hostile/agent-runner.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ANNOUNCED = 250 * 1024 * 1024;
const LIMIT = 1024 * 1024;
/** the broker streams at most this much per attack: an agent without the guard reads it all and never hangs up */
const STREAM_CAP = 64 * 1024 * 1024;
/**
 * RSS may grow by at most this much over four attacks. With the guard, each attack puts at most one socket
 * read (<= 64 KiB) into the agent before the cut; the rest is allocator and GC noise plus four reconnects
 * (measured: well under 8 MiB). Without it, a single attack holds STREAM_CAP (64 MiB) here, 250 MiB in the
 * reported case: 24 MiB separates the two with room on both sides.
 */
const RSS_BOUND = 24 * 1024 * 1024;
const DEVICE = 'victim-1';

interface Line { event: string; [k: string]: unknown }
let broker: HostileBroker;
let child: ChildProcess;
let dir: string;
const lines: Line[] = [];
const refusals = () => lines.filter((l) => l.event === 'log' && l.name === 'mqtt_packet_refused');

async function rss(): Promise<number> {
  const n = lines.length;
  child.stdin!.write(`${JSON.stringify({ cmd: 'rss' })}\n`);
  await waitFor(() => lines.slice(n).some((l) => l.event === 'rss'), 10_000, 'rss line');
  return lines.slice(n).find((l) => l.event === 'rss')!.rss as number;
}

beforeAll(async () => {
  dir = tempDir('fleet-hostile-');
  const tls = devTls();
  broker = new HostileBroker({ announce: ANNOUNCED, streamCap: STREAM_CAP, topic: topics.desired(DEVICE), tls: { key: readFileSync(tls.keyFile, 'utf8'), cert: readFileSync(tls.certFile, 'utf8') } });
  await broker.start();
  const config = {
    deviceId: DEVICE, dataDir: join(dir, 'agent'), mqttUrl: `mqtts://127.0.0.1:${broker.port}`, serverUrl: 'https://127.0.0.1:9', caFile: tls.caFile,
    rootPublicKey: Buffer.alloc(32, 7).toString('base64'), reconnectMinMs: 100, reconnectMaxMs: 400, maxIncomingPacketBytes: LIMIT,
  };
  child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', RUNNER, JSON.stringify(config)], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
  createInterface({ input: child.stdout! }).on('line', (t) => { try { lines.push(JSON.parse(t)); } catch { /* not ours */ } });
  await waitFor(() => broker.subscribes.length >= 1, 20_000, 'agent connected and subscribed');
}, 30_000);

afterAll(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.stdin!.write(`${JSON.stringify({ cmd: 'stop' })}\n`);
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  }
  await broker?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the agent bounds incoming MQTT packets at the stream', () => {
  it('a packet under the limit (512 KiB) is read as usual: the connection stays', async () => {
    const connections = broker.connections.length;
    broker.publishWhole(512 * 1024);
    await new Promise((r) => setTimeout(r, 1000));
    expect(broker.connections.length).toBe(connections);
    expect(refusals()).toHaveLength(0);
  });

  it('four PUBLISHes announcing 250 MB: each cut as its header arrives, the agent reconnects with backoff, stays up, RSS flat', async () => {
    const before = await rss();
    broker.attacksLeft = 4;
    broker.kick(); // the agent reconnects; every SUBSCRIBE now gets the attack
    await waitFor(() => broker.attacks.length === 4 && broker.attacks.every((a) => a.endedAt !== null), 30_000, 'four attacks cut off by the agent').catch((e) => {
      console.log(JSON.stringify({ attacks: broker.attacks, connections: broker.connections.length, agentLog: lines.slice(-10) }));
      throw e;
    });
    const lastEnd = Math.max(...broker.attacks.map((a) => a.endedAt!));
    await waitFor(() => broker.subscribes.some((t) => t > lastEnd), 10_000, 'the agent back, subscribed to a calm broker');
    const after = await rss();

    for (const a of broker.attacks) {
      expect(a.closedByClient).toBe(true);
      expect(a.endedAt! - a.startedAt).toBeLessThan(2000);
      // what the broker got out before the hang-up: kernel socket buffers at most, never the 250 MB
      expect(a.bytesWritten).toBeLessThan(32 * 1024 * 1024);
    }
    expect(refusals()).toHaveLength(4);
    for (const r of refusals()) expect(r.why).toBe(`packet of ${ANNOUNCED + 2 + topics.desired(DEVICE).length} bytes is over the ${LIMIT}-byte limit`);
    // reconnects keep the agent's backoff (reconnectMinMs 100, jittered up to x2), no tight loop. Measured
    // on the agent's clock, from its refusal to its next CONNACK: the broker's view (close seen -> next
    // connection) is late by however long the busy test process takes to notice the close, which on a
    // loaded machine made a 100 ms backoff look like 21 ms.
    const connects = lines.filter((l) => l.event === 'connected').map((l) => l.at as number);
    for (const [i, r] of refusals().entries()) {
      const next = connects.find((t) => t > (r.at as number));
      expect(next, `reconnect after attack ${i + 1}`).toBeDefined();
      expect(next! - (r.at as number)).toBeGreaterThanOrEqual(90);
    }
    expect(child.exitCode).toBeNull();
    console.log(`agent RSS before ${(before / 2 ** 20).toFixed(1)} MiB, after four 250 MB attacks ${(after / 2 ** 20).toFixed(1)} MiB (+${((after - before) / 2 ** 20).toFixed(1)} MiB); bytes the broker got out per attack: ${broker.attacks.map((a) => (a.bytesWritten / 2 ** 20).toFixed(2)).join(', ')} MiB`);
    expect(after - before).toBeLessThan(RSS_BOUND);
  });
});
