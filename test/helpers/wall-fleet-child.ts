// Child process: a slice of a "real" fleet for rehearsal tests. Real agents (SimulatedFleet) with no
// fault profile: each device reports the measured wall time of its own real onnxruntime-web inference,
// as a real device with its own CPU would: a model that costs 3x costs 3x here, nothing is modelled.
// Inferences of the devices in this process run one at a time and each is timed from its own start, not
// from when it was queued: without that, a device's latency was the queue behind the 89 other devices of
// the process (a 3x costlier candidate read 1.2x and its real campaign completed).
import { DEVICE_MS, SharedOrtRuntime, type LoadedModel, type ModelRuntime } from '../../device-agent/model-runtime.ts';
import { SimulatedFleet } from '../../firmware-sim/fleet.ts';
import { workloadInputs } from '../../firmware-sim/workload.ts';
import type { Feeds } from '../../runtime/onnx-session.ts';

class OwnCpuRuntime implements ModelRuntime {
  private readonly inner = new SharedOrtRuntime();
  private queue: Promise<unknown> = Promise.resolve();

  async load(artifact: Uint8Array, key: { sha256: string; sessionConfig: Record<string, string> }): Promise<LoadedModel> {
    const model = await this.inner.load(artifact, key);
    return {
      release: () => model.release(),
      run: (feeds: Feeds) => {
        const turn = this.queue.then(async () => {
          const t0 = performance.now();
          const out = await model.run(feeds);
          return Object.assign({ [DEVICE_MS]: performance.now() - t0 }, out);
        });
        this.queue = turn.catch(() => undefined);
        return turn;
      },
    };
  }
}

interface Start { type: 'start'; baseDir: string; mqttUrl: string; serverUrl: string; rootPublicKey: string; idPrefix: string; first: number; count: number; hardware: string[]; tags: string[][]; telemetryWindowMs: number }
type Msg = Start | { type: 'workload'; ratePerSecond: number } | { type: 'summary'; id: number } | { type: 'stop' };

let fleet: SimulatedFleet | null = null;
const send = (m: unknown) => process.send?.(m);

process.on('message', (m: Msg) => {
  void (async () => {
    try {
      if (m.type === 'start') {
        fleet = new SimulatedFleet({
          count: m.count, firstIndex: m.first, baseDir: m.baseDir, idPrefix: m.idPrefix, mqttUrl: m.mqttUrl, serverUrl: m.serverUrl,
          rootPublicKey: m.rootPublicKey, telemetryWindowMs: m.telemetryWindowMs, startConcurrency: 50,
          hardware: (i) => m.hardware[i], tags: (i) => m.tags[i], runtime: new OwnCpuRuntime(),
        });
        await fleet.start();
        send({ type: 'ready' });
      } else if (m.type === 'workload') {
        fleet?.startWorkload({ ratePerSecond: m.ratePerSecond, inputs: await workloadInputs('tiny') });
      } else if (m.type === 'summary') {
        send({ type: 'summary', id: m.id, active: fleet?.agents.map((a) => a.active?.manifestSha256 ?? null) ?? [] });
      } else if (m.type === 'stop') {
        await fleet?.stop();
        process.exit(0);
      }
    } catch (err) {
      send({ type: 'error', message: (err as Error).stack ?? String(err) });
    }
  })();
});
process.on('disconnect', () => process.exit(0));
