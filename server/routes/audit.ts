// The audit log, read-only (admin): newest first, or oldest first after an id for paging forward.
import type { FastifyInstance } from 'fastify';
import { auditContract } from '../../shared/api/audit.ts';
import { readAudit } from '../audit/audit-log.ts';
import { contractRoute } from './contract-route.ts';

export async function auditRoutes(app: FastifyInstance): Promise<void> {
  const { db } = app.fleet;
  contractRoute(app, auditContract.readAudit, async ({ query: q }) =>
    ({ entries: readAudit(db, { afterId: q.after, action: q.action, actor: q.actor, target: q.target, limit: q.limit }) }));
}
