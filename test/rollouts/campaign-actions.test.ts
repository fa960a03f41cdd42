// The actions a campaign view offers, per status: the same table the engine's act() enforces
// (engine.ts: pause from running; resume from paused/halted; promote from running/paused/halted;
// revert from running/paused/halted/completed; abort while unfinished).
import { describe, expect, it } from 'vitest';
import { campaignActions } from '../../server/rollouts/campaign-actions.ts';

describe('campaignActions', () => {
  it.each([
    ['running', ['pause', 'promote', 'revert', 'abort']],
    ['paused', ['resume', 'promote', 'revert', 'abort']],
    ['halted', ['resume', 'promote', 'revert', 'abort']],
    ['reverting', ['abort']],
    ['completed', ['revert']],
    ['reverted', []],
    ['aborted', []],
  ] as const)('%s: %j', (status, actions) => {
    expect(campaignActions(status)).toEqual(actions);
  });
});
