// `npm run sim` names the broker (issue 15): a scenario's `broker` field starts mosquitto or a NATS
// cluster as the tests do, makes the server a client of it, runs the fleet on it and stops it. Runs the
// library's scenarios/broker-mosquitto.json and broker-nats.json at a small size (real brokers from
// Debian, real agents, real server); the campaign must complete on every device, through that broker.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { startBroker } from '../../firmware-sim/brokers/broker-mode.ts';
import { mosquittoAvailable } from '../../firmware-sim/brokers/mosquitto.ts';
import { natsAvailable } from '../../firmware-sim/brokers/nats-cluster.ts';
import { runScenario } from '../../firmware-sim/run-scenario.ts';
import { parseScenario, type ScenarioInput } from '../../firmware-sim/scenario.ts';

if (!mosquittoAvailable() || !natsAvailable()) throw new Error('mosquitto (with its dynamic security plugin) and nats-server are needed (apt-get install mosquitto nats-server; .ci/run installs them)');

const library = (mode: string): ScenarioInput => JSON.parse(readFileSync(`scenarios/broker-${mode}.json`, 'utf8')) as ScenarioInput;

/** the library scenario with a smaller fleet (and an expect that counts it) */
function small(mode: string, devices: number): ScenarioInput {
  const sc = library(mode) as ScenarioInput & { fleet: { devices: number }; expect: Record<string, unknown> };
  return { ...sc, fleet: { ...sc.fleet, devices }, expect: { ...sc.expect, devicesOnCandidate: devices } };
}

const alive = (pid: number | undefined) => {
  if (!pid) return false;
  try { process.kill(pid, 0); return true; } catch { return false; }
};

describe('scenario broker field', () => {
  it('defaults to the embedded broker; nodes only for nats; an unknown mode is refused with the field named', () => {
    expect(parseScenario({ fleet: { devices: 1 } }).broker).toEqual({ mode: 'embedded' });
    expect(parseScenario(library('nats')).broker).toEqual({ mode: 'nats', nodes: 3 });
    expect(() => parseScenario({ fleet: { devices: 1 }, broker: { mode: 'mosquitto', nodes: 3 } })).toThrow('invalid scenario: broker: broker.nodes is for mode "nats"');
    expect(() => parseScenario({ fleet: { devices: 1 }, broker: { mode: 'emqx' } })).toThrow(/invalid scenario: broker\.mode: /);
    expect(() => parseScenario({ fleet: { devices: 1 }, broker: { mode: 'nats', nodes: 7 } })).toThrow(/invalid scenario: broker\.nodes: /);
  });

  it('a flaky-network fault (a proxy to the embedded broker) is refused on an external broker before anything starts', async () => {
    const sc = small('mosquitto', 2) as ScenarioInput & { fleet: { groups: object[] } };
    await expect(runScenario({ ...sc, fleet: { ...sc.fleet, groups: [{ share: 1, faults: { flakyNetwork: { dropEveryMs: 1000 } } }] } }))
      .rejects.toThrow('faults.flakyNetwork runs devices through a proxy to the embedded broker');
  });

  it('startBroker stops what it started (mosquitto, and all three NATS nodes)', async () => {
    for (const mode of ['mosquitto', 'nats'] as const) {
      const b = await startBroker({ mode });
      const pids = Object.values(b.pids());
      expect(pids).toHaveLength(mode === 'nats' ? 3 : 1);
      expect(pids.every(alive)).toBe(true);
      await b.stop();
      expect(pids.filter(alive)).toEqual([]);
    }
  }, 120_000);
});

describe('npm run sim on an external broker', () => {
  it('scenarios/broker-mosquitto.json, 20 devices: the campaign completes on all 20 through mosquitto (device auth by dynsec)', async () => {
    const o = await runScenario(small('mosquitto', 20));
    expect(o.broker.mode).toBe('mosquitto');
    expect(o.broker.rssMB.mosquitto).toBeGreaterThan(0);
    expect(o.check, JSON.stringify({ check: o.check, failures: o.campaign.failures, reasons: o.campaignReasons, byReason: o.byReason })).toEqual({ ok: true, misses: [] });
    expect(o.campaign.status).toBe('completed');
    expect(o.devicesOn).toEqual({ candidate: 20, baseline: 0, other: 0, none: 0 });
    expect(o.devicesTouched).toBe(20);
  }, 240_000);

  it('scenarios/broker-nats.json, 12 devices over 3 nodes: the campaign completes on all 12 through the NATS cluster', async () => {
    const o = await runScenario(small('nats', 12));
    expect(o.broker.mode).toBe('nats');
    expect(o.broker.nodes).toBe(3);
    expect(Object.keys(o.broker.rssMB)).toEqual(['n1', 'n2', 'n3']);
    expect(o.check, JSON.stringify({ check: o.check, failures: o.campaign.failures, reasons: o.campaignReasons, byReason: o.byReason })).toEqual({ ok: true, misses: [] });
    expect(o.campaign.status).toBe('completed');
    expect(o.devicesOn).toEqual({ candidate: 12, baseline: 0, other: 0, none: 0 });
    expect(o.devicesTouched).toBe(12);
  }, 240_000);
});
