// Every outcome reaches the server across crashes, exactly once (issue 11, item 2). The agent queues an
// outcome in the same durable write as the change it reports and resends it until the broker
// acknowledges it; the server applies each (deviceId, seq) once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { AgentState } from '../../device-agent/state-store.ts';
import { ackStatus, enqueueStatus, STATUS_OUTBOX_MAX } from '../../device-agent/status-outbox.ts';
import type { Status } from '../../shared/messages.ts';
import { topics } from '../../shared/topics.ts';
import { assign, enrollDevices, pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { waitFor } from '../helpers/wait.ts';
import { AgentProcess } from './agent-process-handle.ts';

const blank = (): AgentState => AgentState.parse({
  format: 1, trust: { rootPublicKey: 'AAAA', keysetVersion: 0, lastSeq: 0, lastDirectorSig: null, versionFloors: {}, timeFloor: 0 },
  slots: { a: null, b: null }, active: null, previous: null, telemetrySeq: 0, statusSeq: 41,
});
const status = (state: Status['state']): Omit<Status, 'seq'> => ({ deviceId: 'd-1', ts: new Date(0).toISOString(), state, active: null, agentVersion: '1.0.0' });

describe('the status outbox in the state record', () => {
  it('numbers outcomes from the record, keeps them until acknowledged, drops the oldest past its bound', () => {
    const s = blank();
    expect(enqueueStatus(s, status('failed')).seq).toBe(42);
    expect(enqueueStatus(s, status('reverted')).seq).toBe(43);
    expect(s.statusSeq).toBe(43);
    expect(ackStatus(s, 42)).toBe(true);
    expect(ackStatus(s, 42)).toBe(false);
    expect(s.outbox.map((x) => x.seq)).toEqual([43]);
    for (let i = 0; i < STATUS_OUTBOX_MAX + 5; i++) enqueueStatus(s, status('rejected'));
    expect(s.outbox).toHaveLength(STATUS_OUTBOX_MAX);
    expect(s.outbox[0].seq).toBe(43 + 6);
    expect(AgentState.parse(JSON.parse(JSON.stringify(s)))).toEqual(s); // what is queued survives the round trip to disk
  });
});

describe('outcomes across crashes', () => {
  let server: TestServer;
  beforeAll(async () => { server = await startTestServer(); }, 60_000);
  afterAll(async () => { await server?.close(); });

  const rows = (deviceId: string) => server.app.fleet.db.prepare('SELECT state, reason, seq, manifest_sha256 AS manifest FROM status_events WHERE device_id = ? AND seq IS NOT NULL ORDER BY id')
    .all(deviceId) as { state: string; reason: string | null; seq: number; manifest: string }[];

  it('the server stores a resent status once and tells its listeners once', async () => {
    const heard: unknown[] = [];
    const off = server.app.fleet.ingest.onMessage((kind, deviceId) => { if (kind === 'status' && deviceId === 'dup-1') heard.push(deviceId); });
    // an enrolled device's own client (its legacy secret: the test speaks MQTT itself)
    const secret = (await enrollDevices(server, ['dup-1'])).get('dup-1')!;
    const client = mqtt.connect(server.mqttUrl, { clientId: 'dup-1', username: 'dup-1', password: secret, protocolVersion: 4, reconnectPeriod: 0 });
    try {
      await new Promise<void>((r, j) => { client.once('connect', () => r()); client.once('error', j); });
      const s: Status = { ...status('reverted'), deviceId: 'dup-1', reason: 'PROBATION_FAILED', seq: 7 };
      for (let i = 0; i < 3; i++) await client.publishAsync(topics.status('dup-1'), JSON.stringify(s), { qos: 1 });
      await client.publishAsync(topics.status('dup-1'), JSON.stringify({ ...s, seq: 8, state: 'active' }), { qos: 1 });
      await waitFor(() => rows('dup-1').length === 2, 5000, 'two rows');
      await new Promise((r) => setTimeout(r, 100));
      expect(rows('dup-1').map((r) => [r.state, r.seq])).toEqual([['reverted', 7], ['active', 8]]);
      expect(heard).toHaveLength(2);
      const view = await server.app.inject({ url: '/v1/devices/dup-1' });
      expect(view.json().lastStatus.state).toBe('active');
    } finally {
      off();
      await client.endAsync();
    }
  });

  it('killed after the write that reverts or switches and before the send: the report arrives after restart, once', async () => {
    const deviceId = 'outbox-kill-1';
    const dataDir = join(server.dir, 'kill', deviceId);
    mkdirSync(dataDir, { recursive: true });
    const v1 = await pushBundle(server, 'tiny', tinyClassifier(1));
    const v2 = await pushBundle(server, 'tiny', tinyClassifier(9)); // passes its health check, fails in probation
    const v3 = await pushBundle(server, 'tiny', tinyClassifier(2));
    const spec = AgentProcess.writeSpec(dataDir, {
      config: {
        deviceId, dataDir, mqttUrl: server.mqttUrl, serverUrl: server.baseUrl, rootPublicKey: server.rootPublicKey, enrollmentToken: server.enrollmentToken,
        reconnectMinMs: 100, probationInferences: 20, probationSeconds: 0, download: { retries: 2, backoffMs: 20, timeoutMs: 10_000 },
      },
      feeds: { x: [1, 8] },
      faultyArtifacts: [v2.manifest.artifact.sha256],
    });
    const disk = () => AgentState.parse(JSON.parse(readFileSync(join(dataDir, 'state.json'), 'utf8')));
    let proc = new AgentProcess(spec);
    try {
      await proc.waitFor((l) => l.event === 'ready', 20_000);
      await assign(server, v1.manifestSha256, [deviceId]);
      await waitFor(() => rows(deviceId).some((r) => r.state === 'probation_passed'), 20_000, 'v1 passes probation');

      // 1. the revert is written, then the process dies before it can say so
      await proc.arm('revert:after');
      await assign(server, v2.manifestSha256, [deviceId]);
      expect((await proc.exited).signal).toBe('SIGKILL');
      expect(rows(deviceId).filter((r) => r.state === 'reverted')).toEqual([]);
      // (the switch to v2 may still be waiting for its PUBACK too)
      expect(disk().outbox.filter((s) => s.state !== 'active').map((s) => [s.state, s.reason])).toEqual([['reverted', 'PROBATION_FAILED']]);
      proc = new AgentProcess(spec);
      await waitFor(() => rows(deviceId).some((r) => r.state === 'reverted'), 20_000, 'the revert reaches the server');
      expect(rows(deviceId).filter((r) => r.state === 'reverted').map((r) => [r.reason, r.manifest])).toEqual([['PROBATION_FAILED', v2.manifestSha256]]);
      await waitFor(() => disk().outbox.length === 0, 5000, 'the outbox empties on PUBACK');

      // 2. the switch to v3 is written, then the process dies: the restart reverts (a crash on probation),
      // and both the switch and the revert reach the server, in order, once each
      await proc.arm('switch:after');
      await assign(server, v3.manifestSha256, [deviceId]);
      expect((await proc.exited).signal).toBe('SIGKILL');
      proc = new AgentProcess(spec);
      await waitFor(() => rows(deviceId).some((r) => r.state === 'reverted' && r.reason === 'CRASH_RECOVERY'), 20_000, 'the crash revert reaches the server');
      await waitFor(() => disk().outbox.length === 0, 5000, 'the outbox empties on PUBACK');
      // a clean restart resends nothing
      proc.send({ stop: true });
      await proc.exited;
      proc = new AgentProcess(spec);
      await proc.waitFor((l) => l.event === 'ready', 20_000);
      await new Promise((r) => setTimeout(r, 500));
      const v3rows = rows(deviceId).filter((r) => r.manifest === v3.manifestSha256 && ['active', 'reverted'].includes(r.state));
      expect(v3rows.map((r) => [r.state, r.reason])).toEqual([['active', null], ['reverted', 'CRASH_RECOVERY']]);
      const seqs = rows(deviceId).map((r) => r.seq);
      expect(new Set(seqs).size).toBe(seqs.length);
      expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
      expect(rows(deviceId).filter((r) => r.state === 'reverted')).toHaveLength(2);
    } finally {
      proc.kill();
      await proc.exited;
    }
  }, 120_000);
});
