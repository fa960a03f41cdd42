// A download never destroys the previous model before the new one verifies (issue 11, item 1; issue 12):
// the artifact is staged outside the slots and checked there. A model on probation keeps its revert
// target through short, oversized, tampered and dripping downloads of a newer assignment, and a
// probation failure afterwards still goes back to exactly that model.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FleetAgent } from '../../device-agent/agent.ts';
import { AgentState } from '../../device-agent/state-store.ts';
import type { Feeds } from '../../runtime/onnx-session.ts';
import { assign, pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { FaultRuntime } from './fault-runtime.ts';
import { settled, startAgent } from './fixture.ts';

type Sabotage = 'short' | 'long' | 'tampered' | 'drip';
const feeds: Feeds = { x: { data: new Float32Array(8).fill(0.25), dims: [1, 8] } };

/** The real download path with a man in the middle, per artifact. */
function sabotagingFetch(plan: Map<string, Sabotage>): typeof fetch {
  return async (input, init) => {
    const kind = plan.get(String(input).split('/').pop()!);
    const res = await fetch(input, init);
    if (!kind || !res.ok) return res;
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (kind === 'short') return new Response(bytes.subarray(0, bytes.length >> 1), { status: 200 });
    if (kind === 'long') return new Response(Buffer.concat([bytes, Buffer.alloc(4096, 7)]), { status: 200 });
    if (kind === 'tampered') { bytes[bytes.length >> 1] ^= 0x01; return new Response(bytes, { status: 200 }); }
    // drip: a few bytes, then nothing until the downloader's own timeout aborts the request
    const signal = init?.signal;
    return new Response(new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(bytes.subarray(0, 16));
        signal?.addEventListener('abort', () => c.error(signal.reason), { once: true });
      },
    }), { status: 200 });
  };
}

describe('a sabotaged download keeps the revert target', () => {
  let server: TestServer;
  let agent: FleetAgent;
  const runtime = new FaultRuntime();
  const plan = new Map<string, Sabotage>();

  beforeAll(async () => { server = await startTestServer(); }, 60_000);
  afterAll(async () => { await agent?.stop(); await server?.close(); });

  const diskState = () => AgentState.parse(JSON.parse(readFileSync(join(agent.config.dataDir, 'state.json'), 'utf8')));
  const fileSha = (slot: string) => createHash('sha256').update(readFileSync(join(agent.config.dataDir, 'slots', `${slot}.onnx`))).digest('hex');

  it('through short, oversized, tampered and dripping downloads, then reverts to exactly the previous model', async () => {
    const v1 = await pushBundle(server, 'tiny', tinyClassifier(1));
    const v2 = await pushBundle(server, 'tiny', tinyClassifier(9)); // passes its health check, fails in probation
    runtime.faults.set(v2.manifest.artifact.sha256, { kind: 'error' });
    agent = await startAgent(server, 'staged-1', {
      probationInferences: 10, probationSeconds: 0, probationMaxErrorRate: 0.05,
      download: { retries: 1, backoffMs: 10, timeoutMs: 1500 },
    }, { ...runtime.deps(), fetch: sabotagingFetch(plan) });

    const passed = settled(agent, v1.manifestSha256, ['probation_passed']);
    await assign(server, v1.manifestSha256, [agent.deviceId]);
    await settled(agent, v1.manifestSha256, ['active']);
    for (let i = 0; i < 10; i++) await agent.infer(feeds);
    await passed;
    await assign(server, v2.manifestSha256, [agent.deviceId]);
    await settled(agent, v2.manifestSha256, ['active']);
    expect(agent.onProbation).toBe(true);
    const before = diskState();
    const v1Slot = before.previous!;
    expect(before.slots[v1Slot]?.manifestSha256).toBe(v1.manifestSha256);
    expect(before.probation?.previous).toBe(v1Slot);

    const expected: Record<Sabotage, [string, string]> = {
      short: ['failed', 'DOWNLOAD_FAILED'], long: ['rejected', 'SIZE_MISMATCH'], tampered: ['rejected', 'HASH_MISMATCH'], drip: ['failed', 'DOWNLOAD_FAILED'],
    };
    let seed = 20;
    for (const kind of Object.keys(expected) as Sabotage[]) {
      const v = await pushBundle(server, 'tiny', tinyClassifier(seed++));
      plan.set(v.manifest.artifact.sha256, kind);
      const done = settled(agent, v.manifestSha256, ['active', 'failed', 'rejected'], 20_000);
      await assign(server, v.manifestSha256, [agent.deviceId]);
      const s = await done;
      expect([kind, s.state, s.reason]).toEqual([kind, ...expected[kind]]);
      // the record still offers the previous model, and its bytes are untouched
      const now = diskState();
      expect([kind, now.active, now.previous, now.probation?.previous]).toEqual([kind, before.active, v1Slot, v1Slot]);
      expect(now.slots[v1Slot]).toEqual(before.slots[v1Slot]);
      expect(fileSha(v1Slot)).toBe(v1.manifest.artifact.sha256);
      expect(now.update).toBeNull();
      // at most one partial download kept (for a resume of that same artifact), never inside the slots
      expect(readdirSync(join(agent.config.dataDir, 'staging')).length).toBeLessThanOrEqual(1);
      expect(readdirSync(join(agent.config.dataDir, 'slots')).sort()).toEqual(['a.manifest.json', 'a.onnx', 'b.manifest.json', 'b.onnx']);
    }
    expect(agent.active?.manifestSha256).toBe(v2.manifestSha256);

    // the model on probation now fails: it goes back to v1, not "no previous model, keeping this one"
    const reverted = settled(agent, v2.manifestSha256, ['reverted', 'failed', 'probation_passed']);
    for (let i = 0; i < 10 && agent.onProbation; i++) await agent.infer(feeds).catch(() => {});
    const r = await reverted;
    expect([r.state, r.reason]).toEqual(['reverted', 'PROBATION_FAILED']);
    expect(agent.active?.manifestSha256).toBe(v1.manifestSha256);
    expect(diskState().active).toBe(v1Slot);
  }, 90_000);
});
