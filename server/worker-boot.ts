// Starting a worker_threads Worker from the server's own modules. Built (dist/), the thread runs the
// compiled .js beside the caller; from TypeScript sources (tsx, vitest) it first registers tsx's loader in
// the new thread, then imports the .ts entry.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

/** `entry` is relative to `from` (the caller's import.meta.url), written with its .ts extension. */
export function spawnModuleWorker(from: string, entry: string, workerData?: unknown): Worker {
  if (!from.endsWith('.ts')) return new Worker(new URL(entry.replace(/\.ts$/, '.js'), from), { workerData });
  const api = pathToFileURL(createRequire(from).resolve('tsx/esm/api')).href.replace(/\.cjs$/, '.mjs');
  const url = new URL(entry, from).href;
  const boot = `import { register } from ${JSON.stringify(api)}; register(); await import(${JSON.stringify(url)});`;
  return new Worker(new URL(`data:text/javascript,${encodeURIComponent(boot)}`), { workerData });
}
