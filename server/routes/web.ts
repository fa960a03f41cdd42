// The fleet page and the API reference: static files, public (they hold no data); every figure on them
// comes from the API with the operator's token. /openapi.json is generated once from the contract
// (shared/api/) and is public too: it describes the API, it holds no fleet data. A strict CSP keeps
// each page to its own script.
import type { FastifyInstance, FastifyReply } from 'fastify';
import { readFileSync } from 'node:fs';
import { routeContracts } from '../../shared/api/index.ts';
import { buildOpenApi } from '../../shared/api/openapi.ts';
import { systemContract as c } from '../../shared/api/system.ts';
import { AGENT_VERSION } from '../../shared/version.ts';
import { contractRoute } from './contract-route.ts';

const CSP = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'none'; frame-ancestors 'none'";

export async function webRoutes(app: FastifyInstance): Promise<void> {
  const file = (name: string) => readFileSync(new URL(`../web/${name}`, import.meta.url));
  const html = file('index.html'), js = file('app.js'), docsHtml = file('api-docs.html'), docsJs = file('api-docs.js');
  const send = (reply: FastifyReply, type: string, body: Buffer) => reply.type(type).header('content-security-policy', CSP).send(body);
  const openapi = JSON.stringify(buildOpenApi(routeContracts, {
    title: 'Edge fleet API', version: AGENT_VERSION,
    description: 'Fleet server REST API. Errors are {error: FLEET_ERR_*, message}. Tokens: fleetctl tokens create.',
  }));
  contractRoute(app, c.fleetPage, async (_in, _req, reply) => send(reply, 'text/html; charset=utf-8', html));
  contractRoute(app, c.fleetScript, async (_in, _req, reply) => send(reply, 'text/javascript; charset=utf-8', js));
  contractRoute(app, c.docsPage, async (_in, _req, reply) => send(reply, 'text/html; charset=utf-8', docsHtml));
  contractRoute(app, c.docsScript, async (_in, _req, reply) => send(reply, 'text/javascript; charset=utf-8', docsJs));
  contractRoute(app, c.openapi, async (_in, _req, reply) => reply.type('application/json; charset=utf-8').send(openapi));
}
