// One FleetAgent in its own process, for tests that kill it (SIGKILL) and start it again.
//   node --import tsx test/agent/agent-process.ts <spec.json>
// spec: { config: AgentConfigInput, feeds?: { [input]: dims }, faultyArtifacts?: sha256[] }
//   feeds: call infer() in a loop, like device code; faultyArtifacts: models that pass their health
//   check and then fail every inference (to reach the probation revert).
// Crash injection is this script's business only, never the agent's: FLEET_AGENT_CRASH_AT=<phase>[:<n>]
// at start, or a line {"crashAt": "<phase>[:<n>]"} on stdin, kills the process with SIGKILL the moment
// the agent reaches that UpdatePhase (the n-th time, for download:chunk and probation:inference), or
// a point inside a durable write (disk:<kind>:tmp|renamed, see disk-crash-points.ts).
// Writes JSON lines on stdout: ready, status, crashing, infer_failed, stopped.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { FleetAgent, type UpdatePhase } from '../../device-agent/agent.ts';
import { parseAgentConfig } from '../../device-agent/config.ts';
import type { Feeds } from '../../runtime/onnx-session.ts';
import { installDiskCrashPoints } from './disk-crash-points.ts';
import { FaultRuntime } from './fault-runtime.ts';

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8')) as { config: unknown; feeds?: Record<string, number[]>; faultyArtifacts?: string[] };
const emit = (o: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(o)}\n`); // synchronous on pipes

let crashAt: { phase: string; n: number } | null = null;
const setCrash = (s: string | undefined) => {
  if (!s) return;
  const [phase, n] = s.split(/:(?=\d+$)/);
  crashAt = { phase, n: n ? Number(n) : 1 };
};
setCrash(process.env.FLEET_AGENT_CRASH_AT);
let starting = true;
installDiskCrashPoints(() => crashAt?.phase ?? null, () => starting, (point) => {
  emit({ event: 'crashing', phase: point, n: 1 });
  process.kill(process.pid, 'SIGKILL');
});

const runtime = new FaultRuntime();
for (const sha of spec.faultyArtifacts ?? []) runtime.faults.set(sha, { kind: 'error' });
const faultHooks = runtime.deps();
const agent = new FleetAgent(parseAgentConfig(spec.config), {
  runtime,
  onPhase: (phase: UpdatePhase, info) => {
    faultHooks.onPhase!(phase, info);
    if (crashAt && phase === crashAt.phase && (info.n ?? 1) >= crashAt.n) {
      emit({ event: 'crashing', phase, n: info.n ?? 1, version: info.version });
      process.kill(process.pid, 'SIGKILL');
    }
  },
});
agent.on('status', (s) => emit({ event: 'status', status: s }));

await agent.start();
starting = false;
runtime.markAllHealthy(); // restored from disk: they passed their health check when installed
// What start() left on disk, read before any message can arrive (the test checks it).
const dataDir = agent.config.dataDir;
const stateText = readFileSync(join(dataDir, 'state.json'), 'utf8');
const state = JSON.parse(stateText) as { active: 'a' | 'b' | null };
const activeFile = state.active ? join(dataDir, 'slots', `${state.active}.onnx`) : null;
emit({
  event: 'ready', pid: process.pid, active: agent.active, activeSet: agent.activeSet, onProbation: agent.onProbation, shadow: agent.shadowCandidate,
  disk: {
    state, slotFiles: readdirSync(join(dataDir, 'slots')),
    activeFileSha256: activeFile && existsSync(activeFile) ? createHash('sha256').update(readFileSync(activeFile)).digest('hex') : null,
  },
});

// Device code calling infer() in a loop; every failure is reported (the tests expect none).
let running = true;
let inferences = 0;
if (spec.feeds) {
  const feeds: Feeds = {};
  for (const [name, dims] of Object.entries(spec.feeds)) feeds[name] = { data: new Float32Array(dims.reduce((a, b) => a * b, 1)).fill(0.25), dims };
  void (async () => {
    while (running) {
      if (agent.active) {
        try {
          await agent.infer(feeds);
          inferences++;
        } catch (err) {
          emit({ event: 'infer_failed', message: (err as Error).message });
        }
      }
      await new Promise((r) => setTimeout(r, 1));
    }
  })();
}

const stop = async () => {
  running = false;
  await agent.stop();
  emit({ event: 'stopped', inferences, active: agent.active });
  process.exit(0);
};
createInterface({ input: process.stdin }).on('line', (line) => {
  const cmd = JSON.parse(line) as { crashAt?: string; stop?: boolean };
  if (cmd.crashAt) { setCrash(cmd.crashAt); emit({ event: 'armed', at: cmd.crashAt }); } // tests may wait for it before they act
  if (cmd.stop) void stop();
});
process.once('SIGTERM', () => void stop());
