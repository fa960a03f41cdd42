// Small helpers the benchmark sections share: medians, the machine's CPU count, child processes that
// run a role of a bench file (so publishers, agents and servers get a process of their own), and an
// IPC request/reply that always times out instead of hanging a benchmark.
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export const cpuCount = (): number => cpus().length;

/** Round for reports: figures carry 3 significant digits at most, so noise does not look like precision. */
export function round(x: number, digits = 3): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const p = 10 ** Math.max(0, digits - 1 - Math.floor(Math.log10(Math.abs(x))));
  return Math.round(x * p) / p;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** True when this module is the script node was started with (`npx tsx bench/x.ts`). */
export function isMain(importMetaUrl: string): boolean {
  return !!process.argv[1] && fileURLToPath(importMetaUrl) === process.argv[1];
}

/** The role a bench file was forked to play (`--child <role>`), or null in the parent. */
export function childRole(): string | null {
  const i = process.argv.indexOf('--child');
  return i >= 0 ? process.argv[i + 1] ?? null : null;
}

/**
 * Fork `file` (a bench .ts file) in the role `role`. The child inherits tsx's loader flags from
 * process.execArgv; `exposeGc` adds --expose-gc so the child can measure memory after a collection.
 */
export function forkRole(file: string, role: string, opts: { exposeGc?: boolean; env?: NodeJS.ProcessEnv } = {}): ChildProcess {
  const execArgv = [...process.execArgv, ...(opts.exposeGc ? ['--expose-gc'] : [])];
  return fork(file, ['--child', role], { execArgv, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
}

export interface Msg { type: string; [k: string]: unknown }

/** The next IPC message of `type` from `child`; rejects on timeout, on an {type:'error'} or if the child exits. */
export function nextMessage<T extends Msg = Msg>(child: ChildProcess, type: string, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, m?: T) => {
      clearTimeout(timer);
      child.off('message', onMsg);
      child.off('exit', onExit);
      if (err) reject(err); else resolve(m!);
    };
    const onMsg = (m: Msg) => {
      if (m?.type === type) done(null, m as T);
      else if (m?.type === 'error') done(new Error(`child: ${String(m.message)}`));
    };
    const onExit = (code: number | null, signal: string | null) => done(new Error(`child exited (${code ?? signal}) while waiting for ${type}`));
    const timer = setTimeout(() => done(new Error(`child: no ${type} within ${timeoutMs} ms`)), timeoutMs);
    child.on('message', onMsg);
    child.on('exit', onExit);
  });
}

/** Send a request and wait for its reply. */
export function ask<T extends Msg = Msg>(child: ChildProcess, msg: Msg, replyType: string, timeoutMs: number): Promise<T> {
  const reply = nextMessage<T>(child, replyType, timeoutMs);
  child.send(msg);
  return reply;
}

/** Ask a child to exit; kill it (this one child, by its handle) if it has not within `graceMs`. */
export async function stopChild(child: ChildProcess | null | undefined, graceMs = 5000): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try { child.send({ type: 'exit' }); } catch { /* IPC already closed */ }
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/**
 * In a child: answer the parent's requests with `handler`, exit on {type:'exit'} or when the parent
 * goes away (a benchmark never leaves processes behind). A handler error goes back as {type:'error'}.
 */
export function serveParent(handler: (m: Msg) => Promise<Msg | void>, onExit: () => Promise<void> = async () => {}): void {
  const exit = async (code: number) => {
    try { await onExit(); } finally { process.exit(code); }
  };
  process.on('disconnect', () => void exit(0));
  process.on('message', async (m: Msg) => {
    if (m.type === 'exit') return exit(0);
    try {
      const reply = await handler(m);
      if (reply) process.send!(reply);
    } catch (err) {
      process.send!({ type: 'error', message: (err as Error).stack ?? String(err) });
    }
  });
}

/** Poll until `pred()` or `timeoutMs`; returns whether it became true. */
export async function waitUntil(pred: () => boolean, timeoutMs: number, intervalMs = 2): Promise<boolean> {
  const end = performance.now() + timeoutMs;
  while (!pred()) {
    if (performance.now() > end) return false;
    await sleep(intervalMs);
  }
  return true;
}

/** A temp folder for the duration of `fn`, always removed. */
export async function withTempDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  try {
    return await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Run a section alone: print its JSON, exit non-zero on error. */
export async function runAlone(fn: () => Promise<object>): Promise<void> {
  try {
    console.log(JSON.stringify(await fn(), null, 2));
  } catch (err) {
    console.error((err as Error).stack ?? err);
    process.exitCode = 1;
  }
}
