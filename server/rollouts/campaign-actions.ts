// What an operator may do to a campaign now, as the engine's act() allows it (engine.ts): clients show
// these and never guess from the status themselves.
import { ACTIVE_STATUSES } from './campaign-store.ts';
import type { CampaignStatus } from './decide.ts';
import type { CampaignAction } from './engine.ts';

export function campaignActions(status: CampaignStatus): CampaignAction[] {
  const out: CampaignAction[] = [];
  if (status === 'running') out.push('pause');
  if (status === 'paused' || status === 'halted') out.push('resume');
  if (status === 'running' || status === 'paused' || status === 'halted') out.push('promote');
  if (['running', 'paused', 'halted', 'completed'].includes(status)) out.push('revert');
  if (ACTIVE_STATUSES.includes(status)) out.push('abort');
  return out;
}
