// Child process: a slice of a "real" fleet for rehearsal tests. Real agents (SimulatedFleet) with no
// fault profile at all, so each device reports the wall time of its real onnxruntime-web inferences,
// as a real device reports its own: a model that costs 3x costs 3x here, nothing is modelled.
import { SimulatedFleet } from '../../firmware-sim/fleet.ts';
import { workloadInputs } from '../../firmware-sim/workload.ts';

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
          hardware: (i) => m.hardware[i], tags: (i) => m.tags[i],
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
