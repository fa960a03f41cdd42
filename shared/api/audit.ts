// The audit log, read-only.
import { z } from 'zod';
import { defineRoute, errors, type RouteContract } from './contract.ts';

export const AuditQuery = z.object({
  after: z.coerce.number().int().min(0).optional().meta({ description: 'entries after this id, oldest first (paging forward); without it newest first' }),
  action: z.string().regex(/^[a-z_.]{1,64}$/).optional().meta({ description: "an action, or a prefix ending in '.' (keys.)" }),
  actor: z.string().min(1).max(80).optional(),
  target: z.string().min(1).max(200).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
}).strict();

export const AuditEntry = z.object({
  id: z.number().int(), ts: z.string(), actor: z.string(), action: z.string(), target: z.string().nullable(), detail: z.unknown(), source: z.string().nullable(),
}).meta({ id: 'AuditEntry' });

export const auditContract = {
  readAudit: defineRoute({
    method: 'GET', path: '/v1/audit', summary: 'who did what, when', tags: ['audit'], access: 'admin',
    query: AuditQuery, responses: { 200: z.object({ entries: z.array(AuditEntry) }), ...errors(400, 401, 403) },
  }),
} satisfies Record<string, RouteContract>;

export const auditRoutes: RouteContract[] = Object.values(auditContract);
