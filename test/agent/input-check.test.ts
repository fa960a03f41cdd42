// Caller errors are not model errors (issue 11, item 5): inputs that do not match the manifest's io
// signature are refused before the model sees them (InputMismatch; 400 over localhost HTTP) and do not
// count against a model on probation.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetAgent } from '../../device-agent/agent.ts';
import { checkFeeds, InputMismatch } from '../../device-agent/input-check.ts';
import { startLocalHttp } from '../../device-agent/local-http.ts';
import type { IoSpec } from '../../shared/messages.ts';
import type { Feeds } from '../../runtime/onnx-session.ts';
import { assign, pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { settled, startAgent } from './fixture.ts';

const io: IoSpec[] = [{ name: 'x', type: 'float32', shape: ['N', 8] }, { name: 'k', type: 'int64', shape: [1, null] }];
const ok: Feeds = { x: { data: new Float32Array(16), dims: [2, 8] }, k: { data: new BigInt64Array(3), dims: [1, 3] } };

describe('checkFeeds', () => {
  it.each([
    ['exact inputs', ok, null],
    ['plain arrays with a type', { x: { data: [0, 0, 0, 0, 0, 0, 0, 0], dims: [1, 8] }, k: { data: [1], dims: [1, 1], type: 'int64' } }, null],
    ['an unknown input', { ...ok, y: ok.x }, 'INPUT_NAME'],
    ['a missing input', { x: ok.x }, 'INPUT_NAME'],
    ['the wrong dtype', { ...ok, x: { data: new Int32Array(16), dims: [2, 8] } }, 'INPUT_DTYPE'],
    ['a fixed dim that differs', { ...ok, x: { data: new Float32Array(14), dims: [2, 7] } }, 'INPUT_SHAPE'],
    ['the wrong rank', { ...ok, x: { data: new Float32Array(16), dims: [16] } }, 'INPUT_SHAPE'],
    ['data that does not fill the shape', { ...ok, x: { data: new Float32Array(15), dims: [2, 8] } }, 'INPUT_SHAPE'],
  ] as [string, Feeds, string | null][])('%s', (_name, feeds, kind) => {
    const err = (() => { try { checkFeeds(feeds, io); return null; } catch (e) { return e; } })();
    if (kind === null) expect(err).toBeNull();
    else expect(err).toMatchObject({ name: 'InputMismatch', kind });
  });
});

describe('wrong inputs during probation', () => {
  let server: TestServer;
  let agent: FleetAgent;
  beforeAll(async () => { server = await startTestServer(); }, 60_000);
  afterAll(async () => { await agent?.stop(); await server?.close(); });

  it('are refused with a typed error (400 over HTTP) and do not revert a good model', async () => {
    const good: Feeds = { x: { data: new Float32Array(8).fill(0.25), dims: [1, 8] } };
    const v1 = await pushBundle(server, 'tiny', tinyClassifier(1));
    const v2 = await pushBundle(server, 'tiny', tinyClassifier(2));
    // one model error in a 10-call window at 5% already fails probation
    agent = await startAgent(server, 'callers-1', { probationInferences: 10, probationSeconds: 0, probationMaxErrorRate: 0.05 });
    await assign(server, v1.manifestSha256, [agent.deviceId]);
    await settled(agent, v1.manifestSha256, ['active']);
    for (let i = 0; i < 10; i++) await agent.infer(good);
    await settled(agent, v1.manifestSha256, ['probation_passed']);
    await assign(server, v2.manifestSha256, [agent.deviceId]);
    await settled(agent, v2.manifestSha256, ['active']);
    expect(agent.onProbation).toBe(true);

    const wrong: Feeds = { x: { data: new Float32Array(7), dims: [1, 7] } };
    for (let i = 0; i < 3; i++) await expect(agent.infer(wrong)).rejects.toBeInstanceOf(InputMismatch);
    const http = await startLocalHttp(agent, 0);
    try {
      const res = await fetch(`http://127.0.0.1:${http.port}/v1/infer`, { method: 'POST', body: JSON.stringify({ inputs: { x: { dims: [1, 7], data: [1, 2, 3, 4, 5, 6, 7] } } }) });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ error: 'INPUT_MISMATCH', kind: 'INPUT_SHAPE', message: expect.stringMatching(/\[1, 7\]/) });
    } finally {
      await http.close();
    }
    expect(agent.onProbation).toBe(true);
    const passed = settled(agent, v2.manifestSha256, ['probation_passed', 'reverted', 'failed']);
    for (let i = 0; i < 10; i++) await agent.infer(good);
    expect((await passed).state).toBe('probation_passed');
    expect(agent.active?.manifestSha256).toBe(v2.manifestSha256);
  }, 60_000);
});
