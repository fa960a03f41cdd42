// The manual actions each campaign status allows: one table, the rule the engine enforces and every
// campaign view reports as `actions`.
import { describe, expect, it } from 'vitest';
import { CampaignStatus } from '../../shared/api/campaigns.ts';
import { allowedActions } from '../../server/rollouts/campaign-actions.ts';

const TABLE: [CampaignStatus, string[]][] = [
  ['running', ['pause', 'promote', 'abort', 'revert']],
  ['paused', ['resume', 'promote', 'abort', 'revert']],
  ['halted', ['resume', 'promote', 'abort', 'revert']],
  ['reverting', ['abort']],
  ['completed', ['revert']],
  ['reverted', []],
  ['aborted', []],
];

describe('allowedActions(status)', () => {
  it.each(TABLE)('%s -> %j', (status, actions) => {
    expect(allowedActions(status)).toEqual(actions);
  });

  it('the table covers every status the contract knows', () => {
    expect(TABLE.map(([s]) => s).sort()).toEqual([...CampaignStatus.options].sort());
  });

  it('hands out a copy: a caller cannot change the rule', () => {
    allowedActions('running').pop();
    expect(allowedActions('running')).toHaveLength(4);
  });
});
