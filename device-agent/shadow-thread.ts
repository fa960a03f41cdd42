// The shadow candidate's own thread (issue 17, device-agent/shadow-worker.ts): a worker_threads Worker
// with its own onnxruntime-web instance (its own WASM memory and queue, one WASM thread), so a shadow run
// never holds the WASM queue the caller's infer() goes through. It trusts nothing it is sent: the bytes of
// a load are hashed again here and must match the SHA-256 the main thread verified against the signed
// manifest. Messages: {op: 'load'|'run'|'release', id, ...} in, {id, ok, ...} out.
import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { createSession, runSession, type Feeds } from '../runtime/onnx-session.ts';

type Session = Awaited<ReturnType<typeof createSession>>;
export type ThreadRequest =
  | { op: 'load'; id: number; bytes: Uint8Array; sha256: string; sessionConfig: Record<string, string> }
  | { op: 'run'; id: number; session: number; feeds: Feeds }
  | { op: 'release'; id: number; session: number };
export type ThreadReply = { id: number; ok: true; session?: number; outputs?: unknown; ms?: number } | { id: number; ok: false; error: string };

const sessions = new Map<number, Session>();
let nextSession = 1;
const port = parentPort!;

async function handle(m: ThreadRequest): Promise<ThreadReply> {
  if (m.op === 'load') {
    const got = createHash('sha256').update(m.bytes).digest('hex');
    if (got !== m.sha256) return { id: m.id, ok: false, error: `the bytes sent to the shadow thread hash to ${got}, not the verified ${m.sha256}` };
    const session = await createSession(m.bytes, { config: m.sessionConfig });
    const n = nextSession++;
    sessions.set(n, session);
    return { id: m.id, ok: true, session: n };
  }
  const session = sessions.get(m.session);
  if (!session) return { id: m.id, ok: false, error: `no session ${m.session} in the shadow thread` };
  if (m.op === 'release') {
    sessions.delete(m.session);
    await session.release();
    return { id: m.id, ok: true };
  }
  // timed here, around the run alone: the latency ratio compares model time, not the message hops
  const t0 = performance.now();
  const outputs = await runSession(session, m.feeds);
  return { id: m.id, ok: true, outputs, ms: performance.now() - t0 };
}

port.on('message', (m: ThreadRequest) => {
  handle(m).then(
    (reply) => port.postMessage(reply),
    (err: unknown) => port.postMessage({ id: m.id, ok: false, error: (err as Error)?.message ?? String(err) } satisfies ThreadReply),
  );
});
