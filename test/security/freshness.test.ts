// Freeze detection (TUF timestamp role), real parts: the server signs a short-lived freshness statement
// with its director key and publishes it retained on fleet/v1/freshness; an enrolled agent accepts it.
// Then it is withheld and the agent's clock (injected) moves past freshnessMaxAgeSeconds: the agent says
// it is stale (local GET /v1/status, its presence, the server's device view). A replayed older
// statement, one signed by a key the root never listed, and an expired one refresh nothing; the next
// genuine statement makes it fresh again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKeyPair, keyIdOf } from '../../shared/crypto.ts';
import { signDocument } from '../../shared/envelope.ts';
import type { FreshnessMessage, FreshnessStatement } from '../../shared/freshness.ts';
import { topics } from '../../shared/topics.ts';
import type { SimulatedFleet } from '../../firmware-sim/fleet.ts';
import { startLocalHttp } from '../../device-agent/local-http.ts';
import { startFleet, startTestServer, type TestServer } from '../helpers/harness.ts';
import { waitFor } from './helpers.ts';

let server: TestServer;
let fleet: SimulatedFleet;
let http: Awaited<ReturnType<typeof startLocalHttp>>;
let offset = 0;
const events: { event: string; reason?: string }[] = [];
const agent = () => fleet.agents[0];
const deviceView = async () => (await server.app.inject({ method: 'GET', url: `/v1/devices/${agent().deviceId}` })).json();
const localStatus = async () => (await fetch(`http://127.0.0.1:${http.port}/v1/status`)).json() as Promise<{ freshness: { stale: boolean; freshUntil: string | null } }>;

function statement(issuedAt: number, ttlMs: number, key = server.app.fleet.keys.signerFor('director')): string {
  const keys = server.app.fleet.keys;
  const s: FreshnessStatement = { type: 'freshness', issuedAt: new Date(issuedAt).toISOString(), expires: new Date(issuedAt + ttlMs).toISOString(), keysetVersion: keys.keyset.version };
  const msg: FreshnessMessage = { keyset: keys.keysetEnvelope, statement: signDocument(s, key) };
  return JSON.stringify(msg);
}

beforeAll(async () => {
  // one statement at start, then none unless the test asks (publishOnce): the test controls what is withheld
  server = await startTestServer({ tls: true, config: { allowUnenrolledDevices: false, freshnessIntervalSeconds: 3600, freshnessTtlSeconds: 600 } });
  fleet = await startFleet(server, {
    count: 1, idPrefix: 'fz', agentOverrides: { freshnessMaxAgeSeconds: 60 },
    agentDeps: () => ({ now: () => Date.now() + offset, log: (event, f) => { if (event.startsWith('freshness')) events.push({ event, reason: f.reason as string | undefined }); } }),
  });
  http = await startLocalHttp(agent(), 0);
}, 60_000);

afterAll(async () => {
  await http?.close();
  await fleet?.stop();
  await server?.close();
});

describe('freeze detection', () => {
  it('the agent accepts the retained signed statement: fresh, locally and in the server\'s view', async () => {
    await waitFor(() => agent().freshness?.view().freshUntil !== null, 10_000, 'statement accepted');
    expect(agent().freshness!.view().stale).toBe(false);
    expect((await localStatus()).freshness.stale).toBe(false);
    await waitFor(async () => (await deviceView()).freshness?.stale === false, 10_000, 'server shows the device fresh');
  });

  it('withheld past freshnessMaxAgeSeconds (agent clock +61 s): stale in GET /v1/status, its presence and GET /v1/devices/:id', async () => {
    server.app.fleet.freshness.stop();
    offset += 61_000;
    await waitFor(() => agent().freshness!.view().stale, 10_000, 'agent stale');
    expect((await localStatus()).freshness.stale).toBe(true);
    await waitFor(async () => (await deviceView()).freshness?.stale === true, 10_000, 'server shows the device stale');
    expect(events.filter((e) => e.event === 'freshness_stale')).toHaveLength(1);
  });

  it('a replayed older statement, a forged one and an expired one are refused and refresh nothing', async () => {
    const bus = server.app.fleet.broker;
    const accepted = Date.parse(agent().freshness!.view().freshUntil!) - 60_000; // freshUntil = acceptedAt + maxAge
    const rogue = generateKeyPair();
    const sends: [string, string][] = [
      ['REPLAYED', statement(accepted - 120_000 - 1000, 3600_000)],
      ['UNKNOWN_KEY', statement(Date.now() + offset, 600_000, { keyId: keyIdOf(rogue.publicKey), seed: rogue.seed, publicKey: rogue.publicKey })],
      ['EXPIRED', statement(Date.now() + offset - 700_000, 600_000)],
    ];
    for (const [reason, payload] of sends) {
      const before = events.length;
      await bus.publish(topics.freshness(), payload, { qos: 1, retain: true });
      await waitFor(() => events.slice(before).some((e) => e.event === 'freshness_refused'), 10_000, `${reason} refused`);
      expect(events.slice(before).find((e) => e.event === 'freshness_refused')?.reason).toBe(reason);
      expect(agent().freshness!.view().stale).toBe(true);
    }
    expect((await deviceView()).freshness.stale).toBe(true);
  });

  it('the next genuine statement makes it fresh again, and the server shows it', async () => {
    const s = await server.app.fleet.freshness.publishOnce();
    expect(s?.type).toBe('freshness');
    await waitFor(() => !agent().freshness!.view().stale, 10_000, 'agent fresh again');
    await waitFor(async () => (await deviceView()).freshness?.stale === false, 10_000, 'server shows the device fresh');
    expect(events.filter((e) => e.event === 'freshness_restored')).toHaveLength(1);
  });

  it('devices may subscribe to the freshness topic but never publish on it', async () => {
    const { maySubscribe, mayPublish } = await import('../../server/mqtt/acl.ts');
    expect(maySubscribe('fz-00000', topics.freshness()).ok).toBe(true);
    expect(mayPublish('fz-00000', topics.freshness(), 10, 1024).ok).toBe(false);
  });
});
