// GET /v1/telemetry (viewer token): the rollups, queried (server/telemetry/query.ts). The query string
// is checked against the shared contract (shared/api/telemetry.ts); a bad field is a 400 naming it.
import type { FastifyInstance } from 'fastify';
import { TelemetryQuery } from '../../shared/api/telemetry.ts';
import { AppError, zodMessage } from '../errors.ts';
import { queryTelemetry } from '../telemetry/query.ts';

export async function telemetryRoutes(app: FastifyInstance): Promise<void> {
  const { db } = app.fleet;
  app.get('/v1/telemetry', async (req) => {
    const r = TelemetryQuery.safeParse(req.query ?? {});
    if (!r.success) throw new AppError('FLEET_ERR_VALIDATION', zodMessage(r.error, 'query'), 400);
    return queryTelemetry(db, r.data, Date.now());
  });
}
