// Maintenance windows and download conditions (docs/agent.md "Windows and conditions"): when and under
// which conditions a device may download an update and switch to it. The policy travels in the signed
// desired state (a campaign's `policy`); the agent checks it before each step (device-agent/
// conditions.ts) and reports `waiting` with a WAIT_* reason while a step may not run.
// Windows are in the device's own time zone (agent config `timeZone`).
import { z } from 'zod';

export const Weekday = z.enum(['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun']);
export type Weekday = z.infer<typeof Weekday>;
const HHMM = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$|^24:00$/, 'a local time as HH:MM (00:00 to 24:00)');

/** Days of the week and a local time range [start, end); an end before the start runs past midnight (into the next day). */
export const TimeWindow = z.object({
  days: z.array(Weekday).min(1).max(7),
  start: HHMM,
  end: HHMM,
}).strict().refine((w) => w.start !== w.end, { message: 'a window needs start and end to differ' });
export type TimeWindow = z.infer<typeof TimeWindow>;

export const UpdateConditions = z.object({
  /** on a charger, or the battery at least this many percent */
  minBatteryPercent: z.number().min(0).max(100).optional(),
  /** never on a metered network (download only: the switch moves no bytes) */
  unmeteredOnly: z.boolean().optional(),
  /** wait while the device's own code says it is busy (POST /v1/busy on the agent's local API); switch only */
  notBusy: z.boolean().optional(),
  /** free bytes on the agent's data disk, beyond the artifact itself (download only) */
  minFreeDiskBytes: z.number().int().nonnegative().optional(),
}).strict();
export type UpdateConditions = z.infer<typeof UpdateConditions>;

export const UpdatePolicy = z.object({
  /** when downloads may start; none = any time */
  downloadWindows: z.array(TimeWindow).min(1).max(16).optional(),
  /** when the switch to the new model may happen; none = any time */
  switchWindows: z.array(TimeWindow).min(1).max(16).optional(),
  conditions: UpdateConditions.optional(),
}).strict();
export type UpdatePolicy = z.infer<typeof UpdatePolicy>;

export type UpdateStep = 'download' | 'switch';
export const WAIT_REASONS = ['WAIT_WINDOW', 'WAIT_BATTERY', 'WAIT_METERED', 'WAIT_BUSY', 'WAIT_DISK'] as const;
export type WaitReason = (typeof WAIT_REASONS)[number];

/** What the device knows about itself now; null/undefined = unknown, which never blocks. */
export interface DeviceConditions {
  onCharger?: boolean | null;
  batteryPercent?: number | null;
  metered?: boolean | null;
  busy: boolean;
  freeDiskBytes?: number | null;
}

const DAYS: Weekday[] = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
const formatters = new Map<string, Intl.DateTimeFormat>();

/** The weekday and minute of the day at `now` in `timeZone` (IANA name). */
export function localTime(now: number, timeZone: string): { day: Weekday; minute: number } {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    formatters.set(timeZone, f);
  }
  const parts = Object.fromEntries(f.formatToParts(new Date(now)).map((p) => [p.type, p.value]));
  const day = DAYS[['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'].indexOf(parts.weekday)];
  return { day, minute: Number(parts.hour) * 60 + Number(parts.minute) };
}

const minutes = (hhmm: string) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3));

/** Is any of the windows open at `now` in `timeZone`? No windows = always open. */
export function windowOpen(windows: TimeWindow[] | undefined, now: number, timeZone: string): boolean {
  if (!windows?.length) return true;
  const { day, minute } = localTime(now, timeZone);
  const yesterday = DAYS[(DAYS.indexOf(day) + 6) % 7];
  return windows.some((w) => {
    const s = minutes(w.start), e = minutes(w.end);
    if (s < e) return w.days.includes(day) && minute >= s && minute < e;
    // past midnight: the evening part on a listed day, the morning part on the day after one
    return (w.days.includes(day) && minute >= s) || (w.days.includes(yesterday) && minute < e);
  });
}

/** Why `step` may not run now (empty: it may). Pure: the clock and the conditions are arguments. */
export function blockers(policy: UpdatePolicy | undefined, step: UpdateStep, now: number, timeZone: string, c: DeviceConditions, artifactBytes = 0): WaitReason[] {
  if (!policy) return [];
  const out: WaitReason[] = [];
  if (!windowOpen(step === 'download' ? policy.downloadWindows : policy.switchWindows, now, timeZone)) out.push('WAIT_WINDOW');
  const k = policy.conditions ?? {};
  if (k.minBatteryPercent !== undefined && c.onCharger !== true && c.batteryPercent != null && c.batteryPercent < k.minBatteryPercent) out.push('WAIT_BATTERY');
  if (step === 'download' && k.unmeteredOnly && c.metered === true) out.push('WAIT_METERED');
  if (step === 'switch' && k.notBusy && c.busy) out.push('WAIT_BUSY');
  if (step === 'download' && k.minFreeDiskBytes !== undefined && c.freeDiskBytes != null && c.freeDiskBytes < k.minFreeDiskBytes + artifactBytes) out.push('WAIT_DISK');
  return out;
}
