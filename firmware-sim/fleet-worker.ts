// Child process entry: runs one DeviceFleet slice and answers the parent over IPC. A fleet of 10,000
// devices cannot share a process (and its 20,000 open files) with the server that serves it.
import { CapacityMonitor } from './capacity.ts';
import { DeviceFleet, type DeviceFleetSpec } from './device-fleet.ts';
import { workloadInputs, type ModelKind } from './workload.ts';

type Msg =
  | { type: 'start'; spec: DeviceFleetSpec }
  | { type: 'baseline' }
  | { type: 'candidate'; artifactSha256: string; at: number }
  | { type: 'workload'; ratePerSecond: number; model: ModelKind; maxLagMs: number }
  | { type: 'summary'; id: number }
  | { type: 'stop' };

let fleet: DeviceFleet | null = null;
/** this process's capacity, measured from the start of the workload (the fleet's start-up is not the run) */
let capacity: CapacityMonitor | null = null;
const send = (m: unknown) => process.send?.(m);

process.on('message', (m: Msg) => {
  void (async () => {
    try {
      switch (m.type) {
        case 'start': {
          const t0 = Date.now();
          fleet = await DeviceFleet.withProxies(m.spec);
          await fleet.start();
          send({ type: 'ready', count: m.spec.count, ms: Date.now() - t0 });
          break;
        }
        case 'baseline': fleet?.applyBaselineFaults(); break;
        case 'candidate': fleet?.setCandidate(m.artifactSha256, m.at); break;
        case 'workload':
          fleet?.fleet.startWorkload({ ratePerSecond: m.ratePerSecond, inputs: await workloadInputs(m.model) });
          capacity = new CapacityMonitor('fleet', { maxLagMs: m.maxLagMs });
          capacity.start();
          break;
        case 'summary':
          send({
            type: 'summary', id: m.id, devices: fleet?.summary() ?? [], faults: fleet?.faults(), rss: process.memoryUsage.rss(),
            report: { capacity: capacity?.report() ?? null, workload: fleet?.fleet.workloadStats, health: fleet?.fleet.health },
          });
          break;
        case 'stop':
          capacity?.stop();
          await fleet?.stop();
          send({ type: 'stopped' });
          process.exit(0);
      }
    } catch (err) {
      send({ type: 'error', message: (err as Error).stack ?? String(err) });
    }
  })();
});
process.on('disconnect', () => process.exit(0));
