// The fleet page: served without a token (it holds no data), with a strict CSP; its data still needs one.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../helpers/harness.ts';

describe('the fleet web page', () => {
  let server: TestServer;
  beforeAll(async () => { server = await startTestServer(); });
  afterAll(async () => { await server?.close(); });

  it('serves the page and its script to anyone, with a CSP that allows only its own script', async () => {
    const page = await server.anonInject({ method: 'GET', url: '/' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    expect(page.body).toContain('<table id="campaigns">');
    expect(page.body).toContain('<script src="/app.js">');
    expect(page.headers['content-security-policy']).toMatch(/script-src 'self'/);
    const js = await server.anonInject({ method: 'GET', url: '/app.js' });
    expect(js.statusCode).toBe(200);
    expect(js.body).toContain("fetch(path, { method, headers: { authorization: `Bearer ${token}` } })");
    expect(js.body).not.toMatch(/innerHTML/);
  });

  it('the data behind it still needs a token', async () => {
    expect((await server.anonInject({ method: 'GET', url: '/v1/campaigns' })).statusCode).toBe(401);
    expect((await server.app.inject({ method: 'GET', url: '/v1/campaigns' })).statusCode).toBe(200);
  });
});
