// In-process agents against a real test server, and manifests signed on the side for refusal cases.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { FleetAgent, type AgentDeps } from '../../device-agent/agent.ts';
import { parseAgentConfig, type AgentConfigInput } from '../../device-agent/config.ts';
import { envelopeDigest, signDocument, type SigningKey } from '../../shared/envelope.ts';
import type { Manifest, Status } from '../../shared/messages.ts';
import { enrollKeys, type TestServer } from '../helpers/harness.ts';

/**
 * A started, connected agent. It is enrolled with a key pair first (its key in its data folder, the
 * public key registered: enrollKeys), as the server runs with allowUnenrolledDevices off; `over` with a
 * deviceSecret (legacy) or an enrollmentToken (enrolls itself on start) skips that.
 */
export async function startAgent(server: TestServer, deviceId: string, over: Partial<AgentConfigInput> = {}, deps: AgentDeps = {}): Promise<FleetAgent> {
  const dataDir = over.dataDir ?? join(server.dir, 'agents', deviceId);
  mkdirSync(dataDir, { recursive: true });
  if (!over.deviceSecret && !over.enrollmentToken) await enrollKeys(server, [{ deviceId, dataDir }]);
  const agent = new FleetAgent(parseAgentConfig({
    deviceId, dataDir, mqttUrl: server.mqttUrl, serverUrl: server.baseUrl, rootPublicKey: server.rootPublicKey,
    reconnectMinMs: 100, probationInferences: 0, probationSeconds: 0, download: { retries: 2, backoffMs: 20, timeoutMs: 10_000 },
    ...(server.caFile ? { caFile: server.caFile } : {}),
    ...over,
  }), deps);
  const connected = new Promise<void>((r) => agent.once('connected', () => r()));
  await agent.start();
  await connected;
  return agent;
}

/** A manifest envelope signed with `key` (default: the server's current targets key), assigned to the devices. */
export async function assignSigned(server: TestServer, manifest: Manifest, deviceIds: string[], key?: SigningKey): Promise<string> {
  const envelope = signDocument(manifest, key ?? server.app.fleet.keys.signerFor('targets'));
  await server.app.fleet.director.assignEnvelope(envelope, manifest, deviceIds);
  return envelopeDigest(envelope);
}

export function manifestOf(server: TestServer, manifestSha256: string): Manifest {
  return structuredClone(server.app.fleet.director.bundleEnvelope(manifestSha256).manifest);
}

/** The final status of the update to one manifest (anything but the in-progress states). */
export function outcome(agent: FleetAgent, manifestSha256: string, timeoutMs = 15_000): Promise<Status> {
  const final = new Set(['active', 'probation_passed', 'rejected', 'failed', 'reverted']);
  return agent.waitForStatus((s) => s.manifestSha256 === manifestSha256 && final.has(s.state), timeoutMs);
}

export function settled(agent: FleetAgent, manifestSha256: string, states: string[], timeoutMs = 15_000): Promise<Status> {
  return agent.waitForStatus((s) => s.manifestSha256 === manifestSha256 && states.includes(s.state), timeoutMs);
}
