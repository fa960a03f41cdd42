// Health, the fleet page's static files and this API's own description: public, they hold no fleet data.
import { z } from 'zod';
import { defineRoute, type RouteContract } from './contract.ts';

const tags = ['system'];
const page = (path: string, summary: string, produces: string) =>
  defineRoute({ method: 'GET', path, summary, tags, access: 'public', produces, responses: { 200: z.string() } });

export const systemContract = {
  health: defineRoute({
    method: 'GET', path: '/healthz', summary: 'liveness: the broker port and how many devices are connected', tags, access: 'public',
    responses: { 200: z.object({ ok: z.literal(true), mqttPort: z.number().int(), devicesConnected: z.number().int() }) },
  }),
  openapi: defineRoute({
    method: 'GET', path: '/openapi.json', summary: 'this document: OpenAPI 3.1, generated from the contract in shared/api/', tags, access: 'public',
    responses: { 200: z.looseObject({ openapi: z.string(), paths: z.record(z.string(), z.unknown()) }) },
  }),
  docsPage: page('/docs', 'the interactive API reference (reads /openapi.json; try requests with your token)', 'text/html'),
  docsScript: page('/docs.js', "the API reference page's script", 'text/javascript'),
  fleetPage: page('/', 'the fleet page (every figure on it comes from the API with your token)', 'text/html'),
  fleetScript: page('/app.js', "the fleet page's script", 'text/javascript'),
} satisfies Record<string, RouteContract>;

export const systemRoutes: RouteContract[] = Object.values(systemContract);
