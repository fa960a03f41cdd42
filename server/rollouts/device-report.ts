// What a device's status report means for its row in a campaign, decided purely (the engine applies the
// answer to SQLite). A report is about the campaign when it names the campaign's manifest with the
// director sequence number of the device's latest campaign assignment or a later one; a report of the
// device running the campaign's manifest also counts as updated (it may have settled before a restart).
import type { Status } from '../../shared/messages.ts';
import type { DeviceState } from './campaign-store.ts';
import { reportedSet, sameList } from './release-campaign.ts';

export interface CampaignDeviceRow {
  state: DeviceState;
  /** assignments made so far (the first one included) */
  attempts: number;
  assignedSeq: number | null;
  campaignManifest: string;
  /** retries allowed after the first assignment (campaign config maxRetries) */
  maxRetries: number;
  revertState: string | null;
  revertManifest: string | null;
  /** [#18] WAIT_* while the device said it waits for its window or conditions */
  waitReason?: string | null;
  /** [#19] a release campaign: every model of the release, the primary first (the device is updated when it runs all of them) */
  campaignSet?: string[];
}

export type CampaignDeviceStep =
  | { kind: 'ignore' }
  | { kind: 'updated' }
  | { kind: 'reverted'; reason: string }
  /** failed or refused: assigned again (new sequence number) while attempts last, else failed for good */
  | { kind: 'retry'; reason: string | null }
  /** [#18] restarted while it waited for its window or conditions: assigned again without using up an attempt */
  | { kind: 'resume'; reason: string }
  | { kind: 'failed'; reason: string | null }
  | { kind: 'revert_done' }
  | { kind: 'revert_failed'; reason: string | null }
  /** [#18] the device holds the update back for its window or conditions: neither failed nor late */
  | { kind: 'waiting'; reason: string }
  /** [#18] the device works on the update (downloading, verifying, checking): a wait, if any, is over */
  | { kind: 'working' };

export function campaignDeviceStep(r: CampaignDeviceRow, s: Status): CampaignDeviceStep {
  // a campaign being reverted follows only the revert's own manifest
  if (r.revertState === 'assigned' && r.revertManifest) {
    if (s.active?.manifestSha256 === r.revertManifest) return { kind: 'revert_done' };
    if (s.manifestSha256 === r.revertManifest && (s.state === 'failed' || s.state === 'rejected')) return { kind: 'revert_failed', reason: s.reason ?? null };
    return { kind: 'ignore' };
  }
  const aboutCampaign = s.manifestSha256 === r.campaignManifest && (s.directorSeq ?? 0) >= (r.assignedSeq ?? Infinity);
  const runsCampaign = r.campaignSet ? sameList(reportedSet(s), r.campaignSet) : s.active?.manifestSha256 === r.campaignManifest;
  if (s.state === 'reverted' && s.manifestSha256 === r.campaignManifest && (r.state === 'updated' || r.state === 'assigned')) {
    return { kind: 'reverted', reason: s.reason ?? 'PROBATION_FAILED' };
  }
  if (r.state !== 'assigned') return { kind: 'ignore' };
  // (a release: only the whole set active counts; a report about its assignment with another set does not)
  if (s.state === 'active' && (r.campaignSet ? runsCampaign : aboutCampaign || runsCampaign)) return { kind: 'updated' };
  if (aboutCampaign && (s.state === 'failed' || s.state === 'rejected')) {
    // [#18] a device that restarted while it waited (it said so, and the new model never ran): a reboot during
    // a wait of hours or days is no failure of the update. It must reach its wait again before the next one is free.
    if (s.state === 'failed' && s.reason === 'CRASH_RECOVERY' && r.waitReason) return { kind: 'resume', reason: s.reason };
    return r.attempts <= r.maxRetries ? { kind: 'retry', reason: s.reason ?? null } : { kind: 'failed', reason: s.reason ?? null };
  }
  if (aboutCampaign && s.state === 'waiting') return { kind: 'waiting', reason: s.reason ?? 'WAIT_WINDOW' };
  if (aboutCampaign && r.waitReason && (s.state === 'downloading' || s.state === 'verifying' || s.state === 'health_check')) return { kind: 'working' };
  return { kind: 'ignore' };
}
