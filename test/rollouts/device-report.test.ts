// The engine's mapping from one device report to the device's campaign state, table-tested without a
// server (server/rollouts/device-report.ts; engine.ts applies the answer to SQLite).
import { describe, expect, it } from 'vitest';
import { campaignDeviceStep, type CampaignDeviceRow, type CampaignDeviceStep } from '../../server/rollouts/device-report.ts';
import type { Status } from '../../shared/messages.ts';

const CAMPAIGN = 'c'.repeat(64);
const OLD = 'a'.repeat(64);
const REVERT = 'e'.repeat(64);
const EMB = '1'.repeat(64), KWS = '2'.repeat(64);
const m = (modelId: string, manifestSha256: string) => ({ modelId, version: 1, manifestSha256 });
const active = (manifestSha256: string) => ({ modelId: 'm', version: manifestSha256 === CAMPAIGN ? 2 : 1, manifestSha256 });

const row = (r: Partial<CampaignDeviceRow> = {}): CampaignDeviceRow =>
  ({ state: 'assigned', attempts: 1, assignedSeq: 10, campaignManifest: CAMPAIGN, maxRetries: 0, revertState: null, revertManifest: null, ...r });
const st = (state: Status['state'], s: Partial<Status> = {}): Status =>
  ({ deviceId: 'd-1', ts: '2026-01-01T00:00:00.000Z', state, manifestSha256: CAMPAIGN, directorSeq: 10, active: active(OLD), agentVersion: '1', ...s });

