// fleetctl campaigns plan as an operator runs it: offline with --devices, and against a real server that
// counts the devices matching the campaign's target.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFleetctl } from '../helpers/fleetctl.ts';
import type { SimulatedFleet } from '../../firmware-sim/fleet.ts';
import { startFleet, startTestServer, tempDir, type TestServer } from '../helpers/harness.ts';

const dir = tempDir('fleet-plan-');
const file = (name: string, body: unknown) => {
  const p = join(dir, name);
  writeFileSync(p, typeof body === 'string' ? body : JSON.stringify(body));
  return p;
};
const DEFAULT_WAVES = file('default.json', { waves: [{ percent: 1, minDevices: 5 }, { percent: 10 }, { percent: 50 }, { percent: 100 }] });
const offline = (...args: string[]) => runFleetctl('http://127.0.0.1:1', 'unused', ...args);

describe('fleetctl campaigns plan', { timeout: 60_000 }, () => {
  it('prints what each wave of a 1,000-device campaign can detect, and warns about the small ones', async () => {
    const r = await offline('campaigns', 'plan', DEFAULT_WAVES, '--devices', '1000');
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('1000 devices; alpha 0.05, beta 0.05, power 0.8; a device\'s observation: 3 windows x 30 inferences');
    expect(lines[1]).toBe('devices the sequential test needs: 5 to decide anything, 24 to detect 1.2x p95, 157 to detect +1 points of errors, 21 to advance a good model');
    expect(lines.slice(2, 7).map((l) => l.split(/\s{2,}/))).toEqual([
      ['WAVE', 'DEVICES', 'SO FAR', 'DETECTS 1.2x P95', 'DETECTS +1PT ERRORS', 'INFERENCES/DEVICE FOR ERRORS', 'ADVANCES A GOOD MODEL'],
      ['1', '10', '10', 'no', 'no', '1754', 'no'],
      ['2', '90', '100', 'yes', 'no', '139', 'yes'],
      ['3', '400', '500', 'yes', 'yes', '30', 'yes'],
      ['4', '500', '1000', 'yes', 'yes', '16', 'yes'],
    ]);
    expect(lines.slice(7)).toEqual([
      'warning: wave 1 (10 devices so far) is too small to detect a 1.2x p95 regression with 80% power at alpha 0.05: it needs 24 devices',
      'warning: wave 1 (10 devices so far) is too small to detect +1 points of errors at 90 inferences per device: it needs 157 devices, or 1754 inferences per device',
      'warning: wave 2 (100 devices so far) is too small to detect +1 points of errors at 90 inferences per device: it needs 157 devices, or 139 inferences per device',
    ]);
  });

  it('answers --json with the same figures, and follows the flags', async () => {
    const r = await offline('--json', 'campaigns', 'plan', DEFAULT_WAVES, '--devices', '1000', '--latency', '3', '--errors', '5', '--inferences-per-window', '100');
    expect(r.code, r.stderr).toBe(0);
    const plan = JSON.parse(r.stdout);
    expect(plan.needs).toEqual({ anyDecision: 5, latency: 5, errors: 6, advanceGood: 9 });
    expect(plan.waves.map((w: { detectsLatency: boolean; detectsErrors: boolean }) => [w.detectsLatency, w.detectsErrors])).toEqual([[true, true], [true, true], [true, true], [true, true]]);
    expect(plan.warnings).toEqual([]);
  });

  it('warns that a 4-device canary decides nothing on the test', async () => {
    const r = await offline('--json', 'campaigns', 'plan', DEFAULT_WAVES, '--devices', '400');
    const plan = JSON.parse(r.stdout);
    expect(plan.waves[0]).toMatchObject({ devices: 5, cumulativeDevices: 5 });
    const tiny = file('tiny.json', { waves: [{ percent: 1, minDevices: 4 }, { percent: 100 }] });
    const t = JSON.parse((await offline('--json', 'campaigns', 'plan', tiny, '--devices', '400')).stdout);
    expect(t.warnings[0]).toBe('wave 1 has 4 devices: the sequential test needs at least 5 to decide anything; it is judged by the fixed limits alone');
  });

  it.each([
    [['--devices', '0'], /--devices: Too small/],
    [['--devices', '10', '--latency', '0.9'], /--latency: /],
    [['--devices', '10', '--power', 'x'], /--power: /],
  ])('refuses bad flags %j with a usage error', async (args, message) => {
    const r = await offline('campaigns', 'plan', DEFAULT_WAVES, ...(args as string[]));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toMatch(/FLEETCTL_ERR_USAGE/);
  });

  it('refuses a config the server would refuse, naming the field', async () => {
    const bad = file('bad.json', { waves: [{ percent: 50 }], gates: { sequential: { alpha: 2 } } });
    const r = await offline('campaigns', 'plan', bad, '--devices', '10');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/bad\.json: waves\.0\.percent: the last wave must reach 100%|gates\.sequential\.alpha/);
    expect(r.stderr).toMatch(/FLEETCTL_ERR_CONFIG/);
    const notJson = await offline('campaigns', 'plan', file('x.json', '{'), '--devices', '10');
    expect(notJson.stderr).toMatch(/x\.json: .*JSON/);
  });

  describe('against a real server', () => {
    let server: TestServer;
    let fleet: SimulatedFleet;
    beforeAll(async () => {
      server = await startTestServer();
      // devices the server knows: enrolled agents that connected (the table a campaign's target is resolved on)
      fleet = await startFleet(server, { count: 12, idPrefix: 'plan' });
      for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
        if ((await server.app.inject({ method: 'GET', url: '/v1/devices' })).json().devices.length === 12) break;
        await new Promise((r) => setTimeout(r, 200));
      }
    }, 90_000);
    afterAll(async () => {
      await fleet?.stop();
      await server?.close();
    });

    it('counts the devices matching the target when --devices is not given', async () => {
      const r = await runFleetctl(server.baseUrl, server.adminToken, '--json', 'campaigns', 'plan', DEFAULT_WAVES);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).fleetDevices).toBe(12);
      const some = file('some.json', { target: { deviceIds: [fleet.agents[1].deviceId, fleet.agents[2].deviceId, 'nobody'] } });
      const s = await runFleetctl(server.baseUrl, server.adminToken, '--json', 'campaigns', 'plan', some);
      expect(JSON.parse(s.stdout).fleetDevices).toBe(2);
    });
  });
});
