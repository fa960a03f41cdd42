// Stop is bounded (issue 11, item 6): agent.stop() ends within a few seconds whatever the broker does
// (a closed port, a server that accepts and never answers, a link that goes silent after CONNACK) and
// in the middle of a download that never finishes; what was not sent stays on disk.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FleetAgent } from '../../device-agent/agent.ts';
import { parseAgentConfig } from '../../device-agent/config.ts';
import { StateStore, AgentState } from '../../device-agent/state-store.ts';
import { enqueueStatus } from '../../device-agent/status-outbox.ts';
import { assign, pushBundle, startTestServer, tempDir, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { AgentProcess } from './agent-process-handle.ts';
import { settled, startAgent } from './fixture.ts';
import { waitFor } from '../helpers/wait.ts';

const ROOT = Buffer.alloc(32, 1).toString('base64');
const BOUND_MS = 3500;

async function listen(onSocket: (s: Socket) => void): Promise<{ port: number; server: Server; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => { sockets.add(s); s.on('error', () => {}); onSocket(s); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, server, sockets };
}
async function close(l: { server: Server; sockets: Set<Socket> }) {
  for (const s of l.sockets) s.destroy();
  await new Promise((r) => l.server.close(r));
}

async function timedStop(agent: FleetAgent): Promise<number> {
  const t0 = Date.now();
  await agent.stop();
  return Date.now() - t0;
}

describe('stop() against a broker that is not there or does not answer', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => { for (const c of cleanups.splice(0)) await c(); });

  /** An agent whose record holds one outcome not yet acknowledged. */
  async function agentWithQueuedOutcome(mqttUrl: string): Promise<FleetAgent> {
    const dataDir = tempDir('fleet-stop-');
    const store = new StateStore(dataDir);
    const s = store.load(ROOT);
    enqueueStatus(s, { deviceId: 'stop-1', ts: new Date().toISOString(), state: 'failed', reason: 'DOWNLOAD_FAILED', active: null, agentVersion: '0.0.0' });
    store.save(s);
    const agent = new FleetAgent(parseAgentConfig({ deviceId: 'stop-1', dataDir, mqttUrl, serverUrl: 'http://127.0.0.1:9', rootPublicKey: ROOT, reconnectMinMs: 100 }));
    await agent.start();
    return agent;
  }
  const queued = (agent: FleetAgent) => AgentState.parse(JSON.parse(readFileSync(join(agent.config.dataDir, 'state.json'), 'utf8'))).outbox.map((s) => s.reason);

  it('a closed port', async () => {
    const l = await listen(() => {});
    const port = l.port;
    await close(l); // nothing listens there any more
    const agent = await agentWithQueuedOutcome(`mqtt://127.0.0.1:${port}`);
    await new Promise((r) => setTimeout(r, 300)); // a few refused attempts
    expect(await timedStop(agent)).toBeLessThan(BOUND_MS);
    expect(queued(agent)).toEqual(['DOWNLOAD_FAILED']);
  });

  it('a TCP server that accepts and never answers', async () => {
    const l = await listen(() => {}); // holds the socket, never sends CONNACK
    cleanups.push(() => close(l));
    const agent = await agentWithQueuedOutcome(`mqtt://127.0.0.1:${l.port}`);
    // the agent is connecting (waited for, not slept on: a loaded host took longer than a fixed 300 ms)
    await waitFor(() => l.sockets.size > 0, 10_000, 'a connection to the silent server');
    expect(await timedStop(agent)).toBeLessThan(BOUND_MS);
    expect(queued(agent)).toEqual(['DOWNLOAD_FAILED']);
  });
});

describe('SIGTERM', () => {
  it('ends the agent process within the bound with the broker unreachable', async () => {
    const l = await listen(() => {}); // accepts, never answers
    try {
      const dataDir = tempDir('fleet-sigterm-');
      const proc = new AgentProcess(AgentProcess.writeSpec(dataDir, {
        config: { deviceId: 'sigterm-1', dataDir, mqttUrl: `mqtt://127.0.0.1:${l.port}`, serverUrl: 'http://127.0.0.1:9', rootPublicKey: ROOT, reconnectMinMs: 100 },
      }));
      await proc.waitFor((x) => x.event === 'ready', 20_000);
      await new Promise((r) => setTimeout(r, 300)); // a few connection attempts (and the runner's own SIGTERM handler installed)
      const t0 = Date.now();
      proc.kill('SIGTERM');
      const exit = await proc.exited;
      expect(Date.now() - t0).toBeLessThan(BOUND_MS);
      expect(exit).toEqual({ code: 0, signal: null });
      expect(proc.lines.some((x) => x.event === 'stopped')).toBe(true);
    } finally {
      await close(l);
    }
  }, 30_000);
});

describe('stop() with a real broker', () => {
  let server: TestServer;
  beforeAll(async () => { server = await startTestServer(); }, 60_000);
  afterAll(async () => { await server?.close(); });

  it('a link that goes silent after CONNACK (half-open): cut, not waited for', async () => {
    const broker = new URL(server.mqttUrl);
    let frozen = false;
    const relay = await listen((client) => {
      const up = tcpConnect(Number(broker.port), broker.hostname);
      up.on('error', () => {});
      client.on('data', (d) => { if (!frozen) up.write(d); });
      up.on('data', (d) => { if (!frozen) client.write(d); });
      client.on('close', () => up.destroy());
    });
    try {
      const agent = await startAgent(server, 'stop-half-open', { mqttUrl: `mqtt://127.0.0.1:${relay.port}`, keepaliveSeconds: 60 });
      frozen = true;
      expect(await timedStop(agent)).toBeLessThan(BOUND_MS);
    } finally {
      await close(relay);
    }
  });

  it('during a download that never finishes: aborted, the partial file kept in staging', async () => {
    const v1 = await pushBundle(server, 'tiny', tinyClassifier(1));
    const drip: typeof fetch = async (_input, init) => {
      const signal = init?.signal;
      return new Response(new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(new Uint8Array(64));
          signal?.addEventListener('abort', () => c.error(signal.reason), { once: true });
        },
      }), { status: 200 });
    };
    const agent = await startAgent(server, 'stop-drip', { download: { retries: 5, backoffMs: 1000, timeoutMs: 60_000 } }, { fetch: drip });
    const downloading = settled(agent, v1.manifestSha256, ['downloading']);
    await assign(server, v1.manifestSha256, [agent.deviceId]);
    await downloading;
    await new Promise((r) => setTimeout(r, 100));
    expect(await timedStop(agent)).toBeLessThan(BOUND_MS);
    const staging = join(agent.config.dataDir, 'staging');
    expect(existsSync(staging) && readdirSync(staging)).toEqual([`${v1.manifest.artifact.sha256}.part`]);
  });
});
