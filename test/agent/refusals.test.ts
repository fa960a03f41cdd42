// Every refusal case over loopback, each with its reason code, and the device still on its good model
// with no downloaded bytes left behind: tampered, unknown key, revoked key, expired, older version,
// wrong hardware, oversize.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { FleetAgent } from '../../device-agent/agent.ts';
import { generateKeyPair, keyIdOf } from '../../shared/crypto.ts';
import { assign, pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { assignSigned, manifestOf, outcome, startAgent } from './fixture.ts';

describe('the agent refuses what it must not load', () => {
  let server: TestServer;
  let agent: FleetAgent;
  let v1: Awaited<ReturnType<typeof pushBundle>>;
  let v2: Awaited<ReturnType<typeof pushBundle>>;
  let tamper = false;
  // the download path, with a man in the middle that flips one byte when asked to
  const tamperingFetch: typeof fetch = async (input, init) => {
    const res = await fetch(input, init);
    if (!tamper || !res.ok) return res;
    const bytes = new Uint8Array(await res.arrayBuffer());
    bytes[bytes.length >> 1] ^= 0x01;
    return new Response(bytes, { status: res.status, headers: res.headers });
  };

  beforeAll(async () => {
    server = await startTestServer();
    v1 = await pushBundle(server, 'tiny', tinyClassifier(1));
    v2 = await pushBundle(server, 'tiny', tinyClassifier(2));
    agent = await startAgent(server, 'refuser-1', { hardware: 'cam-a' }, { fetch: tamperingFetch });
    await assign(server, v1.manifestSha256, [agent.deviceId]);
    expect((await outcome(agent, v1.manifestSha256)).state).toBe('active');
  }, 60_000);

  afterAll(async () => {
    await agent?.stop();
    await server?.close();
  });

  function expectUnchanged(manifestSha256: string) {
    expect(agent.active?.manifestSha256).toBe(manifestSha256);
    const leftovers = readdirSync(join(agent.config.dataDir, 'slots')).filter((f) => !/^[ab]\.(onnx|manifest\.json)$/.test(f));
    expect(leftovers).toEqual([]);
  }

  it('tampered bytes: HASH_MISMATCH', async () => {
    tamper = true;
    try {
      await assign(server, v2.manifestSha256, [agent.deviceId]);
      const s = await outcome(agent, v2.manifestSha256);
      expect([s.state, s.reason]).toEqual(['rejected', 'HASH_MISMATCH']);
    } finally {
      tamper = false;
    }
    expectUnchanged(v1.manifestSha256);
  });

  it('a manifest signed by a key outside the key set: UNKNOWN_KEY', async () => {
    const rogue = generateKeyPair();
    const m = { ...manifestOf(server, v2.manifestSha256), version: 40 };
    const sha = await assignSigned(server, m, [agent.deviceId], { ...rogue, keyId: keyIdOf(rogue.publicKey) });
    const s = await outcome(agent, sha);
    expect([s.state, s.reason]).toEqual(['rejected', 'UNKNOWN_KEY']);
    expectUnchanged(v1.manifestSha256);
  });

  it('an expired manifest: EXPIRED', async () => {
    const m = { ...manifestOf(server, v2.manifestSha256), version: 41, issuedAt: new Date(Date.now() - 2 * 86400_000).toISOString(), expires: new Date(Date.now() - 86400_000).toISOString() };
    const sha = await assignSigned(server, m, [agent.deviceId]);
    const s = await outcome(agent, sha);
    expect([s.state, s.reason]).toEqual(['rejected', 'EXPIRED']);
    expectUnchanged(v1.manifestSha256);
  });

  it('a model for other hardware: WRONG_HARDWARE', async () => {
    const other = await pushBundle(server, 'tiny', tinyClassifier(2), { quantize: 'none', hardwareTargets: ['cam-b'] });
    await assign(server, other.manifestSha256, [agent.deviceId]);
    const s = await outcome(agent, other.manifestSha256);
    expect([s.state, s.reason]).toEqual(['rejected', 'WRONG_HARDWARE']);
    expectUnchanged(v1.manifestSha256);
  });

  it('a server that sends more bytes than the manifest allows: SIZE_MISMATCH, cut off', async () => {
    const m = manifestOf(server, v2.manifestSha256);
    m.version = 42;
    m.artifact.length -= 16; // the server will offer the real, longer file
    const sha = await assignSigned(server, m, [agent.deviceId]);
    const s = await outcome(agent, sha);
    expect([s.state, s.reason]).toEqual(['rejected', 'SIZE_MISMATCH']);
    expectUnchanged(v1.manifestSha256);
  });

  it('an older version than the device already ran: ROLLBACK', async () => {
    await assign(server, v2.manifestSha256, [agent.deviceId]);
    expect((await outcome(agent, v2.manifestSha256)).state).toBe('active');
    await assign(server, v1.manifestSha256, [agent.deviceId]);
    const s = await outcome(agent, v1.manifestSha256);
    expect([s.state, s.reason]).toEqual(['rejected', 'ROLLBACK']);
    expectUnchanged(v2.manifestSha256);
  });

  it('a manifest signed by a key the root has since revoked: REVOKED_KEY', async () => {
    const keys = server.app.fleet.keys;
    const old = keys.signerFor('targets');
    keys.rotate();
    keys.revoke(old.keyId);
    const m = { ...manifestOf(server, v2.manifestSha256), version: 43 };
    const sha = await assignSigned(server, m, [agent.deviceId], old);
    const s = await outcome(agent, sha);
    expect([s.state, s.reason]).toEqual(['rejected', 'REVOKED_KEY']);
    expectUnchanged(v2.manifestSha256);
  });
});
