// GET /v1/telemetry (viewer token): the rollups, queried (server/telemetry/query.ts). The query string
// is checked against the shared contract (shared/api/telemetry.ts); a bad field is a 400 naming it.
import type { FastifyInstance } from 'fastify';
import { telemetryContract as c } from '../../shared/api/telemetry.ts';
import { queryTelemetry } from '../telemetry/query.ts';
import { contractRoute } from './contract-route.ts';

export async function telemetryRoutes(app: FastifyInstance): Promise<void> {
  const { db } = app.fleet;
  contractRoute(app, c.query, async ({ query }) => queryTelemetry(db, query!, Date.now()));
}
