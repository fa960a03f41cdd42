// A new version whose artifact the device already holds in a slot (what a fleet revert sends: the
// previous model signed again under a higher version) is staged from that slot and checked against the
// new signed manifest: no download. If the slot's bytes are damaged, the device downloads instead.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FleetAgent } from '../../device-agent/agent.ts';
import { assign, pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { outcome, startAgent } from './fixture.ts';

describe('artifact already on the device', () => {
  let server: TestServer;
  const agents: FleetAgent[] = [];
  beforeAll(async () => { server = await startTestServer(); }, 60_000);
  afterAll(async () => { for (const a of agents) await a.stop(); await server?.close(); });

  /** Artifact requests this agent makes (its own fetch, counted). */
  function counting(): { fetch: typeof fetch; artifacts: string[] } {
    const artifacts: string[] = [];
    return { artifacts, fetch: (input, init) => { const u = String(input); if (u.includes('/v1/artifacts/')) artifacts.push(u.split('/').pop()!); return fetch(input, init); } };
  }

  it('a version with the bytes of the model in the other slot is installed from that slot, with no download', async () => {
    const [m1, m2] = [tinyClassifier(1), tinyClassifier(2)];
    const v1 = await pushBundle(server, 'reuse', m1);
    const v2 = await pushBundle(server, 'reuse', m2);
    const v3 = await pushBundle(server, 'reuse', m1); // v1's bytes, signed again as version 3
    expect(v3.manifest.artifact.sha256).toBe(v1.manifest.artifact.sha256);
    const c = counting();
    const agent = await startAgent(server, 'reuse-1', {}, { fetch: c.fetch });
    agents.push(agent);
    for (const v of [v1, v2]) {
      const done = outcome(agent, v.manifestSha256);
      await assign(server, v.manifestSha256, [agent.deviceId]);
      expect((await done).state).toBe('active');
    }
    expect(c.artifacts).toEqual([v1.manifest.artifact.sha256, v2.manifest.artifact.sha256]);
    const done = outcome(agent, v3.manifestSha256);
    await assign(server, v3.manifestSha256, [agent.deviceId]);
    expect((await done).state).toBe('active');
    expect(agent.active?.manifestSha256).toBe(v3.manifestSha256);
    expect(c.artifacts).toHaveLength(2); // nothing fetched for v3
    const out = await agent.infer({ x: { data: new Float32Array(8).fill(0.5), dims: [1, 8] } });
    expect(out.probs.dims).toEqual([1, 4]);
  });

  it('a damaged copy in the slot is not used: the device downloads the artifact', async () => {
    const [m1, m2] = [tinyClassifier(4), tinyClassifier(5)];
    const v1 = await pushBundle(server, 'reuse2', m1);
    const v2 = await pushBundle(server, 'reuse2', m2);
    const v3 = await pushBundle(server, 'reuse2', m1);
    const c = counting();
    const agent = await startAgent(server, 'reuse-2', {}, { fetch: c.fetch });
    agents.push(agent);
    for (const v of [v1, v2]) {
      const done = outcome(agent, v.manifestSha256);
      await assign(server, v.manifestSha256, [agent.deviceId]);
      expect((await done).state).toBe('active');
    }
    // flip a byte of v1's copy in the slot it still occupies (the inactive one)
    const state = JSON.parse(readFileSync(join(server.dir, 'agents', 'reuse-2', 'state.json'), 'utf8')) as { active: 'a' | 'b' };
    const other = state.active === 'a' ? 'b' : 'a';
    const file = join(server.dir, 'agents', 'reuse-2', 'slots', `${other}.onnx`);
    const bytes = readFileSync(file); bytes[bytes.length - 1] ^= 0xff; writeFileSync(file, bytes);
    const done = outcome(agent, v3.manifestSha256);
    await assign(server, v3.manifestSha256, [agent.deviceId]);
    expect((await done).state).toBe('active');
    expect(c.artifacts).toEqual([v1.manifest.artifact.sha256, v2.manifest.artifact.sha256, v1.manifest.artifact.sha256]);
  });
});
