// Campaigns of a release (issue 19): what the engine needs to roll a release out wave by wave and to take
// it back. The release's set goes to each device as one signed assignment (Director.setOf + assign, the
// same set a release assignment signs); a device counts as updated when it reports the whole set active;
// a revert puts back the set the device ran before, all models, through newly signed higher versions of
// the models the release replaced (a device's version floors refuse the old manifests themselves).
import type { Chain, Status } from '../../shared/messages.ts';
import type { Db } from '../db/database.ts';
import { AppError } from '../errors.ts';

export interface ReleaseModel { modelId: string; version: number; manifestSha256: string }
/** What a release campaign rolls out (campaigns.release_json) */
export interface CampaignRelease { name: string; version: number; models: ReleaseModel[] }
/** A device's set before the campaign, or the set a revert assigned (campaign_devices.previous_set_json, revert_set_json) */
export interface DeviceSet { models: string[]; release: { name: string; version: number } | null }

/** The release `name` (its latest version, or `version`); 404 when there is none. */
export function resolveRelease(db: Db, name: string, version?: number): CampaignRelease {
  const row = (version
    ? db.prepare('SELECT name, version, models_json FROM releases WHERE name = ? AND version = ?').get(name, version)
    : db.prepare('SELECT name, version, models_json FROM releases WHERE name = ? ORDER BY version DESC LIMIT 1').get(name)) as
    { name: string; version: number; models_json: string } | undefined;
  if (!row) throw new AppError('FLEET_ERR_RELEASE_NOT_FOUND', `no release ${name}${version ? ` v${version}` : ''}`, 404);
  return { name: row.name, version: row.version, models: JSON.parse(row.models_json) as ReleaseModel[] };
}

/** The chain a release version declares (with its golden vectors), if any. */
export function releaseChain(db: Db, release: { name: string; version: number } | null): Chain | undefined {
  if (!release) return undefined;
  const row = db.prepare('SELECT chain_json FROM releases WHERE name = ? AND version = ?').get(release.name, release.version) as { chain_json: string | null } | undefined;
  return row?.chain_json ? JSON.parse(row.chain_json) as Chain : undefined;
}

/**
 * What a device ran before a release campaign assigned it, from the server's own record of the device
 * (every model verified against its assignments). Null when there is nothing to go back to: no model, a
 * model the server never assigned to it, or already the release's set.
 */
export function previousSet(d: { active_manifest_sha256: string | null; active_set_json: string | null; active_release_json: string | null } | undefined, releaseShas: string[]): DeviceSet | null {
  if (!d?.active_manifest_sha256) return null;
  const set = d.active_set_json ? JSON.parse(d.active_set_json) as { manifestSha256: string; unverified?: boolean }[] : [{ manifestSha256: d.active_manifest_sha256 }];
  if (set.length === 0 || set.some((m) => m.unverified)) return null;
  const models = set.map((m) => m.manifestSha256);
  if (sameList(models, releaseShas)) return null;
  return { models, release: d.active_release_json ? JSON.parse(d.active_release_json) as DeviceSet['release'] : null };
}

/** Every model the status says the device runs (the primary first): its activeSet, or its one active model. */
export function reportedSet(s: Status): string[] {
  return s.activeSet?.map((m) => m.manifestSha256) ?? (s.active ? [s.active.manifestSha256] : []);
}

export function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * The set a revert assigns: the previous set, with each model the release replaced (and always the
 * primary, so the revert's primary manifest is new and its report unmistakable) signed again at a
 * higher version by `reissue`; models the release kept unchanged stay as they are (their sessions too).
 */
export function revertSet(previous: DeviceSet, releaseShas: string[], reissue: (manifestSha256: string) => string): DeviceSet {
  const keep = new Set(releaseShas);
  return { models: previous.models.map((sha, i) => (i > 0 && keep.has(sha) ? sha : reissue(sha))), release: previous.release };
}
