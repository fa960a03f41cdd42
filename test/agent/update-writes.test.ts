// What one update costs the device's disk (issue 13): every file operation the agent makes through its
// disk seam (device-agent/disk.ts) is counted from the assignment to the outcome's PUBACK, for an update
// that downloads its artifact and for one whose bytes are already in the other slot (what a fleet revert
// sends: the previous model signed again under a new version). The counts are exact: a change that adds
// or drops a state write or an fsync must say why here. Crash safety of these writes is
// test/agent/power-loss.test.ts's (every prefix of the same operations, cut by a power loss).
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { FleetAgent } from '../../device-agent/agent.ts';
import { realDisk, useDisk } from '../../device-agent/disk.ts';
import { assign, pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { waitFor } from '../helpers/wait.ts';
import { outcome, startAgent } from './fixture.ts';

interface Counts { stateWrites: number; fileFsyncs: number; folderFsyncs: number; renames: string[] }

/** Counts the agent's file operations under `root` until stop(). */
function countOps(root: string) {
  const c: Counts = { stateWrites: 0, fileFsyncs: 0, folderFsyncs: 0, renames: [] };
  const dirs = new Set<number>();
  useDisk({
    openSync: ((path: string, flags: string, mode?: number) => {
      const fd = realDisk.openSync(path, flags, mode);
      if (String(path).startsWith(root) && statSync(path).isDirectory()) dirs.add(fd);
      return fd;
    }) as typeof realDisk.openSync,
    fsyncSync: (fd) => { realDisk.fsyncSync(fd); if (dirs.has(fd)) c.folderFsyncs++; else c.fileFsyncs++; },
    closeSync: (fd) => { realDisk.closeSync(fd); dirs.delete(fd); },
    renameSync: (from, to) => {
      realDisk.renameSync(from, to);
      if (!String(to).startsWith(root)) return;
      if (basename(String(to)) === 'state.json') c.stateWrites++;
      else c.renames.push(basename(String(to)).replace(/^\d+\.json$/, 'telemetry.json'));
    },
  });
  return c;
}

describe('file operations per update', () => {
  let server: TestServer;
  let agent: FleetAgent | null = null;
  beforeAll(async () => { server = await startTestServer(); }, 60_000);
  afterEach(() => useDisk(null));
  afterAll(async () => { useDisk(null); await agent?.stop(); await server?.close(); });

  it('a downloaded update and an update from the other slot: four state writes each (one the acknowledgement), one folder fsync for the slot files', async () => {
    const [m1, m2] = [tinyClassifier(21), tinyClassifier(22)];
    const v1 = await pushBundle(server, 'writes', m1);
    const v2 = await pushBundle(server, 'writes', m2);
    const v3 = await pushBundle(server, 'writes', m1); // v1's bytes signed again: staged from the slot
    // no telemetry window during the count (its outbox writes are not the update's)
    agent = await startAgent(server, 'writes-1', { telemetryWindowMs: 3_600_000 });
    const a = agent;
    const root = join(server.dir, 'agents', 'writes-1');
    const update = async (manifestSha256: string) => {
      const done = outcome(a, manifestSha256);
      await assign(server, manifestSha256, [a.deviceId]);
      expect((await done).state).toBe('active');
      // the outcome leaves the record's outbox on its PUBACK (one more state write, data fsync only)
      await waitFor(() => JSON.parse(readFileSync(join(root, 'state.json'), 'utf8')).outbox.length === 0, 10_000, 'the active status acknowledged');
    };
    await update(v1.manifestSha256);

    const downloaded = countOps(root);
    await update(v2.manifestSha256);
    useDisk(null);
    const fromSlot = countOps(root);
    await update(v3.manifestSha256);
    useDisk(null);

    for (const [c, stagedByCopy] of [[downloaded, false], [fromSlot, true]] as const) {
      // state.json: accepted (anti-replay + update record), slot claimed, switched (+ outcome queued),
      // outcome acknowledged
      expect(c.stateWrites).toBe(4);
      // state writes: 3 fsynced with their folder, the acknowledgement's data only; the manifest's data;
      // the staged artifact's data (a download fsyncs its .part; a copy from the slot fsyncs the copy)
      expect(c.fileFsyncs).toBe(4 + 1 + 1);
      // the three fsynced state writes, and one for the slot folder after both slot files are renamed in
      // (the manifest's rename is made durable by that one, before the switch names the slot)
      expect(c.folderFsyncs).toBe(3 + 1);
      expect(c.renames.sort()).toEqual(stagedByCopy ? ['a.manifest.json', 'a.onnx'].sort() : ['b.manifest.json', 'b.onnx'].sort());
    }
    expect(agent.active?.manifestSha256).toBe(v3.manifestSha256);
  });
});
