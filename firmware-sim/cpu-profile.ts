// A CPU profile of this process through the inspector, written as a .cpuprofile file (Chrome DevTools,
// speedscope). The scenario runner profiles the server (FLEET_SIM_CPU_PROFILE), each fleet process
// profiles its devices (FLEET_SIM_WORKER_CPU_PROFILE), during the campaign only.
import { writeFileSync } from 'node:fs';

export async function startProfile(): Promise<{ stop(file: string): Promise<void> }> {
  const { Session } = await import('node:inspector/promises');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return {
    async stop(file) {
      const { profile } = await session.post('Profiler.stop');
      writeFileSync(file, JSON.stringify(profile));
      session.disconnect();
    },
  };
}
