// The audit log, read-only (admin): newest first, or oldest first after an id for paging forward.
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { readAudit } from '../audit/audit-log.ts';
import { AppError, zodMessage } from '../errors.ts';

const AuditQuery = z.object({
  after: z.coerce.number().int().min(0).optional(),
  action: z.string().regex(/^[a-z_.]{1,64}$/).optional(),
  actor: z.string().min(1).max(80).optional(),
  target: z.string().min(1).max(200).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
}).strict();

export async function auditRoutes(app: FastifyInstance): Promise<void> {
  const { db } = app.fleet;
  app.get('/v1/audit', { config: { access: 'admin' } }, async (req) => {
    const r = AuditQuery.safeParse(req.query ?? {});
    if (!r.success) throw new AppError('FLEET_ERR_VALIDATION', zodMessage(r.error, 'query'), 400);
    const q = r.data;
    return { entries: readAudit(db, { afterId: q.after, action: q.action, actor: q.actor, target: q.target, limit: q.limit }) };
  });
}
