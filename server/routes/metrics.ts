// GET /metrics: Prometheus text format. A viewer token by default (Prometheus sends it with
// `authorization: { credentials: ... }` in its scrape config); metricsAccess: 'public' serves it without
// one, for a scraper on a private network. The figures are fleet-wide counts, never device secrets.
import type { FastifyInstance } from 'fastify';

export async function metricsRoutes(app: FastifyInstance): Promise<void> {
  const { metrics, config } = app.fleet;
  app.get('/metrics', { config: { access: config.metricsAccess } }, async (_req, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });
}
