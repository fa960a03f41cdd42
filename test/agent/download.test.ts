// Artifact downloads over loopback: Range resume after the server drops the connection mid-file, the
// hard byte limit (a server that sends more is cut off), a 200 answer to a Range request, retries that
// run out, the free-space check; and the agent resuming through a proxy that breaks the first transfer.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { downloadArtifact } from '../../device-agent/downloader.ts';
import { UpdateRefused } from '../../shared/reason-codes.ts';
import { assign, pushBundle, startTestServer, tempDir, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { outcome, startAgent } from './fixture.ts';

type Handler = (req: IncomingMessage, res: import('node:http').ServerResponse, n: number) => void;

async function serve(handler: Handler): Promise<{ url: string; requests: { range?: string }[]; close(): Promise<void> }> {
  const requests: { range?: string }[] = [];
  const server: Server = createServer((req, res) => {
    requests.push({ range: req.headers.range });
    handler(req, res, requests.length);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/blob`, requests,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

const noSleep = async () => {};
const BLOB = randomBytes(256 * 1024);

/** Answer with BLOB honouring Range; the first answer stops after `dropAfter` bytes and breaks the socket. */
function rangeHandler(dropAfter?: number): Handler {
  return (req, res, n) => {
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    res.writeHead(m ? 206 : 200, { 'content-length': BLOB.length - start, ...(m ? { 'content-range': `bytes ${start}-${BLOB.length - 1}/${BLOB.length}` } : {}) });
    if (n === 1 && dropAfter !== undefined) {
      res.write(BLOB.subarray(0, dropAfter));
      setTimeout(() => res.socket?.destroy(), 50); // let the client read what was sent, then break
    } else {
      res.end(BLOB.subarray(start));
    }
  };
}

describe('downloadArtifact', () => {
  const dir = tempDir('fleet-dl-');
  let srv: Awaited<ReturnType<typeof serve>> | null = null;
  afterEach(async () => { await srv?.close(); srv = null; });

  const opts = (url: string, name: string, over: Partial<Parameters<typeof downloadArtifact>[0]> = {}) => ({
    url, dest: join(dir, name), expectedLength: BLOB.length, retries: 3, backoffMs: 1, timeoutMs: 5000, sleep: noSleep, ...over,
  });

  it('resumes with Range after the server drops the connection mid-file', async () => {
    srv = await serve(rangeHandler(100_000));
    const r = await downloadArtifact(opts(srv.url, 'resume.part'));
    expect(r).toMatchObject({ bytes: BLOB.length, attempts: 2, resumed: true });
    expect(srv.requests[0].range).toBeUndefined();
    expect(srv.requests[1].range).toMatch(/^bytes=\d+-$/);
    expect(Number(/\d+/.exec(srv.requests[1].range!)![0])).toBeGreaterThan(0);
    expect(readFileSync(join(dir, 'resume.part')).equals(BLOB)).toBe(true);
    // hashed while downloading: the part already on disk, then the rest, gives the whole file's digest
    expect(r.content.data.equals(BLOB)).toBe(true);
    expect(r.content.sha256).toBe(createHash('sha256').update(BLOB).digest('hex'));
  });

  it('hands back the bytes it hashed: a file already complete on disk is read and hashed once', async () => {
    srv = await serve(rangeHandler());
    writeFileSync(join(dir, 'done.part'), BLOB);
    const r = await downloadArtifact(opts(srv.url, 'done.part'));
    expect(srv.requests).toHaveLength(0);
    expect(r.content.sha256).toBe(createHash('sha256').update(BLOB).digest('hex'));
    // damaged bytes on disk give another digest (the caller refuses them with HASH_MISMATCH)
    const bad = Buffer.from(BLOB); bad[1234] ^= 1;
    writeFileSync(join(dir, 'bad.part'), bad);
    const r2 = await downloadArtifact(opts(srv.url, 'bad.part'));
    expect(r2.content.sha256).toBe(createHash('sha256').update(bad).digest('hex'));
    expect(r2.content.sha256).not.toBe(r.content.sha256);
  });

  it('cuts off a server that streams more than the manifest allows (no content-length)', async () => {
    srv = await serve((_req, res) => {
      res.writeHead(200); // chunked: the size is only known by counting
      res.write(BLOB);
      res.end(BLOB.subarray(0, 1000));
    });
    const err = await downloadArtifact(opts(srv.url, 'over.part')).catch((e) => e);
    expect(err).toBeInstanceOf(UpdateRefused);
    expect(err.reason).toBe('SIZE_MISMATCH');
    expect(statSync(join(dir, 'over.part')).size).toBeLessThanOrEqual(BLOB.length);
    expect(srv.requests).toHaveLength(1); // no retry: more bytes will not become fewer
  });

  it('refuses a declared length over the limit before reading the body', async () => {
    srv = await serve((_req, res) => { res.writeHead(200, { 'content-length': BLOB.length + 1 }); res.end(Buffer.concat([BLOB, Buffer.from([0])])); });
    const err = await downloadArtifact(opts(srv.url, 'declared.part')).catch((e) => e);
    expect(err.reason).toBe('SIZE_MISMATCH');
  });

  it('starts over when the server answers a Range request with the whole file', async () => {
    let first = true;
    srv = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': BLOB.length });
      if (first) { first = false; res.write(BLOB.subarray(0, 50_000)); setTimeout(() => res.socket?.destroy(), 50); } else res.end(BLOB);
    });
    const r = await downloadArtifact(opts(srv.url, 'restart.part'));
    expect(r.attempts).toBe(2);
    expect(readFileSync(join(dir, 'restart.part')).equals(BLOB)).toBe(true);
    // the bytes of the first, abandoned answer are not in the digest
    expect(r.content.data.equals(BLOB)).toBe(true);
    expect(r.content.sha256).toBe(createHash('sha256').update(BLOB).digest('hex'));
  });

  it('gives up with DOWNLOAD_FAILED after its retries, backing off between them', async () => {
    srv = await serve((_req, res) => { res.writeHead(503); res.end(); });
    const waits: number[] = [];
    const err = await downloadArtifact(opts(srv.url, 'fail.part', { retries: 3, backoffMs: 100, random: () => 0.5, sleep: async (ms) => { waits.push(ms); } })).catch((e) => e);
    expect(err.reason).toBe('DOWNLOAD_FAILED');
    expect(srv.requests).toHaveLength(4);
    // exponential from backoffMs with equal jitter (random 0.5: three quarters of 100, 200, 400)
    expect(waits).toEqual([75, 150, 300]);
  });

  it('caps the wait between attempts at backoffMaxMs', async () => {
    srv = await serve((_req, res) => { res.writeHead(503); res.end(); });
    const waits: number[] = [];
    await downloadArtifact(opts(srv.url, 'capped.part', { retries: 5, backoffMs: 100, backoffMaxMs: 250, random: () => 1, sleep: async (ms) => { waits.push(ms); } })).catch(() => {});
    expect(waits).toEqual([100, 200, 250, 250, 250]);
  });

  it('refuses with DISK_FULL when the artifact cannot fit', async () => {
    const err = await downloadArtifact(opts('http://127.0.0.1:9/never', 'huge.part', { expectedLength: 2 ** 52 })).catch((e) => e);
    expect(err.reason).toBe('DISK_FULL');
    expect(existsSync(join(dir, 'huge.part'))).toBe(false);
  });
});

describe('the agent resumes an artifact download the server broke off', () => {
  let server: TestServer;
  let proxy: Awaited<ReturnType<typeof serve>>;
  beforeAll(async () => { server = await startTestServer(); }, 60_000);
  afterAll(async () => { await proxy?.close(); await server?.close(); });

  it('installs the model after a mid-file disconnect, with a Range request for the rest', async () => {
    const big = await pushBundle(server, 'wide', tinyClassifier(3, { inputs: 512, classes: 64 }));
    const length = big.manifest.artifact.length;
    expect(length).toBeGreaterThan(100_000);
    const target = new URL(server.baseUrl);
    // A proxy in front of the server's artifact route that breaks the first transfer half way.
    proxy = await serve((req, res, n) => {
      const up = request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (upRes) => {
        res.writeHead(upRes.statusCode!, upRes.headers);
        if (n !== 1) return void upRes.pipe(res);
        let sent = 0;
        upRes.on('data', (chunk: Buffer) => {
          if (sent >= length / 2) return;
          res.write(chunk.subarray(0, Math.max(0, Math.min(chunk.length, Math.floor(length / 2) - sent))));
          sent += chunk.length;
          if (sent >= length / 2) { upRes.destroy(); setTimeout(() => res.socket?.destroy(), 50); }
        });
      });
      up.end();
    });
    const agent = await startAgent(server, 'resumer-1', { serverUrl: proxy.url.replace(/\/blob$/, '') });
    try {
      await assign(server, big.manifestSha256, [agent.deviceId]);
      const s = await outcome(agent, big.manifestSha256);
      expect(s.state).toBe('active');
      expect(proxy.requests).toHaveLength(2);
      expect(proxy.requests[0].range).toBeUndefined();
      const resumedAt = Number(/^bytes=(\d+)-$/.exec(proxy.requests[1].range ?? '')?.[1]);
      expect(resumedAt).toBeGreaterThan(0);
      expect(resumedAt).toBeLessThan(length);
    } finally {
      await agent.stop();
    }
  });
});
