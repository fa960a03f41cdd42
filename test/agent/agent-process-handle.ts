// Test side of agent-process.ts: spawn it, read its JSON lines, wait for events, kill it.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const RUNNER = fileURLToPath(new URL('./agent-process.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface AgentLine { event: string; [k: string]: unknown }

export class AgentProcess {
  readonly lines: AgentLine[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly child: ChildProcess;
  private waiters: { pred: (l: AgentLine) => boolean; resolve: (l: AgentLine) => void }[] = [];
  stderr = '';

  constructor(specPath: string, env: Record<string, string> = {}) {
    this.child = spawn(process.execPath, ['--import', 'tsx', RUNNER, specPath], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    createInterface({ input: this.child.stdout! }).on('line', (text) => {
      let line: AgentLine;
      try { line = JSON.parse(text); } catch { return; }
      this.lines.push(line);
      this.waiters = this.waiters.filter((w) => (w.pred(line) ? (w.resolve(line), false) : true));
    });
    this.child.stderr!.on('data', (d) => { this.stderr = (this.stderr + d).slice(-4000); });
    // 'close', not 'exit': every line the process wrote (say, the crash point it announced) is read first
    this.exited = new Promise((resolve) => this.child.once('close', (code, signal) => resolve({ code, signal })));
  }

  static writeSpec(dir: string, spec: { config: Record<string, unknown>; feeds?: Record<string, number[]>; faultyArtifacts?: string[] }): string {
    const path = join(dir, 'agent-spec.json');
    writeFileSync(path, JSON.stringify(spec));
    return path;
  }

  /** The first line (already seen or still to come) that matches. */
  waitFor(pred: (l: AgentLine) => boolean, timeoutMs: number, since = 0): Promise<AgentLine> {
    const seen = this.lines.slice(since).find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`agent process: no matching line in ${timeoutMs} ms; stderr: ${this.stderr.slice(-800)}`)), timeoutMs);
      this.waiters.push({ pred, resolve: (l) => { clearTimeout(timer); resolve(l); } });
    });
  }

  send(cmd: Record<string, unknown>): void {
    this.child.stdin!.write(`${JSON.stringify(cmd)}\n`);
  }

  /** Arm a SIGKILL at a crash point and wait until the process has read it (its `armed` line), so an
   *  update started afterwards cannot pass the point before the process knows about it. */
  async arm(at: string, timeoutMs = 30_000): Promise<void> {
    const since = this.lines.length;
    this.send({ crashAt: at });
    await this.waitFor((l) => l.event === 'armed' && l.at === at, timeoutMs, since);
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }

  get alive(): boolean { return this.child.exitCode === null && this.child.signalCode === null; }
}
