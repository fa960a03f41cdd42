// Artifact downloads that trust one CA only: the device's pinned caFile. Node 20's global fetch cannot
// take a CA per request (that needs undici's dispatcher, not a dependency here), so this is a small
// fetch over node:https with the CA on its own https.Agent. It answers what downloader.ts uses of a
// Response (status, headers, a streamed body) and honours the request's AbortSignal (the download
// timeout and the agent's stop), so Range/resume, size limits and abort work as with global fetch.
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { Agent, request } from 'node:https';
import { Readable } from 'node:stream';

/** the CA certificate(s) of a caFile, read once; an unreadable or non-PEM file is a clear error */
export function readCaFile(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`caFile ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  if (!text.includes('-----BEGIN CERTIFICATE-----')) throw new Error(`caFile ${file}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  return text;
}

const NULL_BODY = new Set([101, 103, 204, 205, 304]);

/** fetch for https:// URLs that accepts only server certificates chaining to `ca` (and naming the host) */
export function pinnedFetch(ca: string): typeof fetch {
  // no keep-alive: downloads are rare and large, and an idle pooled socket would outlive agent.stop()
  const agent = new Agent({ ca, rejectUnauthorized: true, keepAlive: false });
  return (async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
    if (url.protocol !== 'https:') throw new Error(`${url.protocol}//${url.host}: the agent pins a CA (caFile), so it downloads over https:// only`);
    const signal = init?.signal ?? undefined;
    signal?.throwIfAborted();
    const method = init?.method ?? 'GET';
    const headers = Object.fromEntries(new Headers(init?.headers).entries());
    return new Promise<Response>((resolve, reject) => {
      // abort as fetch does: the request, or the body being read, fails with the signal's reason
      // (TimeoutError for the download timeout), and the socket is closed
      let response: IncomingMessage | null = null;
      const onAbort = () => (response ? response.destroy(signal!.reason) : req.destroy(signal!.reason));
      const req = request(url, { method, headers, agent }, (res) => {
        response = res;
        res.once('close', () => signal?.removeEventListener('abort', onAbort));
        const out = new Headers();
        for (const [k, v] of Object.entries(res.headers)) {
          if (Array.isArray(v)) for (const x of v) out.append(k, x);
          else if (v !== undefined) out.set(k, v);
        }
        const status = res.statusCode ?? 502;
        const empty = NULL_BODY.has(status) || method === 'HEAD';
        if (empty) res.resume();
        resolve(new Response(empty ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), { status, statusText: res.statusMessage, headers: out }));
      });
      signal?.addEventListener('abort', onAbort, { once: true });
      req.on('error', (err) => {
        signal?.removeEventListener('abort', onAbort);
        reject(err);
      });
      req.end(typeof init?.body === 'string' || init?.body instanceof Uint8Array ? init.body : undefined);
    });
  }) as typeof fetch;
}
