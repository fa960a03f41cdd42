// Child process entry: runs one DeviceFleet slice and answers the parent over IPC. A fleet of 10,000
// devices cannot share a process (and its 20,000 open files) with the server that serves it.
import { CapacityMonitor } from './capacity.ts';
import { startProfile } from './cpu-profile.ts';
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
/** this process's CPU use from the campaign's start (the 'candidate' message) to the first summary after it */
let campaignCpu0: NodeJS.CpuUsage | null = null;
let campaignCpuSeconds: number | null = null;
// FLEET_SIM_WORKER_CPU_PROFILE=<prefix>: each fleet process writes <prefix>.<pid>.cpuprofile over the same span
let profiler: Awaited<ReturnType<typeof startProfile>> | null = null;

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
        case 'candidate':
          campaignCpu0 = process.cpuUsage();
          campaignCpuSeconds = null;
          if (process.env.FLEET_SIM_WORKER_CPU_PROFILE && !profiler) profiler = await startProfile();
          fleet?.setCandidate(m.artifactSha256, m.at);
          break;
        case 'workload':
          fleet?.fleet.startWorkload({ ratePerSecond: m.ratePerSecond, inputs: await workloadInputs(m.model) });
          capacity = new CapacityMonitor('fleet', { maxLagMs: m.maxLagMs });
          capacity.start();
          break;
        case 'summary':
          if (campaignCpu0 && campaignCpuSeconds === null) {
            const u = process.cpuUsage(campaignCpu0);
            campaignCpuSeconds = (u.user + u.system) / 1e6;
            if (profiler) await profiler.stop(`${process.env.FLEET_SIM_WORKER_CPU_PROFILE}.${process.pid}.cpuprofile`);
          }
          send({
            type: 'summary', id: m.id, devices: fleet?.summary() ?? [], faults: fleet?.faults(), rss: process.memoryUsage.rss(),
            report: { capacity: capacity?.report() ?? null, workload: fleet?.fleet.workloadStats, health: fleet?.fleet.health, campaignCpuSeconds },
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
