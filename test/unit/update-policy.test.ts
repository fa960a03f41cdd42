// Maintenance windows and conditions, decided purely: local time in the device's zone, windows past
// midnight, and which condition holds back which step.
import { describe, expect, it } from 'vitest';
import { blockers, localTime, UpdatePolicy, windowOpen, type DeviceConditions } from '../../shared/update-policy.ts';

const at = (iso: string) => Date.parse(iso);
const night = [{ days: ['mon', 'tue', 'wed', 'thu', 'fri'] as const, start: '22:00', end: '05:00' }].map((w) => ({ ...w, days: [...w.days] }));

describe('windows', () => {
  it.each([
    // [utc instant, zone, weekday, minute]
    ['2026-11-30T17:30:00Z', 'Asia/Tokyo', 'tue', 2 * 60 + 30],
    ['2026-11-30T17:30:00Z', 'Europe/Berlin', 'mon', 18 * 60 + 30],
    ['2026-06-01T00:15:00Z', 'America/New_York', 'sun', 20 * 60 + 15],
    ['2026-11-30T23:59:00Z', 'UTC', 'mon', 23 * 60 + 59],
  ])('%s in %s is %s, minute %i', (iso, tz, day, minute) => {
    expect(localTime(at(iso), tz)).toEqual({ day, minute });
  });

  it.each([
    // a night window Mon-Fri 22:00-05:00 in Berlin (CET, UTC+1 in winter)
    ['Monday 21:59', '2026-11-30T20:59:00Z', false],
    ['Monday 22:00', '2026-11-30T21:00:00Z', true],
    ['Tuesday 04:59 (the morning after a listed day)', '2026-12-01T03:59:00Z', true],
    ['Tuesday 05:00', '2026-12-01T04:00:00Z', false],
    ['Saturday 03:00 (after Friday night)', '2026-12-05T02:00:00Z', true],
    ['Saturday 23:00 (not listed)', '2026-12-05T22:00:00Z', false],
    ['Monday 01:00 (after Sunday, not listed)', '2026-11-30T00:00:00Z', false],
  ])('%s: open %s', (_what, iso, open) => {
    expect(windowOpen(night, at(iso as string), 'Europe/Berlin')).toBe(open);
  });

  it('no windows: always open; the schema refuses bad times and empty windows', () => {
    expect(windowOpen(undefined, 0, 'UTC')).toBe(true);
    expect(UpdatePolicy.safeParse({ downloadWindows: [{ days: ['mon'], start: '25:00', end: '02:00' }] }).success).toBe(false);
    expect(UpdatePolicy.safeParse({ downloadWindows: [{ days: [], start: '01:00', end: '02:00' }] }).success).toBe(false);
    expect(UpdatePolicy.safeParse({ downloadWindows: [{ days: ['mon'], start: '01:00', end: '01:00' }] }).success).toBe(false);
    expect(UpdatePolicy.safeParse({ switchWindows: [{ days: ['sun'], start: '00:00', end: '24:00' }] }).success).toBe(true);
  });
});

describe('blockers', () => {
  const policy: UpdatePolicy = {
    downloadWindows: [{ days: ['mon'], start: '02:00', end: '04:00' }],
    switchWindows: [{ days: ['mon'], start: '03:00', end: '04:00' }],
    conditions: { minBatteryPercent: 50, unmeteredOnly: true, notBusy: true, minFreeDiskBytes: 1000 },
  };
  const ok: DeviceConditions = { onCharger: false, batteryPercent: 80, metered: false, busy: false, freeDiskBytes: 10_000 };
  const mon0230 = at('2026-11-30T02:30:00Z'), mon0330 = at('2026-11-30T03:30:00Z');
  it.each([
    ['all met, download', 'download', mon0230, ok, []],
    ['switch window not open yet', 'switch', mon0230, ok, ['WAIT_WINDOW']],
    ['all met, switch', 'switch', mon0330, ok, []],
    ['battery low, on battery', 'download', mon0230, { ...ok, batteryPercent: 20 }, ['WAIT_BATTERY']],
    ['battery low, on the charger', 'download', mon0230, { ...ok, batteryPercent: 20, onCharger: true }, []],
    ['battery unknown', 'download', mon0230, { ...ok, batteryPercent: null }, []],
    ['metered: holds the download', 'download', mon0230, { ...ok, metered: true }, ['WAIT_METERED']],
    ['metered: not the switch', 'switch', mon0330, { ...ok, metered: true }, []],
    ['busy: holds the switch', 'switch', mon0330, { ...ok, busy: true }, ['WAIT_BUSY']],
    ['busy: not the download', 'download', mon0230, { ...ok, busy: true }, []],
    ['disk: artifact plus the minimum must fit', 'download', mon0230, { ...ok, freeDiskBytes: 5000 }, ['WAIT_DISK']],
    ['everything at once, outside the window', 'download', at('2026-11-30T12:00:00Z'), { onCharger: false, batteryPercent: 5, metered: true, busy: true, freeDiskBytes: 10 }, ['WAIT_WINDOW', 'WAIT_BATTERY', 'WAIT_METERED', 'WAIT_DISK']],
  ] as const)('%s', (_what, step, now, c, expected) => {
    expect(blockers(policy, step, now, 'UTC', c, 4500)).toEqual(expected);
  });

  it('no policy: nothing holds an update back', () => {
    expect(blockers(undefined, 'download', 0, 'UTC', { busy: true, batteryPercent: 1, onCharger: false, metered: true, freeDiskBytes: 0 })).toEqual([]);
  });
});
