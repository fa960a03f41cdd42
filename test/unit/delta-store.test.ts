// The delta builder's thread (server/bundles/delta-store.ts, delta-thread.ts): a large pair is diffed
// while the server's event loop keeps turning, a wave assigned while its pair is made waits for it and
// carries the delta, and an assignment that waits for a delta never ends with a lower sequence number
// than one asked for after it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import type { DesiredMessage, DesiredState } from '../../shared/messages.ts';
import { exportMlpToOnnx } from '../../server/training/digits.ts';
import { initMlp } from '../../server/training/mlp.ts';
import { seededRandom } from '../../server/bundles/golden-vectors.ts';
import { pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';

const meta = { seed: 1, heldOutAccuracy: 0.9 };

describe('delta builder thread', () => {
  let server: TestServer;
  beforeAll(async () => { server = await startTestServer(); }, 60_000);
  afterAll(async () => { await server?.close(); });

  const desiredOf = (deviceId: string): DesiredState => {
    const row = server.app.fleet.db.prepare('SELECT desired_json FROM devices WHERE device_id = ?').get(deviceId) as { desired_json: string };
    return JSON.parse((JSON.parse(row.desired_json) as DesiredMessage).director.signed) as DesiredState;
  };

  it('a 24 MB pair is made in the thread: the event loop is never held for a third of the time the build takes, and the delta rebuilds the target', async () => {
    const r = seededRandom(7);
    const base = new Uint8Array(24 * 1024 * 1024);
    for (let i = 0; i < base.length; i++) base[i] = (r() * 256) | 0;
    const target = base.slice();
    for (let i = 0; i < target.length; i += 4096) target[i] ^= 0x5a; // a byte changed in every 4 KiB: the matcher works through all of it
    const { blobs, deltas } = server.app.fleet;
    const a = blobs.put(base), b = blobs.put(target);
    let last = performance.now(), worstGap = 0, ticks = 0;
    const timer = setInterval(() => { const t = performance.now(); worstGap = Math.max(worstGap, t - last); last = t; ticks++; }, 10);
    const started = performance.now();
    const offer = await deltas.offer(a.sha256, b.sha256, true);
    const took = performance.now() - started;
    clearInterval(timer);
    expect(offer?.baseSha256).toBe(a.sha256);
    // made in about a microsecond per byte (seconds): the server's loop kept turning meanwhile
    expect(took).toBeGreaterThan(500); // else the test proves little: a build on the loop would stall it about this long
    expect(ticks).toBeGreaterThan(0);
    expect(worstGap, `the longest stall while a ${Math.round(took)} ms build ran`).toBeLessThan(took / 3);
    const { applyDelta } = await import('../../shared/delta.ts');
    const rebuilt = applyDelta(base, blobs.get(offer!.sha256), { sha256: b.sha256, length: b.length });
    expect(createHash('sha256').update(rebuilt).digest('hex')).toBe(b.sha256);
  }, 120_000);

  it('an assignment waiting for its delta keeps its place: the one asked for after it gets the higher sequence number', async () => {
    const a1 = await pushBundle(server, 'order-a', exportMlpToOnnx(initMlp(256, 128, 10, 1), meta));
    const b1 = await pushBundle(server, 'order-b', exportMlpToOnnx(initMlp(256, 128, 10, 2), meta));
    const db = server.app.fleet.db;
    db.prepare(`INSERT INTO devices (device_id, first_seen, last_seen, active_manifest_sha256) VALUES ('order-1', 'x', 'x', ?)`).run(a1.manifestSha256);
    await server.app.fleet.deltas.idle();
    // a1 -> b1 is not made at push (different models): the first assignment makes it in the thread
    expect(db.prepare('SELECT COUNT(*) AS n FROM artifact_deltas WHERE base_sha256 = ? AND target_sha256 = ?').get(a1.manifest.artifact.sha256, b1.manifest.artifact.sha256)).toEqual({ n: 0 });
    const director = server.app.fleet.director;
    const first = director.assign(b1.manifestSha256, ['order-1']);
    const second = director.assign(a1.manifestSha256, ['order-1']); // the model it runs: nothing to make
    const [[f], [s]] = await Promise.all([first, second]);
    expect(s.seq).toBe(f.seq + 1);
    expect(desiredOf('order-1').manifestSha256).toBe(a1.manifestSha256);
    expect(desiredOf('order-1').seq).toBe(s.seq);
    expect(db.prepare('SELECT COUNT(*) AS n FROM artifact_deltas WHERE base_sha256 = ? AND target_sha256 = ?').get(a1.manifest.artifact.sha256, b1.manifest.artifact.sha256)).toEqual({ n: 1 });
  }, 60_000);
});
