// The REST contract: every route's method, path, access level, inputs and responses as zod schemas.
// The server registers its routes from these entries and validates with them, the CLI and the page
// read their response types from them, and /openapi.json is generated from them, so the four cannot
// drift. An area file exports an array of RouteContract; ./index.ts collects them.
import { z, type ZodType } from 'zod';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';
/** public: no token; viewer/operator/admin: an API token with at least that role; artifact: a device credential or a viewer token */
export type Access = 'public' | 'viewer' | 'operator' | 'admin' | 'artifact';

export interface RouteContract {
  method: HttpMethod;
  /** fastify style: /v1/campaigns/:campaignId */
  path: string;
  summary: string;
  description?: string;
  tags?: string[];
  /** who may call it; when absent: viewer for GET, operator otherwise (server/auth/api-auth.ts) */
  access?: Access;
  params?: ZodType;
  query?: ZodType;
  /** a JSON body, or 'binary' for a raw application/octet-stream upload */
  body?: ZodType | 'binary';
  /** the body may be left out (or be {}): the handler then gets undefined */
  bodyOptional?: boolean;
  /** per status code; error statuses use ErrorBody */
  responses: Record<number, ZodType>;
  /** content type of the success responses when not JSON (an artifact, the HTML page) */
  produces?: string;
}

/** Every error: a stable code (FLEET_ERR_* or fastify's FST_ERR_*) and a message naming the problem. */
export const ErrorBody = z.object({
  error: z.string().meta({ description: 'stable code, e.g. FLEET_ERR_VALIDATION' }),
  message: z.string(),
  details: z.unknown().optional(),
}).meta({ id: 'Error' });
export type ErrorBody = z.infer<typeof ErrorBody>;

/** `{400: ErrorBody, 404: ErrorBody}` from `errors(400, 404)`. */
export function errors<const S extends readonly number[]>(...statuses: S): { [K in S[number]]: typeof ErrorBody } {
  return Object.fromEntries(statuses.map((s) => [s, ErrorBody])) as { [K in S[number]]: typeof ErrorBody };
}

/** Keeps the literal types of an entry (its schemas) so handlers and clients infer from it. */
export function defineRoute<const R extends RouteContract>(r: R): R {
  return r;
}

type Out<T> = T extends ZodType ? z.output<T> : undefined;
/** What a handler receives after validation. */
export interface Parsed<R extends RouteContract> {
  params: Out<R['params']>;
  query: Out<R['query']>;
  body: R['body'] extends 'binary' ? Buffer : R['bodyOptional'] extends true ? Out<R['body']> | undefined : Out<R['body']>;
}
/** The body of one response of an entry, for clients: ResponseOf<typeof c.getCampaign, 200>. */
export type ResponseOf<R extends RouteContract, S extends keyof R['responses']> = R['responses'][S] extends ZodType ? z.output<R['responses'][S]> : never;
/** Any success body of an entry (its 2xx responses). */
export type SuccessOf<R extends RouteContract> = { [S in Extract<keyof R['responses'], 200 | 201 | 202 | 206>]: ResponseOf<R, S> }[Extract<keyof R['responses'], 200 | 201 | 202 | 206>];

/** The URL of an entry with its path parameters filled in (each URL-encoded). */
export function pathOf(r: Pick<RouteContract, 'path'>, params: Record<string, string | number> = {}): string {
  return r.path.replace(/:([A-Za-z0-9_]+)/g, (_, k: string) => {
    if (params[k] === undefined) throw new Error(`${r.path}: no value for :${k}`);
    return encodeURIComponent(String(params[k]));
  });
}

/** '/v1/campaigns/:campaignId' -> '/v1/campaigns/{campaignId}' */
export function openApiPath(path: string): string {
  return path.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}
