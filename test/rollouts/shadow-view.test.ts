// The device view's shadow figures (server/rollouts/shadow-view.ts) count the windows of the device's
// current hold of a candidate: statuses and telemetry windows are stored by separate paths, so a window
// with samples can be stored before the shadow_loaded that preceded it on the device; it still counts,
// while the windows of an earlier hold of the same candidate (before its unload) do not.
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { openDatabase } from '../../server/db/database.ts';
import { deviceShadow } from '../../server/rollouts/shadow-view.ts';
import { tempDir } from '../helpers/harness.ts';

describe('device view of a shadow', () => {
  const db = openDatabase(join(tempDir('fleet-shadow-view-'), 'fleet.db'));
  afterAll(() => db.close());
  const A = 'a'.repeat(64);
  const t = (s: number) => Date.parse('2026-11-30T12:00:00.000Z') + s * 1000;
  const status = (state: string, at: number) => db.prepare(`INSERT INTO status_events (device_id, ts, state, reason, detail, director_seq, manifest_sha256, received_at)
    VALUES ('d1', ?, ?, NULL, NULL, 1, ?, ?)`).run(new Date(at).toISOString(), state, A, new Date(at).toISOString());
  const window = (seq: number, samples: number, at: number) => db.prepare(`INSERT INTO shadow_windows (device_id, seq, manifest_sha256, active_manifest_sha256, samples, errors, dropped, active_ms, candidate_ms, outputs_json, histograms_json, received_at)
    VALUES ('d1', ?, ?, NULL, ?, 0, 0, ?, ?, '{}', NULL, ?)`).run(seq, A, samples, samples, samples, at);

  it('counts the windows of the current hold, including one stored before its shadow_loaded; not those of an earlier hold', () => {
    status('shadow_loaded', t(0)); // an earlier hold of the same candidate
    window(1, 5, t(1));
    status('shadow_unloaded', t(2));
    window(2, 7, t(3)); // the current hold's first window, stored before its shadow_loaded
    status('shadow_loaded', t(4));
    window(3, 11, t(5));
    const v = deviceShadow(db, 'd1', null)!;
    expect(v.state).toBe('loaded');
    expect(v.since).toBe(new Date(t(4)).toISOString());
    expect(v.samples).toBe(18);
  });
});
