// Maintenance windows and conditions per device tag; schemas in shared/api/tag-policies.ts. The director
// reads them when it signs an assignment (server/devices/director.ts policyFor).
import type { FastifyInstance } from 'fastify';
import { tagPoliciesContract as c, type TagPolicyView } from '../../shared/api/tag-policies.ts';
import { actorName, auditRequest } from '../audit/audit-log.ts';
import { contractRoute } from './contract-route.ts';

interface Row { tag: string; policy_json: string; updated_at: string; updated_by: string }
const view = (r: Row): TagPolicyView => ({ tag: r.tag, policy: JSON.parse(r.policy_json), updatedAt: r.updated_at, updatedBy: r.updated_by });

export async function tagPolicyRoutes(app: FastifyInstance): Promise<void> {
  const { db } = app.fleet;
  contractRoute(app, c.listTagPolicies, async () =>
    ({ policies: (db.prepare('SELECT * FROM tag_policies ORDER BY tag').all() as Row[]).map(view) }));

  contractRoute(app, c.putTagPolicy, async ({ params: { tag }, body }, req) => {
    const row: Row = { tag, policy_json: JSON.stringify(body), updated_at: new Date().toISOString(), updated_by: actorName(req) };
    db.prepare(`INSERT INTO tag_policies (tag, policy_json, updated_at, updated_by) VALUES (@tag, @policy_json, @updated_at, @updated_by)
      ON CONFLICT(tag) DO UPDATE SET policy_json = excluded.policy_json, updated_at = excluded.updated_at, updated_by = excluded.updated_by`).run(row);
    auditRequest(req, 'tag_policies.put', tag, { policy: body });
    return view(row);
  });

  contractRoute(app, c.deleteTagPolicy, async ({ params: { tag } }, req) => {
    const deleted = db.prepare('DELETE FROM tag_policies WHERE tag = ?').run(tag).changes > 0;
    if (deleted) auditRequest(req, 'tag_policies.delete', tag, {});
    return { deleted };
  });
}
