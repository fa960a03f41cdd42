// One FleetAgent in its own process, so its memory can be measured apart from the test's (and from the
// hostile broker's buffers). node --expose-gc --import tsx agent-runner.ts '<config json>'
// Writes JSON lines: ready, log (every agent log event), connected (each CONNACK), rss; log and connected
// carry `at` (this process's clock). Reads lines: {"cmd":"rss"}, {"cmd":"stop"}.
import { createInterface } from 'node:readline';
import { FleetAgent } from '../../../device-agent/agent.ts';
import { parseAgentConfig } from '../../../device-agent/config.ts';

const emit = (o: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(o)}\n`);
const agent = new FleetAgent(parseAgentConfig(JSON.parse(process.argv[2])), {
  log: (event, fields) => emit({ event: 'log', name: event, at: Date.now(), ...fields }),
});
agent.on('connected', () => emit({ event: 'connected', at: Date.now() }));
await agent.start();
emit({ event: 'ready', pid: process.pid });

createInterface({ input: process.stdin }).on('line', async (line) => {
  const { cmd } = JSON.parse(line) as { cmd: string };
  if (cmd === 'rss') {
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.(); gc?.();
    await new Promise((r) => setTimeout(r, 50));
    const m = process.memoryUsage();
    emit({ event: 'rss', rss: m.rss, heapUsed: m.heapUsed, arrayBuffers: m.arrayBuffers, external: m.external });
  } else if (cmd === 'stop') {
    await agent.stop();
    emit({ event: 'stopped' });
    process.exit(0);
  }
});
