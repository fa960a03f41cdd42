// Registers a route from its contract entry (shared/api/): method, path and access level come from the
// entry, and params, query and body are parsed with its schemas before the handler runs, so a route
// cannot accept what its OpenAPI description does not say. Bad input is a 400 naming the field:
// FLEET_ERR_BAD_PARAM for path parameters, FLEET_ERR_VALIDATION for the query and the body.
//
// Why not a zod type provider: its errors surface as fastify validation errors, and every route
// would need them mapped back to these codes and messages (which clients and tests rely on); parsing
// here keeps them as they were. Responses are sent with fastify's plain JSON serialization (parsing
// a 10,000-device list through zod on every read costs more than it guards); the contract test checks
// real responses against the response schemas instead.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Parsed, RouteContract } from '../../shared/api/contract.ts';
import { AppError, zodMessage } from '../errors.ts';
import { parseBody, parseParams } from './params.ts';

export interface ContractRouteOptions {
  /** a larger body limit than the server's default (model uploads) */
  bodyLimit?: number;
  /** serve HEAD with the same handler (it sees req.method === 'HEAD') */
  head?: boolean;
}

const isEmpty = (b: unknown) => b === undefined || b === null || (typeof b === 'object' && !Buffer.isBuffer(b) && Object.keys(b).length === 0);

export function contractRoute<R extends RouteContract>(
  app: FastifyInstance, r: R,
  handler: (input: Parsed<R>, req: FastifyRequest, reply: FastifyReply) => Promise<unknown>,
  opts: ContractRouteOptions = {},
): void {
  app.route({
    method: opts.head ? [r.method, 'HEAD'] : r.method,
    url: r.path,
    ...(opts.head ? { exposeHeadRoute: false } : {}),
    ...(r.access ? { config: { access: r.access } } : {}),
    ...(opts.bodyLimit ? { bodyLimit: opts.bodyLimit } : {}),
    handler: async (req, reply) => {
      const params = r.params ? parseParams(r.params, req.params) : undefined;
      let query: unknown;
      if (r.query) {
        const q = r.query.safeParse(req.query ?? {});
        if (!q.success) throw new AppError('FLEET_ERR_VALIDATION', zodMessage(q.error, 'query'), 400);
        query = q.data;
      }
      let body: unknown;
      if (r.body === 'binary') {
        if (!Buffer.isBuffer(req.body)) throw new AppError('FLEET_ERR_CONTENT_TYPE', 'send the model as the raw body with Content-Type: application/octet-stream', 415);
        body = req.body;
      } else if (r.body) {
        body = r.bodyOptional && isEmpty(req.body) ? undefined : parseBody(r.body, req.body);
      }
      return handler({ params, query, body } as Parsed<R>, req, reply);
    },
  });
}
