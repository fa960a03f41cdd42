// Staged rollout campaigns. The request schema is the rollout engine's own
// (server/rollouts/campaign-config.ts, a zod-only module: see test/unit/import-rules.test.ts), so a new
// campaign option shows up here, in the OpenAPI document and in the CLI without being copied.
import { z } from 'zod';
import { CampaignRequest, CampaignTarget } from '../../server/rollouts/campaign-config.ts';
import { defineRoute, errors, type RouteContract } from './contract.ts';

export { CampaignRequest, CampaignTarget };
export const CampaignStatus = z.enum(['running', 'paused', 'halted', 'reverting', 'reverted', 'completed', 'aborted']);
export type CampaignStatus = z.infer<typeof CampaignStatus>;
/** running and reverting move on their own; the rest wait for an operator or are final */
export const FINAL_STATUSES: readonly CampaignStatus[] = ['completed', 'reverted', 'aborted'];
export const CampaignAction = z.enum(['pause', 'resume', 'abort', 'revert', 'promote']);
export type CampaignAction = z.infer<typeof CampaignAction>;

export const CampaignParams = z.object({ campaignId: z.string().uuid('campaign ids are UUIDs') }).strict();
export const CampaignActionParams = CampaignParams.extend({ action: CampaignAction }).strict();
const Time = z.string().meta({ description: 'ISO 8601 time' });

export const CampaignView = z.object({
  campaignId: z.string(), name: z.string().nullable(), manifestSha256: z.string(), modelId: z.string(), version: z.number().int(),
  status: CampaignStatus,
  wave: z.number().int().meta({ description: 'the current wave, from 1' }), waves: z.number().int(),
  createdBy: z.string(), createdAt: Time, updatedAt: Time,
  devices: z.record(z.string(), z.number().int()).meta({ description: 'devices per state: pending, assigned, retry, updated, failed, reverted' }),
  waiting: z.string().nullable().meta({ description: 'what the current wave waits for before its gate is judged' }),
  actions: z.array(CampaignAction).meta({ description: 'the manual actions the engine allows now (POST /v1/campaigns/{campaignId}/{action})' }),
  release: z.object({
    name: z.string(), version: z.number().int(),
    models: z.array(z.object({ modelId: z.string(), version: z.number().int(), manifestSha256: z.string() })),
  }).optional().meta({ description: 'a release campaign: the release and every model of it, the primary first (modelId, version and manifestSha256 above are the primary\'s); absent for a campaign of one bundle' }),
  deviceWaits: z.record(z.string(), z.number().int()).optional().meta({ description: 'assigned devices that hold the update back for their maintenance window or conditions, per reason (WAIT_WINDOW, WAIT_BATTERY, WAIT_METERED, WAIT_BUSY, WAIT_DISK); they are neither failed nor late' }),
}).meta({ id: 'Campaign' });
export type CampaignView = z.infer<typeof CampaignView>;

export const CampaignDevice = z.object({
  deviceId: z.string(), wave: z.number().int(), state: z.string(), attempts: z.number().int(), reason: z.string().nullable(), revertState: z.string().nullable(),
  waitReason: z.string().nullable().optional().meta({ description: 'WAIT_* while the device holds the update back for its window or conditions' }),
});
export const CampaignDetail = CampaignView.extend({
  config: z.looseObject({ waves: z.array(z.looseObject({ percent: z.number() })) }).meta({ description: 'the campaign request with its defaults filled in' }),
  statistics: z.looseObject({
    decision: z.enum(['halt', 'advance', 'wait', 'unavailable']),
    reason: z.string(),
  }).nullable().meta({ description: "the sequential test's last verdict: decision, reason, devices paired and observed, per metric (latency, errors) the estimate, confidence bounds, halt threshold and margin (docs/canary-statistics.md); null before it ran" }),
  deviceList: z.array(CampaignDevice),
  // shadow mode (issue 17)
  shadow: z.array(z.object({
    wave: z.number().int(), state: z.enum(['running', 'passed', 'failed']), startedAt: Time, finishedAt: Time.nullable(),
    devices: z.number().int(), samples: z.number().int(),
    figures: z.looseObject({ samples: z.number().int(), errorRate: z.number(), latencyRatio: z.number().nullable(), agreement: z.number().nullable() }),
    groups: z.array(z.looseObject({ hardware: z.string(), devices: z.number().int(), samples: z.number().int(), errorRate: z.number(), latencyRatio: z.number().nullable(), agreement: z.number().nullable() })),
  })).optional().meta({ description: 'the waves run in shadow first: state (running, passed, failed: gate failed or SHADOW_TIMEOUT, see the events), devices reporting, inputs compared, and the figures per hardware group ("" = unknown hardware)' }),
});
export type CampaignDetail = z.infer<typeof CampaignDetail>;
export const CampaignEvent = z.object({ id: z.number().int(), ts: Time, type: z.string(), actor: z.string(), detail: z.unknown() });
export type CampaignEvent = z.infer<typeof CampaignEvent>;

const tags = ['campaigns'];
export const campaignsContract = {
  createCampaign: defineRoute({
    method: 'POST', path: '/v1/campaigns', summary: 'start a staged rollout of a bundle (waves, gates, target)', tags,
    body: CampaignRequest, responses: { 201: CampaignView, ...errors(400, 401, 403, 404, 409) },
  }),
  listCampaigns: defineRoute({ method: 'GET', path: '/v1/campaigns', summary: 'campaigns, newest first', tags, responses: { 200: z.object({ campaigns: z.array(CampaignView) }), ...errors(401, 403) } }),
  getCampaign: defineRoute({
    method: 'GET', path: '/v1/campaigns/:campaignId', summary: 'one campaign with its config and every device', tags,
    params: CampaignParams, responses: { 200: CampaignDetail, ...errors(400, 401, 403, 404) },
  }),
  campaignEvents: defineRoute({
    method: 'GET', path: '/v1/campaigns/:campaignId/events', summary: 'waves, gate results with their figures, halts, reverts, manual actions', tags,
    params: CampaignParams, responses: { 200: z.object({ events: z.array(CampaignEvent) }), ...errors(400, 401, 403, 404) },
  }),
  actOnCampaign: defineRoute({
    method: 'POST', path: '/v1/campaigns/:campaignId/:action', summary: 'pause, resume, abort, revert or promote a campaign by hand (409 when its status does not allow it: see `actions`)', tags,
    params: CampaignActionParams, responses: { 200: CampaignView, ...errors(400, 401, 403, 404, 409) },
  }),
} satisfies Record<string, RouteContract>;

export const campaignsRoutes: RouteContract[] = Object.values(campaignsContract);
