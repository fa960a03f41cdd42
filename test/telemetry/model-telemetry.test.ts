// Per-model and chain telemetry (issue 19): the agent's window counts each model of a set and each chain
// call on its own (and a single-model window is unchanged); the writer thread stores those figures once
// per window in telemetry_models on a real SQLite file; the device view sums them; retention removes them
// with their window.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { timedChain } from '../../device-agent/chain-telemetry.ts';
import { InputMismatch } from '../../device-agent/input-check.ts';
import { TelemetryWindow } from '../../device-agent/telemetry-window.ts';
import { openDatabase, type Db } from '../../server/db/database.ts';
import { deviceModelTelemetry } from '../../server/devices/model-telemetry.ts';
import { TelemetryWriter } from '../../server/devices/telemetry-writer.ts';
import { TelemetryRetention } from '../../server/telemetry/retention.ts';
import { Telemetry } from '../../shared/messages.ts';
import { tempDir } from '../helpers/harness.ts';
import { T0, sha, win } from './windows.ts';

const MEL = { modelId: 'mel', version: 3, manifestSha256: sha('a') };
const EMB = { modelId: 'emb', version: 5, manifestSha256: sha('b') };
const EMB6 = { modelId: 'emb', version: 6, manifestSha256: sha('c') };

let dir: string | null = null;
let db: Db | null = null;
let writer: TelemetryWriter | null = null;
afterEach(async () => {
  await writer?.close(); writer = null;
  db?.close(); db = null;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = null;
});

