import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { CampaignRequest } from '../rollouts/campaign-config.ts';
import type { CampaignRow } from '../rollouts/campaign-store.ts';
import { actorName, auditRequest } from '../audit/audit-log.ts';
import { parseBody, parseParams } from './params.ts';

const CampaignParams = z.object({ campaignId: z.string().uuid('campaign ids are UUIDs') }).strict();
const ActionParams = CampaignParams.extend({ action: z.enum(['pause', 'resume', 'abort', 'revert', 'promote']) }).strict();

/** Who did it: the authenticated principal (a caller cannot name someone else). */
export function actorOf(req: FastifyRequest): string {
  return actorName(req);
}

export async function campaignRoutes(app: FastifyInstance): Promise<void> {
  const { rollouts } = app.fleet;
  const view = (c: CampaignRow) => ({
    campaignId: c.campaign_id, name: c.name, manifestSha256: c.manifest_sha256, modelId: c.model_id, version: c.version,
    status: c.status, wave: c.current_wave + 1, waves: JSON.parse(c.config_json).waves.length,
    createdBy: c.created_by, createdAt: c.created_at, updatedAt: c.updated_at,
    devices: rollouts.store.counts(c.campaign_id), waiting: rollouts.holdReasons.get(c.campaign_id) ?? null,
  });

  app.post('/v1/campaigns', async (req, reply) => {
    const body = parseBody(CampaignRequest, req.body);
    const c = await rollouts.create(body, actorOf(req));
    auditRequest(req, 'campaigns.create', c.campaign_id, { name: c.name, manifestSha256: c.manifest_sha256, modelId: c.model_id, version: c.version });
    reply.status(201);
    return view(c);
  });

  app.get('/v1/campaigns', async () => ({ campaigns: rollouts.store.list().map(view) }));

  app.get('/v1/campaigns/:campaignId', async (req) => {
    const { campaignId } = parseParams(CampaignParams, req.params);
    const c = rollouts.store.get(campaignId);
    // statistics: the sequential test's last verdict (decision, statistic, evidence), null before it ran
    return { ...view(c), config: JSON.parse(c.config_json), statistics: rollouts.statistics.get(campaignId) ?? null, deviceList: rollouts.store.devices(campaignId) };
  });

  app.get('/v1/campaigns/:campaignId/events', async (req) => {
    const { campaignId } = parseParams(CampaignParams, req.params);
    rollouts.store.get(campaignId);
    return { events: rollouts.store.events(campaignId) };
  });

  app.post('/v1/campaigns/:campaignId/:action', async (req) => {
    const { campaignId, action } = parseParams(ActionParams, req.params);
    const c = await rollouts.act(campaignId, action, actorOf(req));
    auditRequest(req, `campaigns.${action}`, campaignId, { status: c.status });
    return view(c);
  });
}