describe('campaignDeviceStep', () => {
  const table: [string, CampaignDeviceRow, Status, CampaignDeviceStep][] = [
    // progress reports change nothing
    ['downloading: nothing yet', row(), st('downloading'), { kind: 'ignore' }],
    // maintenance windows and conditions (#18): a wait is recorded, and work after a wait restarts the deadline
    ['waiting for its window: waiting, with the reason', row(), st('waiting', { reason: 'WAIT_WINDOW' }), { kind: 'waiting', reason: 'WAIT_WINDOW' }],
    ['waiting about an older assignment: nothing', row(), st('waiting', { reason: 'WAIT_BUSY', directorSeq: 9 }), { kind: 'ignore' }],
    ['downloading after a wait: working', row({ waitReason: 'WAIT_BATTERY' }), st('downloading'), { kind: 'working' }],
    ['health check after a wait: working', row({ waitReason: 'WAIT_BUSY' }), st('health_check'), { kind: 'working' }],
    ['restarted while it waited, no retries configured: resumed (assigned again, no attempt used)', row({ waitReason: 'WAIT_WINDOW' }), st('failed', { reason: 'CRASH_RECOVERY' }), { kind: 'resume', reason: 'CRASH_RECOVERY' }],
    ['restarted while it waited, on its last attempt: resumed', row({ waitReason: 'WAIT_BATTERY', maxRetries: 1, attempts: 2 }), st('failed', { reason: 'CRASH_RECOVERY' }), { kind: 'resume', reason: 'CRASH_RECOVERY' }],
    ['another failure after a wait: an ordinary failure', row({ waitReason: 'WAIT_WINDOW' }), st('failed', { reason: 'DOWNLOAD_FAILED' }), { kind: 'failed', reason: 'DOWNLOAD_FAILED' }],
    ['a refusal after a wait: an ordinary failure', row({ waitReason: 'WAIT_WINDOW' }), st('rejected', { reason: 'CRASH_RECOVERY' }), { kind: 'failed', reason: 'CRASH_RECOVERY' }],
    ['probation passed (the switch was reported as active): nothing more', row(), st('probation_passed', { active: active(CAMPAIGN) }), { kind: 'ignore' }],
    // success
    ['active on the campaign assignment: updated', row(), st('active', { active: active(CAMPAIGN) }), { kind: 'updated' }],
    ['active with a later sequence number: updated', row(), st('active', { directorSeq: 12, active: active(CAMPAIGN) }), { kind: 'updated' }],
    ['a hello that says it runs the campaign model (settled before a restart): updated', row(), st('active', { manifestSha256: undefined, directorSeq: undefined, active: active(CAMPAIGN) }), { kind: 'updated' }],
    ['a hello on the old model: nothing', row(), st('active', { manifestSha256: undefined, directorSeq: undefined }), { kind: 'ignore' }],
    ['already updated: a repeat changes nothing', row({ state: 'updated' }), st('active', { active: active(CAMPAIGN) }), { kind: 'ignore' }],
    ['still pending (not assigned yet): nothing', row({ state: 'pending', assignedSeq: null, attempts: 0 }), st('active', { active: active(CAMPAIGN) }), { kind: 'ignore' }],
    // failures and refusals, with and without retries left
    ['failed, no retries configured: failed with its reason', row(), st('failed', { reason: 'CRASH_RECOVERY' }), { kind: 'failed', reason: 'CRASH_RECOVERY' }],
    ['failed, a retry left: retry', row({ maxRetries: 2 }), st('failed', { reason: 'CRASH_RECOVERY' }), { kind: 'retry', reason: 'CRASH_RECOVERY' }],
    ['failed on the last allowed attempt: failed', row({ maxRetries: 2, attempts: 3 }), st('failed', { reason: 'DOWNLOAD_FAILED' }), { kind: 'failed', reason: 'DOWNLOAD_FAILED' }],
    ['refused, a retry left: retry', row({ maxRetries: 1 }), st('rejected', { reason: 'EXPIRED' }), { kind: 'retry', reason: 'EXPIRED' }],
    ['refused, no retries: failed', row(), st('rejected', { reason: 'HASH_MISMATCH' }), { kind: 'failed', reason: 'HASH_MISMATCH' }],
    ['a failure about an older assignment (lower seq): nothing', row({ maxRetries: 1 }), st('failed', { reason: 'CRASH_RECOVERY', directorSeq: 9 }), { kind: 'ignore' }],
    ['a failure without a seq (refused before the signature): nothing', row(), st('rejected', { reason: 'MALFORMED', directorSeq: undefined }), { kind: 'ignore' }],
    ['a failure about another manifest: nothing', row(), st('failed', { reason: 'CRASH_RECOVERY', manifestSha256: OLD }), { kind: 'ignore' }],
    ['a failure while in retry (assignment not yet resent): nothing', row({ state: 'retry', maxRetries: 1 }), st('failed', { reason: 'CRASH_RECOVERY' }), { kind: 'ignore' }],
    // reverts of the campaign's model
    ['probation failed: reverted, with its reason', row(), st('reverted', { reason: 'PROBATION_FAILED' }), { kind: 'reverted', reason: 'PROBATION_FAILED' }],
    ['reverted after being counted updated: reverted', row({ state: 'updated' }), st('reverted', { reason: 'CRASH_RECOVERY' }), { kind: 'reverted', reason: 'CRASH_RECOVERY' }],
    ['reverted without a reason: PROBATION_FAILED', row(), st('reverted'), { kind: 'reverted', reason: 'PROBATION_FAILED' }],
    ['reverted from another model: nothing', row(), st('reverted', { manifestSha256: OLD, reason: 'PROBATION_FAILED' }), { kind: 'ignore' }],
    ['reverted when already failed: nothing', row({ state: 'failed' }), st('reverted', { reason: 'PROBATION_FAILED' }), { kind: 'ignore' }],
    // while the campaign is reverted, only the revert's manifest counts
    ['revert assigned, device runs the revert manifest: revert done', row({ state: 'updated', revertState: 'assigned', revertManifest: REVERT }), st('active', { manifestSha256: REVERT, directorSeq: 20, active: active(REVERT) }), { kind: 'revert_done' }],
    ['revert assigned, the revert refused: revert failed', row({ state: 'updated', revertState: 'assigned', revertManifest: REVERT }), st('rejected', { manifestSha256: REVERT, directorSeq: 20, reason: 'ROLLBACK' }), { kind: 'revert_failed', reason: 'ROLLBACK' }],
    ['revert assigned, a late report about the campaign model: nothing', row({ state: 'assigned', revertState: 'assigned', revertManifest: REVERT }), st('active', { active: active(CAMPAIGN) }), { kind: 'ignore' }],
    // [#19] a release campaign: updated only when the whole set runs (the primary alone is not enough)
    ['release: active with the whole set: updated', row({ campaignSet: [CAMPAIGN, EMB, KWS] }), st('active', { active: active(CAMPAIGN), activeSet: [active(CAMPAIGN), m('emb', EMB), m('kws', KWS)] }), { kind: 'updated' }],
    ['release: the primary active with an old emb (a hello before the switch): nothing', row({ campaignSet: [CAMPAIGN, EMB, KWS] }), st('active', { active: active(CAMPAIGN), activeSet: [active(CAMPAIGN), m('emb', OLD), m('kws', KWS)] }), { kind: 'ignore' }],
    ['release: active on its assignment with another set: nothing', row({ campaignSet: [CAMPAIGN, EMB, KWS] }), st('active', { active: active(OLD), activeSet: [active(OLD), m('emb', EMB), m('kws', KWS)] }), { kind: 'ignore' }],
    ['release: its set failed its health check: failed with its reason', row({ campaignSet: [CAMPAIGN, EMB, KWS] }), st('failed', { reason: 'LATENCY_BUDGET' }), { kind: 'failed', reason: 'LATENCY_BUDGET' }],
    ['release of one model: active on it: updated', row({ campaignSet: [CAMPAIGN] }), st('active', { active: active(CAMPAIGN) }), { kind: 'updated' }],
  ];
  it.each(table)('%s', (_name, r, s, expected) => {
    expect(campaignDeviceStep(r, s)).toEqual(expected);
  });

  it('does not change its inputs', () => {
    const r = row({ maxRetries: 1 });
    const s = st('failed', { reason: 'CRASH_RECOVERY' });
    const before = JSON.stringify([r, s]);
    campaignDeviceStep(r, s);
    expect(JSON.stringify([r, s])).toBe(before);
  });
});
