// The telemetry outbox on disk (bounded, survives reopening, drops damaged files) and the localhost
// inference endpoint.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TelemetryOutbox } from '../../device-agent/telemetry-outbox.ts';
import { startLocalHttp } from '../../device-agent/local-http.ts';
import type { FleetAgent } from '../../device-agent/agent.ts';
import type { Telemetry } from '../../shared/messages.ts';
import { assign, pushBundle, startTestServer, tempDir, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { settled, startAgent } from './fixture.ts';

const window = (seq: number): Telemetry => ({
  deviceId: 'd-1', seq, windowStart: new Date(0).toISOString(), windowEnd: new Date(1000).toISOString(), active: null,
  count: seq, errors: 0, latencyMs: { p50: 0, p95: 0, p99: 0, max: 0 }, rssBytes: 1,
});

describe('TelemetryOutbox', () => {
  it('keeps windows across reopening, in order, bounded by dropping the oldest', () => {
    const dir = join(tempDir('fleet-outbox-'), 'outbox');
    const box = new TelemetryOutbox(dir, 3);
    box.open();
    for (const s of [1, 2, 3, 4, 5]) box.add(window(s));
    expect(box.pending()).toEqual([3, 4, 5]);
    expect(box.dropped).toBe(2);
    box.remove(4);
    writeFileSync(join(dir, '000000000009.json.tmp'), '{"half'); // a crash mid-write
    const again = new TelemetryOutbox(dir, 3);
    again.open();
    expect(again.pending()).toEqual([3, 5]);
    expect(again.read(5)?.count).toBe(5);
  });

  it('add() returns exactly the JSON it stored (the agent publishes that text); remove() deletes a held window, and one it does not hold without error', () => {
    const dir = join(tempDir('fleet-outbox-'), 'outbox');
    const box = new TelemetryOutbox(dir, 10);
    box.open();
    const text = box.add(window(7));
    expect(text).toBe(readFileSync(join(dir, '000000000007.json'), 'utf8'));
    expect(JSON.parse(text)).toEqual(window(7));
    box.remove(7);
    expect(readdirSync(dir)).toEqual([]);
    writeFileSync(join(dir, '000000000008.json'), JSON.stringify(window(8))); // not held by this outbox
    box.remove(8);
    box.remove(9); // neither held nor on disk
    expect(readdirSync(dir)).toEqual([]);
    expect(box.pending()).toEqual([]);
  });

  it('drops a damaged window instead of sending it', () => {
    const dir = join(tempDir('fleet-outbox-'), 'outbox');
    const box = new TelemetryOutbox(dir, 10);
    box.open();
    box.add(window(1));
    writeFileSync(join(dir, '000000000001.json'), '{"not": "telemetry"}');
    expect(box.read(1)).toBeNull();
    expect(box.pending()).toEqual([]);
  });
});

describe('localhost inference endpoint', () => {
  let server: TestServer;
  let agent: FleetAgent;
  let http: Awaited<ReturnType<typeof startLocalHttp>>;

  beforeAll(async () => {
    server = await startTestServer();
    agent = await startAgent(server, 'http-1');
    http = await startLocalHttp(agent, 0);
  }, 60_000);
  afterAll(async () => { await http?.close(); await agent?.stop(); await server?.close(); });

  const post = (body: unknown) => fetch(`http://127.0.0.1:${http.port}/v1/infer`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });

  it('answers 503 before a model is active, then inference results with the model that gave them', async () => {
    const input = { inputs: { x: { dims: [1, 8], data: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8] } } };
    expect((await post(input)).status).toBe(503);
    const v1 = await pushBundle(server, 'tiny', tinyClassifier(1));
    await assign(server, v1.manifestSha256, [agent.deviceId]);
    await settled(agent, v1.manifestSha256, ['active']);
    const res = await post(input);
    expect(res.status).toBe(200);
    const body = await res.json() as { model: { version: number }; outputs: { probs: { dims: number[]; data: number[] } } };
    expect(body.model.version).toBe(v1.version);
    expect(body.outputs.probs.dims).toEqual([1, 4]);
    expect(body.outputs.probs.data.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
    const status = await (await fetch(`http://127.0.0.1:${http.port}/v1/status`)).json() as { active: { manifestSha256: string } };
    expect(status.active.manifestSha256).toBe(v1.manifestSha256);
  });

  it('answers 400 with the bad field for a malformed body', async () => {
    const res = await post({ inputs: { x: { dims: [1, 8], data: 'nope' } } });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { message: string }).message).toMatch(/inputs\.x\.data/);
  });
});