describe('per-model telemetry', () => {
  it('the agent window: each model and the chain on its own; a single-model window has neither field', async () => {
    let now = T0;
    const w = new TelemetryWindow(() => now);
    w.record(2, true);
    const single = w.cut('d1', 0, MEL);
    expect(Object.keys(single)).not.toContain('models');
    expect(Object.keys(single)).not.toContain('chain');

    for (const ms of [1, 2, 3, 4]) { w.record(ms, true); w.recordModel(MEL, ms, true); }
    for (const ms of [10, 20]) { w.record(ms, true); w.recordModel({ ...EMB, extra: 'slot fields are not copied' } as typeof EMB, ms, true); }
    w.record(0, false); w.recordModel(EMB, 0, false);
    // a new set switched in mid-window: emb's figures are of the manifest it runs now
    w.record(7, true); w.recordModel(EMB6, 7, true);
    await timedChain(w, async () => 'ok');
    await expect(timedChain(w, async () => { throw new Error('step 2 failed'); })).rejects.toThrow('step 2 failed');
    // a caller's mistake is not the chain's error
    await expect(timedChain(w, async () => { throw new InputMismatch('INPUT_SHAPE', 'x: wrong dims'); })).rejects.toBeInstanceOf(InputMismatch);
    now += 1000;
    const t = w.cut('d1', 1, MEL);
    expect(Telemetry.safeParse(t).success).toBe(true);
    expect(t.count).toBe(8);
    expect(t.models).toEqual({
      mel: { version: 3, manifestSha256: MEL.manifestSha256, count: 4, errors: 0, latencyMs: { p50: 3, p95: 4, p99: 4, max: 4 } },
      emb: { version: 6, manifestSha256: EMB6.manifestSha256, count: 1, errors: 0, latencyMs: { p50: 7, p95: 7, p99: 7, max: 7 } },
    });
    expect(t.chain?.count).toBe(2);
    expect(t.chain?.errors).toBe(1);
    // the next window starts empty
    w.record(1, true);
    expect(Object.keys(w.cut('d1', 2, MEL))).not.toContain('models');
  });

  it('each model of a set bins its own inputs and outputs by its own manifest\'s drift baseline (the drift gate per model)', () => {
    let now = T0;
    const w = new TelemetryWindow(() => now);
    const base = (edges: number[]) => ({ inputs: { x: { kind: 'values' as const, edges, counts: new Array(edges.length + 1).fill(1) } }, outputs: { probs: { kind: 'argmax' as const, edges: [], counts: [1, 1, 1] } } });
    const feeds = (v: number[]) => ({ x: { data: Float32Array.from(v), dims: [1, v.length] } });
    const out = (p: number[]) => ({ probs: { data: Float32Array.from(p), dims: [1, 3], type: 'float32' } });
    w.recordModel(MEL, 1, true, feeds([-2, 0.5, 3]), out([0.1, 0.8, 0.1]), base([0, 1]));
    w.recordModel(MEL, 1, true, feeds([0.2, 0.3, 0.4]), out([0.9, 0.05, 0.05]), base([0, 1]));
    w.recordModel(EMB, 1, true, feeds([5, 6]), out([0, 0, 1]), base([10]));
    w.recordModel(EMB, 0, false, feeds([5, 6]), undefined, base([10])); // a failed call: its inputs count, it has no outputs
    w.recordModel({ ...MEL, modelId: 'kws' }, 1, true, feeds([1])); // no baseline: no histograms
    now += 1000;
    const t = w.cut('d1', 0, MEL);
    expect(Telemetry.safeParse(t).success).toBe(true);
    expect(t.models?.mel.inputHistograms).toEqual({ x: { kind: 'values', edges: [0, 1], counts: [1, 4, 1] } });
    expect(t.models?.mel.outputHistograms).toEqual({ probs: { kind: 'argmax', edges: [], counts: [1, 1, 0] } });
    expect(t.models?.emb.inputHistograms).toEqual({ x: { kind: 'values', edges: [10], counts: [4, 0] } });
    expect(t.models?.emb.outputHistograms).toEqual({ probs: { kind: 'argmax', edges: [], counts: [0, 0, 1] } });
    expect(Object.keys(t.models!.kws)).toEqual(['version', 'manifestSha256', 'count', 'errors', 'latencyMs']);
    expect(t.inputHistograms).toBeUndefined(); // the window's own are the primary's, binned by record()
    // the next window starts empty
    w.recordModel(MEL, 1, true, feeds([0.5]), out([1, 0, 0]), base([0, 1]));
    expect(w.cut('d1', 1, MEL).models?.mel.inputHistograms).toEqual({ x: { kind: 'values', edges: [0, 1], counts: [0, 1, 0] } });
  });

  it('stored once per window by the writer thread, summed in the device view, removed with its window', async () => {
    dir = tempDir('fleet-models-');
    db = openDatabase(join(dir, 'fleet.db'));
    db.prepare("INSERT INTO devices (device_id, hardware, first_seen, last_seen) VALUES ('d1', 'cam-a', 'x', 'x')").run();
    const now = T0 + 3600_000;
    writer = new TelemetryWriter(db, { now: () => now });
    expect(writer.thread).toBe('thread');
    const lat = (p: number) => ({ p50: p, p95: p * 2, p99: p * 3, max: p * 4 });
    const withModels = (seq: number, embP: number) => ({
      ...win({ deviceId: 'd1', seq, minute: seq, manifest: MEL.manifestSha256, modelId: 'mel' }),
      models: {
        mel: { version: 3, manifestSha256: MEL.manifestSha256, count: 60, errors: 0, latencyMs: lat(1) },
        emb: { version: 5, manifestSha256: EMB.manifestSha256, count: 40, errors: seq, latencyMs: lat(embP), inputHistograms: { x: { kind: 'values' as const, edges: [0], counts: [seq, 1] } } },
      },
      chain: { count: 20, errors: 0, latencyMs: lat(9) },
    });
    await Promise.all([writer.add(withModels(1, 4)), writer.add(withModels(2, 6)), writer.add(withModels(3, 8))]);
    await writer.add(withModels(2, 6)); // resent
    expect(db.prepare('SELECT COUNT(*) FROM telemetry_models').pluck().get()).toBe(9);
    expect([writer.stored, writer.duplicates]).toEqual([3, 1]);
    // each model's own histograms beside its figures (the drift gate per model); none where none were sent
    expect(db.prepare("SELECT model_id, seq, histograms_json FROM telemetry_models WHERE seq = 2 ORDER BY model_id").all()).toEqual([
      { model_id: '@chain', seq: 2, histograms_json: null },
      { model_id: 'emb', seq: 2, histograms_json: JSON.stringify({ inputs: { x: { kind: 'values', edges: [0], counts: [2, 1] } } }) },
      { model_id: 'mel', seq: 2, histograms_json: null },
    ]);
    const view = deviceModelTelemetry(db, 'd1', now);
    expect([...view.models].sort((a, b) => a.modelId.localeCompare(b.modelId))).toEqual([
      { modelId: 'emb', manifestSha256: EMB.manifestSha256, windows: 3, count: 120, errors: 6, p50: 6, p95: 12, p99: 18, maxMs: 32 },
      { modelId: 'mel', manifestSha256: MEL.manifestSha256, windows: 3, count: 180, errors: 0, p50: 1, p95: 2, p99: 3, maxMs: 4 },
    ]);
    expect(view.chain).toEqual({ windows: 3, count: 60, errors: 0, p50: 9, p95: 18, p99: 27, maxMs: 36 });
    // retention: raw windows older than the cutoff go, and their per-model rows with them
    await writer.close(); writer = null;
    const r = new TelemetryRetention(db, { rawHours: 1, minuteDays: 1, hourDays: 1, deviceHourDays: 1, maxRowsPerTick: 1000 }, () => now + 2 * 3600_000);
    expect(r.tick().raw).toBe(3);
    expect(db.prepare('SELECT COUNT(*) FROM telemetry_models').pluck().get()).toBe(0);
  });
});
