// The manual actions a campaign allows in each status: the one rule the engine enforces (act() refuses
// anything else with FLEET_ERR_CAMPAIGN_STATE) and every campaign view reports as `actions`, so a client
// offers exactly what the server will do.
import type { CampaignAction, CampaignStatus } from '../../shared/api/campaigns.ts';

const ALLOWED: Record<CampaignStatus, readonly CampaignAction[]> = {
  running: ['pause', 'promote', 'abort', 'revert'],
  paused: ['resume', 'promote', 'abort', 'revert'],
  halted: ['resume', 'promote', 'abort', 'revert'],
  // a revert in progress can only be stopped where it stands
  reverting: ['abort'],
  // a finished rollout can still be taken back
  completed: ['revert'],
  reverted: [],
  aborted: [],
};

export function allowedActions(status: CampaignStatus): CampaignAction[] {
  return [...(ALLOWED[status] ?? [])];
}
