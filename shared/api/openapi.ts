// The OpenAPI 3.1 document, generated from the contract. Requests are described as a client sends
// them (zod's io: 'input': defaults are optional fields, coerced query numbers are numbers), responses
// as the server sends them (io: 'output').
import { z, type ZodType } from 'zod';
import { openApiPath, type RouteContract } from './contract.ts';

export interface OpenApiInfo { title: string; version: string; description?: string }

type Json = Record<string, unknown>;

/** Named schemas (`.meta({id})`) go to components.schemas; their references are rewritten to point there. */
function schemaOf(components: Record<string, Json>) {
  return (t: ZodType, io: 'input' | 'output'): Json => {
    // unrepresentable parts (a transform's output, a refine) are described by their input or as any
    const s = z.toJSONSchema(t, { io, unrepresentable: 'any', target: 'draft-2020-12' }) as Json;
    delete s.$schema;
    const name = (id: string) => (io === 'input' ? `${id}Input` : id);
    const defs = (s.$defs ?? {}) as Record<string, Json>;
    delete s.$defs;
    const rewrite = (v: unknown): unknown => {
      if (Array.isArray(v)) return v.map(rewrite);
      if (v && typeof v === 'object') {
        return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, k === '$ref' && typeof x === 'string' && x.startsWith('#/$defs/')
          ? `#/components/schemas/${name(x.slice('#/$defs/'.length))}` : rewrite(x)]));
      }
      return v;
    };
    for (const [id, d] of Object.entries(defs)) components[name(id)] = rewrite(d) as Json;
    return rewrite(s) as Json;
  };
}

function parameters(schema: ReturnType<typeof schemaOf>, t: ZodType | undefined, where: 'path' | 'query'): Json[] {
  if (!t) return [];
  const s = schema(t, 'input');
  const props = (s.properties ?? {}) as Record<string, Json>;
  const required = new Set((s.required as string[] | undefined) ?? []);
  return Object.entries(props).map(([name, p]) => ({
    name, in: where, required: where === 'path' || required.has(name), schema: p,
    ...(typeof p.description === 'string' ? { description: p.description } : {}),
  }));
}

const SECURED: Record<string, string> = { viewer: 'a viewer token or better', operator: 'an operator or admin token', admin: 'an admin token', artifact: "a device's credential or a viewer token" };

export function buildOpenApi(routes: readonly RouteContract[], info: OpenApiInfo): Json {
  const paths: Record<string, Record<string, Json>> = {};
  const components: Record<string, Json> = {};
  const schema = schemaOf(components);
  for (const r of routes) {
    const access = r.access ?? (r.method === 'GET' ? 'viewer' : 'operator');
    const responses: Record<string, Json> = {};
    for (const [status, t] of Object.entries(r.responses)) {
      const ok = Number(status) < 400;
      const type = ok && r.produces ? r.produces : 'application/json';
      responses[status] = { description: ok ? 'success' : 'error', content: { [type]: { schema: schema(t, 'output') } } };
    }
    const op: Json = {
      operationId: `${r.method.toLowerCase()}${openApiPath(r.path).replace(/[{}]/g, '').split(/[/_.-]/).map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join('')}`,
      summary: r.summary,
      ...(r.description || access !== 'public' ? { description: [r.description, access === 'public' ? null : `Needs ${SECURED[access]}.`].filter(Boolean).join(' ') } : {}),
      ...(r.tags ? { tags: r.tags } : {}),
      'x-access': access,
      security: access === 'public' ? [] : [{ bearer: [] }],
      parameters: [...parameters(schema, r.params, 'path'), ...parameters(schema, r.query, 'query')],
      ...(r.body === 'binary'
        ? { requestBody: { required: true, content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } } }
        : r.body ? { requestBody: { required: !r.bodyOptional, content: { 'application/json': { schema: schema(r.body, 'input') } } } } : {}),
      responses,
    };
    (paths[openApiPath(r.path)] ??= {})[r.method.toLowerCase()] = op;
  }
  return {
    openapi: '3.1.0',
    info,
    servers: [{ url: '/' }],
    components: { schemas: components, securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'an API token (fleetctl tokens create) or, for artifacts, a device credential' } } },
    security: [{ bearer: [] }],
    paths,
  };
}
