// Kill points inside the agent's durable writes, for agent-process.ts (test code only: the agent never
// knows). The agent's renameSync (device-agent/disk.ts, the seam every mutating fs call goes through) is
// wrapped, and each rename is named by what it does:
//   disk:<kind>:tmp      the temporary file is written and fsynced, the rename has not happened
//   disk:<kind>:renamed  the rename has happened; the folder fsync and everything after it (clearing a
//                        slot, swapping the model, sending the status queued in that write) have not
// kinds of state.json writes, told apart by comparing the record on disk with the one replacing it:
//   recovery       the first state write of start() (what crash recovery decided, with its reports)
//   accept         an accepted assignment: the update record appears
//   claim          the update claims the inactive slot
//   switch         the update record goes and another slot becomes active
//   probation-end  probation closes on the same slot (passed)
//   revert         probation closes on another slot (reverted)
// and one kind of slot write: slot-manifest (a slot's signed manifest, written before its artifact).
import fs from 'node:fs';
import { basename } from 'node:path';
import { realDisk, useDisk } from '../../device-agent/disk.ts';

export type DiskKind = 'recovery' | 'accept' | 'claim' | 'switch' | 'probation-end' | 'revert' | 'slot-manifest';

interface Rec { active: string | null; update: { slot: string | null } | null; probation: { slot: string } | null }

function kindOf(from: string, to: string, starting: boolean): DiskKind | null {
  if (/[/\\][ab]\.manifest\.json$/.test(to)) return 'slot-manifest';
  if (basename(to) !== 'state.json') return null;
  if (starting) return 'recovery';
  const next = JSON.parse(fs.readFileSync(from, 'utf8')) as Rec;
  const prev = (fs.existsSync(to) ? JSON.parse(fs.readFileSync(to, 'utf8')) : { active: null, update: null, probation: null }) as Rec;
  if (!prev.update && next.update) return 'accept';
  if (prev.update && prev.update.slot === null && next.update?.slot) return 'claim';
  if (prev.update && !next.update && next.active !== prev.active) return 'switch';
  if (prev.probation && !next.probation) return next.active === prev.active ? 'probation-end' : 'revert';
  return null;
}

/**
 * Wrap renameSync: `target()` says which point to kill at (or null), `isStarting()` whether start() is
 * still running; `kill(point)` must not return.
 */
export function installDiskCrashPoints(target: () => string | null, isStarting: () => boolean, kill: (point: string) => void): void {
  const rename = realDisk.renameSync;
  useDisk({ renameSync: ((from: fs.PathLike, to: fs.PathLike) => {
    const t = target();
    const kind = t?.startsWith('disk:') ? kindOf(String(from), String(to), isStarting()) : null;
    if (kind && t === `disk:${kind}:tmp`) kill(t);
    rename(from, to);
    if (kind && t === `disk:${kind}:renamed`) kill(t);
  }) as typeof fs.renameSync });
}
