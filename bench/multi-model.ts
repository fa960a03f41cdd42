// Issue 19: updating one model of a device does not interrupt infer() of another. One agent (in process,
// enrolled, over the real broker) runs a set {embedding, other}: openWakeWord's embedding model (a real
// 1.3 MB tf2onnx model, ~5 ms a call) and a small classifier; device code calls infer('embedding') back to
// back the whole time while `other` is updated `updates` times (each a new artifact: download, verify,
// load, health check, one state write). Calls are timed in alternating windows: steady (no update in
// progress) and during an update (from the assignment to the agent's `active` report). Targets: zero
// failed calls, and the median latency during updates within 10% of the steady median.
// Run alone: npx tsx bench/multi-model.ts
import { join } from 'node:path';
import { isMain, median, round, runAlone, withTempDir } from './util.ts';

export interface BenchMultiModelResult {
  updates: number;
  failedCalls: number;
  callsSteady: number;
  callsDuringUpdates: number;
  steadyMedianMs: number;
  duringMedianMs: number;
  /** duringMedianMs / steadyMedianMs - 1 */
  medianIncrease: number;
  steadyP95Ms: number;
  duringP95Ms: number;
  target: { failedCalls: 0; maxMedianIncrease: 0.1 };
  met: boolean;
}

const p95 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.95))] ?? 0;

export async function benchMultiModel(opts: { updates?: number; steadyMs?: number } = {}): Promise<BenchMultiModelResult> {
  const updates = opts.updates ?? 10;
  const steadyMs = opts.steadyMs ?? 800;
  const { buildServer } = await import('../server/app.ts');
  const { newSecret } = await import('../server/auth/secrets.ts');
  const { b64 } = await import('../shared/crypto.ts');
  const { CORPUS, corpusBytes } = await import('../test/corpus/corpus.ts');
  const { decodeTensor } = await import('../shared/tensor-codec.ts');
  const { tinyClassifier } = await import('../firmware-sim/sample-models.ts');
  const { FleetAgent } = await import('../device-agent/agent.ts');
  const { parseAgentConfig } = await import('../device-agent/config.ts');
  return withTempDir('fleet-bench-multi-', async (dir) => {
    const adminToken = newSecret('apiToken');
    const authorization = `Bearer ${adminToken}`;
    const app = await buildServer({ dataDir: join(dir, 'server'), httpPort: 0, mqttPort: 0, logLevel: 'silent', bootstrapAdminToken: adminToken });
    let agent: InstanceType<typeof FleetAgent> | null = null;
    try {
      await app.listen({ host: '127.0.0.1', port: 0 });
      const serverUrl = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
      const push = async (modelId: string, bytes: Uint8Array, extra: Record<string, unknown> = {}) => {
        const up = await app.inject({ method: 'POST', url: '/v1/uploads', headers: { 'content-type': 'application/octet-stream', authorization }, payload: Buffer.from(bytes) });
        if (up.statusCode !== 201) throw new Error(`upload: ${up.statusCode} ${up.body}`);
        const b = await app.inject({ method: 'POST', url: `/v1/models/${modelId}/bundles`, headers: { authorization }, payload: { uploadSha256: up.json().sha256, quantize: 'none', ...extra } });
        if (b.statusCode !== 201) throw new Error(`bundle: ${b.statusCode} ${b.body}`);
        return (b.json() as { manifestSha256: string }).manifestSha256;
      };
      const emb = CORPUS.find((m) => m.id === 'oww-embedding')!;
      const samples = await emb.samples(8);
      const steady = await push('embedding', corpusBytes(emb), { samples });
      const others: string[] = [];
      for (let i = 0; i <= updates; i++) others.push(await push('other', tinyClassifier(500 + i, { inputs: 16, classes: 8 })));
      const tok = await app.inject({ method: 'POST', url: '/v1/enrollment-tokens', headers: { authorization }, payload: { uses: 1 } });
      agent = new FleetAgent(parseAgentConfig({
        deviceId: 'bench-multi-1', dataDir: join(dir, 'agent'), mqttUrl: `mqtt://127.0.0.1:${app.fleet.broker.port}`, serverUrl,
        rootPublicKey: b64.encode(app.fleet.keys.rootPublicKey), enrollmentToken: tok.json().token, probationInferences: 0, probationSeconds: 0, telemetryWindowMs: 60_000,
      }));
      const a = agent;
      await a.start();
      const activeOn = (other: string) => a.waitForStatus((s) => s.state === 'active' && s.activeSet?.[1]?.manifestSha256 === other, 60_000);
      const first = activeOn(others[0]);
      await app.fleet.director.assignSet([steady, others[0]], [a.deviceId]);
      await first;

      const xs = samples.map((x) => decodeTensor(x.inputs.input_1));
      let phase: 'steady' | 'during' | 'idle' = 'idle';
      const times = { steady: [] as number[], during: [] as number[] };
      let failed = 0, running = true, i = 0;
      const loop = (async () => {
        while (running) {
          const t0 = performance.now();
          const p = phase as 'steady' | 'during' | 'idle';
          const x = xs[i++ % xs.length];
          try {
            await a.infer('embedding', { input_1: { data: x.data as Float32Array, dims: x.dims } });
            if (p !== 'idle' && p === (phase as string)) times[p].push(performance.now() - t0);
          } catch {
            failed++;
          }
          await new Promise((r) => setImmediate(r));
        }
      })();
      try {
        for (let u = 1; u <= updates; u++) {
          phase = 'steady';
          await new Promise((r) => setTimeout(r, steadyMs));
          const done = activeOn(others[u]);
          phase = 'during';
          await app.fleet.director.assignSet([steady, others[u]], [a.deviceId]);
          await done;
          phase = 'idle';
        }
      } finally {
        running = false;
        await loop;
      }
      const steadyMedianMs = median(times.steady), duringMedianMs = median(times.during);
      const medianIncrease = duringMedianMs / steadyMedianMs - 1;
      return {
        updates, failedCalls: failed, callsSteady: times.steady.length, callsDuringUpdates: times.during.length,
        steadyMedianMs: round(steadyMedianMs, 4), duringMedianMs: round(duringMedianMs, 4), medianIncrease: round(medianIncrease, 4),
        steadyP95Ms: round(p95(times.steady), 4), duringP95Ms: round(p95(times.during), 4),
        target: { failedCalls: 0, maxMedianIncrease: 0.1 }, met: failed === 0 && medianIncrease <= 0.1,
      };
    } finally {
      await agent?.stop();
      await app.close();
    }
  });
}

if (isMain(import.meta.url)) await runAlone(() => benchMultiModel());
