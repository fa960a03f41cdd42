// The REST contract (shared/api/) against the running server: every route fastify registered is in
// the contract and in /openapi.json with its method, and nothing else is; a tour of requests over every
// route gets responses that match both the contract's zod schema and the document's JSON Schema for
// their status, and every JSON body the server accepted matches the document's request schema. A real server, a real fleet of two agents, real bundles.
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { routeContracts, type RouteContract } from '../../shared/api/index.ts';
import { allowedActions } from '../../server/rollouts/campaign-actions.ts';
import { registeredRoutes } from '../../server/routes/route-list.ts';
import type { SimulatedFleet } from '../../firmware-sim/fleet.ts';
import { startFleet, startTestServer, uploadModel, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';

const key = (method: string, path: string) => `${method} ${path}`;
const toOpenApi = (path: string) => path.replace(/:([A-Za-z0-9_]+)/g, '{$1}');

/** The contract entry a request went to: static segments win over parameters, as in fastify's router. */
function entryFor(method: string, url: string): RouteContract {
  const path = url.split('?')[0];
  const matches = routeContracts.filter((r) => r.method === method
    && new RegExp(`^${r.path.replace(/:[A-Za-z0-9_]+/g, '[^/]+')}$`).test(path));
  matches.sort((a, b) => (a.path.match(/:/g)?.length ?? 0) - (b.path.match(/:/g)?.length ?? 0));
  if (!matches[0]) throw new Error(`no contract entry for ${method} ${path}`);
  return matches[0];
}

describe('REST contract, OpenAPI document and the routes the server registered', { timeout: 120_000 }, () => {
  let server: TestServer;
  let fleet: SimulatedFleet;
  let doc: { paths: Record<string, Record<string, { responses: Record<string, { content: Record<string, { schema: object }> }>; requestBody?: { content: Record<string, { schema: object }> }; parameters: { name: string; in: string }[] }>>; components: { schemas: Record<string, object> } };
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  const exercised = new Set<string>();
  let checked = 0;
  let requests = 0;

  /** A request through app.inject, its response checked against the contract and the document. */
  async function call(opts: InjectOptions & { method: string; url: string }, expectStatus: number): Promise<LightMyRequestResponse> {
    const res = await server.app.inject(opts);
    expect(res.statusCode, `${opts.method} ${opts.url}: ${res.body.slice(0, 300)}`).toBe(expectStatus);
    const entry = entryFor(opts.method, opts.url);
    exercised.add(key(entry.method, entry.path));
    const schema = entry.responses[res.statusCode];
    expect(schema, `${entry.method} ${entry.path} has no response schema for ${res.statusCode}`).toBeDefined();
    const op = doc.paths[toOpenApi(entry.path)][entry.method.toLowerCase()];
    // a JSON body the server took is one the document describes (requests are described as input: defaults optional)
    const requestSchema = op.requestBody?.content['application/json']?.schema;
    if (res.statusCode < 400 && requestSchema && opts.payload !== undefined && !Buffer.isBuffer(opts.payload)) {
      const id = `request ${entry.method}${entry.path}`;
      const validate = ajv.getSchema(id) ?? ajv.compile({ ...requestSchema, $id: id, components: doc.components });
      expect(validate(opts.payload), `${opts.method} ${opts.url} request vs /openapi.json: ${ajv.errorsText(validate.errors)}`).toBe(true);
      requests++;
    }
    const [type, media] = Object.entries(op.responses[String(res.statusCode)].content)[0];
    expect(res.headers['content-type'], `${opts.method} ${opts.url}`).toContain(type);
    if (type === 'application/json') {
      const body = res.json();
      const z = schema.safeParse(body);
      expect(z.success, `${opts.method} ${opts.url} ${res.statusCode} vs contract: ${z.error?.message}`).toBe(true);
      const id = `${entry.method}${entry.path}${res.statusCode}`;
      const validate = ajv.getSchema(id) ?? ajv.compile({ ...media.schema, $id: id, components: doc.components });
      const ok = validate(body);
      expect(ok, `${opts.method} ${opts.url} ${res.statusCode} vs /openapi.json: ${ajv.errorsText(validate.errors)}`).toBe(true);
      checked++;
    }
    return res;
  }

  beforeAll(async () => {
    server = await startTestServer();
    fleet = await startFleet(server, { count: 2, hardware: () => 'cam-a' });
    const res = await server.anonInject({ method: 'GET', url: '/openapi.json' });
    doc = res.json();
  }, 120_000);

  afterAll(async () => {
    await fleet?.stop();
    await server?.close();
  });

  it('every registered route is in the contract and every contract route is registered, with its method', () => {
    const registered = registeredRoutes(server.app).map((r) => key(r.method, r.url)).sort();
    const contract = routeContracts.map((r) => key(r.method, r.path)).sort();
    expect(registered).toEqual(contract);
    expect(new Set(contract).size).toBe(routeContracts.length);
    expect(contract.length).toBe(49); // 42 + the four release routes (issue 19) + the three tag-policy routes (issue 18)
  });

  it('/openapi.json (public) has one operation per contract route and no other, each with its path parameters', async () => {
    const res = await server.anonInject({ method: 'GET', url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    expect(res.json().openapi).toBe('3.1.0');
    const ops = Object.entries(doc.paths).flatMap(([path, item]) => Object.keys(item).map((m) => key(m.toUpperCase(), path))).sort();
    expect(ops).toEqual(routeContracts.map((r) => key(r.method, toOpenApi(r.path))).sort());
    for (const r of routeContracts) {
      const names = [...r.path.matchAll(/:([A-Za-z0-9_]+)/g)].map((m) => m[1]);
      const documented = doc.paths[toOpenApi(r.path)][r.method.toLowerCase()].parameters.filter((p) => p.in === 'path').map((p) => p.name);
      expect(documented, key(r.method, r.path)).toEqual(names);
    }
    // every named schema a $ref points at is in components
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)].map((m) => m[1]);
    for (const ref of refs) expect(doc.components.schemas[ref], ref).toBeDefined();
  });

  it('/docs is a public page with its own script, under the strict CSP', async () => {
    const page = await server.anonInject({ method: 'GET', url: '/docs' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toContain('text/html');
    expect(page.body).toContain('<script src="/docs.js"></script>');
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    const js = await server.anonInject({ method: 'GET', url: '/docs.js' });
    expect(js.statusCode).toBe(200);
    expect(js.body).toContain("fetch('/openapi.json')");
  });

  it('a tour of every route: each response matches the contract and the document for its status', async () => {
    for (const url of ['/healthz', '/openapi.json', '/docs', '/docs.js', '/', '/app.js', '/v1/whoami']) await call({ method: 'GET', url }, 200);
    // access
    const tok = (await call({ method: 'POST', url: '/v1/tokens', payload: { name: 'tour', role: 'viewer' } }, 201)).json();
    await call({ method: 'GET', url: '/v1/tokens' }, 200);
    await call({ method: 'POST', url: `/v1/tokens/${tok.tokenId}/revoke` }, 200);
    await call({ method: 'POST', url: '/v1/tokens/0123456789abcdef/revoke' }, 404);
    await call({ method: 'POST', url: '/v1/tokens', payload: { name: 'x', role: 'root' } }, 400);
    const et = (await call({ method: 'POST', url: '/v1/enrollment-tokens' }, 201)).json();
    await call({ method: 'POST', url: `/v1/enrollment-tokens/${et.tokenId}/revoke` }, 200);
    const et2 = (await call({ method: 'POST', url: '/v1/enrollment-tokens', payload: { uses: 1 } }, 201)).json();
    await call({ method: 'POST', url: '/v1/enroll', payload: { enrollmentToken: et2.token, deviceIds: ['tour-1'] } }, 201);
    await call({ method: 'POST', url: '/v1/enroll', payload: { enrollmentToken: et2.token, deviceIds: ['tour-2'] } }, 401);
    await call({ method: 'POST', url: '/v1/devices/tour-1/credentials' }, 201);
    await call({ method: 'GET', url: '/v1/devices/tour-1/credential' }, 200);
    await call({ method: 'POST', url: '/v1/devices/tour-1/revoke' }, 200);
    await call({ method: 'POST', url: '/v1/devices/bad%20id/revoke' }, 400);
    // bundles
    const up = await uploadModel(server, tinyClassifier(3));
    await call({ method: 'POST', url: '/v1/uploads', headers: { 'content-type': 'application/octet-stream' }, payload: Buffer.from(tinyClassifier(4)) }, 201);
    await call({ method: 'GET', url: `/v1/uploads/${up.sha256}` }, 200);
    await call({ method: 'GET', url: `/v1/uploads/${'0'.repeat(64)}` }, 404);
    const v1 = (await call({ method: 'POST', url: '/v1/models/tiny/bundles', payload: { uploadSha256: up.sha256, quantize: 'none', healthCheck: { latencyBudgetMs: 5000 } } }, 201)).json();
    const v2 = (await call({ method: 'POST', url: `/v1/bundles/${v1.manifestSha256}/resign` }, 201)).json();
    await call({ method: 'GET', url: '/v1/models' }, 200);
    await call({ method: 'GET', url: '/v1/models/tiny/bundles' }, 200);
    await call({ method: 'GET', url: '/v1/bundles' }, 200);
    const b = (await call({ method: 'GET', url: `/v1/bundles/${v1.manifestSha256}` }, 200)).json();
    await call({ method: 'GET', url: `/v1/artifacts/${b.artifactSha256}` }, 200);
    await call({ method: 'GET', url: `/v1/artifacts/${b.artifactSha256}`, headers: { range: 'bytes=0-9' } }, 206);
    // devices: wait for the two agents to have said hello
    for (let i = 0; i < 600 && (await server.app.inject({ method: 'GET', url: '/v1/devices' })).json().devices.length < 2; i++) await new Promise((r) => setTimeout(r, 100));
    expect((await call({ method: 'GET', url: '/v1/devices?limit=10' }, 200)).json().devices).toHaveLength(2);
    await call({ method: 'GET', url: '/v1/devices?limit=0' }, 400);
    await call({ method: 'GET', url: `/v1/devices/${fleet.agents[0].deviceId}` }, 200);
    await call({ method: 'GET', url: '/v1/devices/nobody' }, 404);
    await call({ method: 'POST', url: '/v1/assignments', payload: { manifestSha256: v1.manifestSha256, deviceIds: fleet.agents.map((a) => a.deviceId) } }, 202);
    // releases (issue 19)
    await call({ method: 'POST', url: '/v1/releases', payload: { name: 'tour-release', models: [{ modelId: 'tiny' }] } }, 201);
    await call({ method: 'POST', url: '/v1/releases', payload: { name: 'tour-release', models: [{ modelId: 'nope' }] } }, 404);
    await call({ method: 'POST', url: '/v1/releases', payload: { name: 'tour-release', models: [{ modelId: 'tiny' }, { modelId: 'tiny' }] } }, 400);
    await call({ method: 'GET', url: '/v1/releases' }, 200);
    await call({ method: 'GET', url: '/v1/releases/tour-release' }, 200);
    await call({ method: 'GET', url: '/v1/releases/nothing' }, 404);
    await call({ method: 'POST', url: '/v1/releases/tour-release/assignments', payload: { deviceIds: ['tour-release-1'] } }, 202);
    await call({ method: 'POST', url: '/v1/releases/nothing/assignments', payload: { deviceIds: ['tour-release-1'] } }, 404);
    // campaigns
    const cmp = (await call({ method: 'POST', url: '/v1/campaigns', payload: { manifestSha256: v2.manifestSha256, waves: [{ percent: 100, soakSeconds: 3600 }] } }, 201)).json();
    expect(cmp.actions).toEqual(allowedActions('running'));
    await call({ method: 'GET', url: '/v1/campaigns' }, 200);
    await call({ method: 'GET', url: `/v1/campaigns/${cmp.campaignId}` }, 200);
    await call({ method: 'GET', url: `/v1/campaigns/${cmp.campaignId}/events` }, 200);
    await call({ method: 'GET', url: '/v1/campaigns/not-a-uuid' }, 400);
    expect((await call({ method: 'POST', url: `/v1/campaigns/${cmp.campaignId}/pause` }, 200)).json().actions).toEqual(['resume', 'promote', 'abort', 'revert']);
    await call({ method: 'POST', url: `/v1/campaigns/${cmp.campaignId}/pause` }, 409);
    // keys
    const keys = (await call({ method: 'GET', url: '/v1/keys' }, 200)).json();
    await call({ method: 'POST', url: '/v1/keys/keyset', payload: { signed: '{}', keyId: keys.root.keyId, sig: 'x' } }, 400);
    await call({ method: 'POST', url: `/v1/keys/${'0'.repeat(32)}/revoke` }, 404);
    await call({ method: 'POST', url: '/v1/keys/rotate' }, 201);
    // audit
    expect((await call({ method: 'GET', url: '/v1/audit?action=tokens.' }, 200)).json().entries.map((e: { action: string }) => e.action)).toEqual(['tokens.revoke', 'tokens.create', 'tokens.bootstrap']);
    await call({ method: 'GET', url: '/v1/audit?limit=5000' }, 400);
    // telemetry
    await call({ method: 'GET', url: '/v1/telemetry?bucket=hour&groupBy=hardware' }, 200);
    await call({ method: 'GET', url: '/v1/telemetry?bucket=week' }, 400);
    await call({ method: 'GET', url: '/metrics' }, 200);
    // fleet shape (rehearsals)
    await call({ method: 'GET', url: '/v1/fleet/shape?windowSeconds=600' }, 200);
    await call({ method: 'POST', url: '/v1/fleet/shape', payload: { target: { hardware: ['generic'] } } }, 200);
    await call({ method: 'GET', url: '/v1/fleet/shape?windowSeconds=1' }, 400);
    // maintenance windows and conditions of a device group by tag (#18)
    await call({ method: 'PUT', url: '/v1/tag-policies/night', payload: { downloadWindows: [{ days: ['sat'], start: '01:00', end: '05:00' }] } }, 200);
    await call({ method: 'PUT', url: '/v1/tag-policies/night', payload: { conditions: { minBatteryPercent: 101 } } }, 400);
    await call({ method: 'GET', url: '/v1/tag-policies' }, 200);
    await call({ method: 'DELETE', url: '/v1/tag-policies/night' }, 200);

    const missed = routeContracts.map((r) => key(r.method, r.path)).filter((k) => !exercised.has(k));
    expect(missed).toEqual([]);
    // 68 requests (8 of them to the release routes, 4 to the tag policies), 7 answered with HTML, a script, artifact bytes or Prometheus text: 61 JSON bodies checked twice
    expect(checked).toBe(61);
    // the JSON bodies the server accepted: token, enrollment token, enroll, bundle, assignment, campaign, fleet shape, release, release assignment, tag policy
    expect(requests).toBe(10);
  });

  it('a finished campaign offers only revert, and the engine refuses what it does not offer', async () => {
    const { campaigns } = (await server.app.inject({ method: 'GET', url: '/v1/campaigns' })).json();
    const id = campaigns[0].campaignId as string;
    server.app.fleet.rollouts.store.setStatus(id, 'completed', Date.now());
    const view = (await call({ method: 'GET', url: `/v1/campaigns/${id}` }, 200)).json();
    expect(view.actions).toEqual(['revert']);
    const refused = await call({ method: 'POST', url: `/v1/campaigns/${id}/abort` }, 409);
    expect(refused.json()).toEqual({ error: 'FLEET_ERR_CAMPAIGN_STATE', message: 'cannot abort a campaign that is completed' });
  });
});
