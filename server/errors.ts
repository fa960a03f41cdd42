// Expected failures carry a stable code and an HTTP status; anything else is a bare 500 and a log line.
import type { FastifyError, FastifyInstance } from 'fastify';
import { ZodError } from 'zod';

export class AppError extends Error {
  constructor(readonly code: string, message: string, readonly status = 400, readonly details?: unknown) {
    super(message);
    this.name = 'AppError';
  }
}

export function zodMessage(err: ZodError, prefix = 'body'): string {
  return err.issues.slice(0, 5).map((i) => `${[prefix, ...i.path].join('.')}: ${i.message}`).join('; ');
}

export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | AppError | ZodError | Error, req, reply) => {
    if (reply.raw.headersSent) {
      // a stream failed after its headers went out: nothing more can be said on this response
      req.log.error({ err }, 'error after the response started');
      reply.raw.destroy();
      return;
    }
    // a route may have set headers for the body it meant to send (an artifact's type, length, range)
    for (const h of ['content-length', 'etag']) reply.removeHeader(h); // (content-range stays: a 416 carries it)
    reply.type('application/json; charset=utf-8');
    if (err instanceof ZodError) {
      return reply.status(400).send({ error: 'FLEET_ERR_VALIDATION', message: zodMessage(err) });
    }
    if (err instanceof AppError) {
      const retryAfterMs = (err as AppError & { retryAfterMs?: number }).retryAfterMs;
      if (retryAfterMs) reply.header('retry-after', Math.ceil(retryAfterMs / 1000));
      return reply.status(err.status).send({ error: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) });
    }
    const status = (err as FastifyError).statusCode;
    if (status && status >= 400 && status < 500) {
      // fastify's own 4xx (bad JSON, body too large, unsupported media type): safe to pass on
      return reply.status(status).send({ error: (err as FastifyError).code ?? 'FLEET_ERR_BAD_REQUEST', message: err.message });
    }
    req.log.error({ err }, 'unhandled error');
    return reply.status(500).send({ error: 'FLEET_ERR_INTERNAL', message: 'internal error' });
  });
  app.setNotFoundHandler((req, reply) => {
    reply.status(404).send({ error: 'FLEET_ERR_NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` });
  });
}
