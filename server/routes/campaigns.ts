// Campaign routes; schemas in shared/api/campaigns.ts. Every view carries `actions`, what an operator
// may do now (server/rollouts/campaign-actions.ts, the rule the engine enforces).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { campaignsContract as c, type CampaignView } from '../../shared/api/campaigns.ts';
import { allowedActions } from '../rollouts/campaign-actions.ts';
import type { CampaignRow } from '../rollouts/campaign-store.ts';
import { actorName, auditRequest } from '../audit/audit-log.ts';
import { contractRoute } from './contract-route.ts';
import { campaignShadow } from '../rollouts/shadow-view.ts';

/** Who did it: the authenticated principal (a caller cannot name someone else). */
export function actorOf(req: FastifyRequest): string {
  return actorName(req);
}

export async function campaignRoutes(app: FastifyInstance): Promise<void> {
  const { rollouts } = app.fleet;
  const view = (r: CampaignRow): CampaignView => ({
    campaignId: r.campaign_id, name: r.name, manifestSha256: r.manifest_sha256, modelId: r.model_id, version: r.version,
    status: r.status, wave: r.current_wave + 1, waves: JSON.parse(r.config_json).waves.length,
    createdBy: r.created_by, createdAt: r.created_at, updatedAt: r.updated_at,
    devices: rollouts.store.counts(r.campaign_id), waiting: rollouts.holdReasons.get(r.campaign_id) ?? null,
    actions: allowedActions(r.status),
    deviceWaits: rollouts.store.waits(r.campaign_id),
    // [#19] a release campaign names its release and every model of it
    ...(r.release_json ? { release: JSON.parse(r.release_json) } : {}),
  });

  contractRoute(app, c.createCampaign, async ({ body }, req, reply) => {
    const row = await rollouts.create(body, actorOf(req));
    auditRequest(req, 'campaigns.create', row.campaign_id, { name: row.name, manifestSha256: row.manifest_sha256, modelId: row.model_id, version: row.version,
      ...(row.release_json ? { release: JSON.parse(row.release_json) } : {}) });
    reply.status(201);
    return view(row);
  });

  contractRoute(app, c.listCampaigns, async () => ({ campaigns: rollouts.store.list().map(view) }));

  contractRoute(app, c.getCampaign, async ({ params: { campaignId } }) => {
    const row = rollouts.store.get(campaignId);
    // statistics: the sequential test's last verdict (decision, statistic, evidence), null before it ran
    return {
      ...view(row), config: JSON.parse(row.config_json), statistics: rollouts.statistics.get(campaignId) ?? null, deviceList: rollouts.store.devices(campaignId),
      shadow: campaignShadow(app.fleet.db, campaignId, row.manifest_sha256), // shadow mode (issue 17): per wave and hardware group
    };
  });

  contractRoute(app, c.campaignEvents, async ({ params: { campaignId } }) => {
    rollouts.store.get(campaignId);
    return { events: rollouts.store.events(campaignId) };
  });

  contractRoute(app, c.actOnCampaign, async ({ params: { campaignId, action } }, req) => {
    const row = await rollouts.act(campaignId, action, actorOf(req));
    auditRequest(req, `campaigns.${action}`, campaignId, { status: row.status });
    return view(row);
  });
}
