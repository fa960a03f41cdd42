// Issue 21: a 1,000-device simulated fleet made the shared onnxruntime-web WASM module abort thousands of
// times after ~40 s at 2 inferences/s per device. The mechanism (runtime/onnx-session.ts WasmQueue): runs
// started in the same macrotask interleave at ORT's awaits and leak the WASM C stack (each overlapped run
// leaves its argument arrays, 4 pointers per input/output, below the restored stack pointer), until the
// 5 MB stack runs into the heap. These tests start runs the way the simulator's workload timer does
// (hundreds in one callback), on the shared runtime the simulator uses, and count every answer.
import { describe, expect, it } from 'vitest';
import { SharedOrtRuntime } from '../../device-agent/model-runtime.ts';
import { tinyClassifier } from '../../firmware-sim/sample-models.ts';
import { runtimeQueueStats, type Feeds } from '../../runtime/onnx-session.ts';
import { encodeModel, graph, model, node, valueInfo } from '../../server/onnx/graph-builder.ts';
import { sha256Hex } from '../../shared/crypto.ts';

/** K inputs x_i[1,1] passed through to K outputs. */
function wideModel(k: number): Uint8Array {
  const ins = Array.from({ length: k }, (_, i) => `x${i}`);
  return encodeModel(model(graph({
    name: `wide-${k}`,
    nodes: ins.map((x, i) => node('Identity', [x], [`y${i}`])),
    inputs: ins.map((x) => valueInfo(x, 'float32', [1, 1])),
    outputs: ins.map((_, i) => valueInfo(`y${i}`, 'float32', [1, 1])),
    initializers: [],
  })));
}

/** rounds x concurrent runs, each round's runs all started in one synchronous loop (one timer tick). */
async function burst(run: (n: number) => Promise<void>, concurrent: number, rounds: number): Promise<{ ok: number; failed: number; firstError: string | null }> {
  let ok = 0, failed = 0, firstError: string | null = null;
  for (let r = 0; r < rounds; r++) {
    await Promise.all(Array.from({ length: concurrent }, (_, i) => run(r * concurrent + i).then(
      () => { ok++; },
      (err) => { failed++; firstError ??= String((err as Error).message ?? err); },
    )));
  }
  return { ok, failed, firstError };
}

describe('the shared WASM runtime under a long, loaded run', { timeout: 240_000 }, () => {
  it('runs queued behind each other still answer their own caller: 3,000 overlapped runs of a 4-input pass-through model', async () => {
    const bytes = wideModel(4);
    const rt = new SharedOrtRuntime();
    const m = await rt.load(bytes, { sha256: sha256Hex(bytes), sessionConfig: {} });
    const before = runtimeQueueStats().completed;
    let wrong = 0;
    const r = await burst(async (n) => {
      const feeds: Feeds = {};
      for (let i = 0; i < 4; i++) feeds[`x${i}`] = { data: Float32Array.of(n * 4 + i), dims: [1, 1] };
      const out = await m.run(feeds);
      for (let i = 0; i < 4; i++) if (out[`y${i}`].data[0] !== Math.fround(n * 4 + i)) wrong++;
    }, 300, 10);
    await m.release();
    expect(r).toEqual({ ok: 3000, failed: 0, firstError: null });
    expect(wrong).toBe(0);
    expect(runtimeQueueStats().completed - before).toBe(3000 + 1); // the runs and the release
    expect(runtimeQueueStats()).toMatchObject({ waiting: 0, running: 0 });
  });

  it('the simulator\'s own shape: the tiny model, 1,000 devices\' calls per tick, 100,000 runs, no error (the unfixed runtime aborted from run 82,001)', async () => {
    const bytes = tinyClassifier(1);
    const rt = new SharedOrtRuntime();
    const key = { sha256: sha256Hex(bytes), sessionConfig: {} };
    // every device holds its own reference to the one shared session, as 1,000 agents do
    const devices = await Promise.all(Array.from({ length: 1000 }, () => rt.load(bytes, key)));
    expect(rt.sessions).toBe(1);
    const x = Float32Array.from({ length: 8 }, (_, i) => i / 8);
    const r = await burst((n) => devices[n % 1000].run({ x: { data: x, dims: [1, 8] } }).then(() => {}), 1000, 100);
    expect(r).toEqual({ ok: 100_000, failed: 0, firstError: null });
    await Promise.all(devices.map((d) => d.release()));
    expect(rt.sessions).toBe(0);
  });
});
