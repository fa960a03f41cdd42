// Helpers for campaign tests: a tiny model with a reference set (so bundles carry a drift baseline),
// workload inputs, and polling a campaign until it reaches a status.
import { seededRandom } from '../../server/bundles/golden-vectors.ts';
import type { TestServer } from './harness.ts';

export { tinyReference } from '../../firmware-sim/sample-models.ts';

/** Inputs like the reference set's (uniform in [0,1)), different for every device and call. */
export function tinyInputs(i: number, n: number) {
  const rand = seededRandom(i * 100_003 + n);
  return { x: { data: Float32Array.from({ length: 8 }, () => rand()), dims: [1, 8] } };
}

export const FAST_WAVES = [
  { percent: 1, minDevices: 5, soakSeconds: 0.5, minReporting: 3, minInferences: 20 },
  { percent: 10, soakSeconds: 0.5, minReporting: 3, minInferences: 20 },
  { percent: 50, soakSeconds: 0.5, minReporting: 3, minInferences: 20 },
  { percent: 100, soakSeconds: 0.5, minReporting: 3, minInferences: 20 },
];

export interface CampaignView { campaignId: string; status: string; wave: number; devices: Record<string, number>; waiting: string | null }

export async function getCampaign(server: TestServer, id: string): Promise<CampaignView & { deviceList: { deviceId: string; wave: number; state: string; attempts: number; reason: string | null; revertState: string | null }[] }> {
  const res = await server.app.inject({ method: 'GET', url: `/v1/campaigns/${id}` });
  if (res.statusCode !== 200) throw new Error(`GET campaign: ${res.statusCode} ${res.body}`);
  return res.json();
}

export async function events(server: TestServer, id: string): Promise<{ type: string; actor: string; detail: Record<string, unknown> }[]> {
  return (await server.app.inject({ method: 'GET', url: `/v1/campaigns/${id}/events` })).json().events;
}

/** What made a campaign stop, for assertion messages. */
export async function whyStopped(server: TestServer, id: string): Promise<string> {
  const ev = await events(server, id);
  // the devices' own reasons too: a gate that counts failed devices does not say why they failed
  const reasons: Record<string, number> = {};
  for (const d of (await getCampaign(server, id)).deviceList) if (d.reason) reasons[d.reason] = (reasons[d.reason] ?? 0) + 1;
  return JSON.stringify({ gates: ev.filter((e) => e.type === 'gate_failed').map((e) => ({ failures: e.detail.failures, figures: e.detail.figures })), deviceReasons: reasons });
}

export async function waitForCampaign(server: TestServer, id: string, statuses: string[], timeoutMs = 90_000): Promise<CampaignView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { deviceList: _omit, ...c } = await getCampaign(server, id);
    if (statuses.includes(c.status)) return c;
    if (Date.now() > deadline) throw new Error(`campaign ${id} is ${c.status} (wave ${c.wave}, ${JSON.stringify(c.devices)}, waiting: ${c.waiting}), not ${statuses.join('/')} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function createCampaign(server: TestServer, body: Record<string, unknown>) {
  const res = await server.app.inject({ method: 'POST', url: '/v1/campaigns', payload: body, headers: { 'x-fleet-actor': 'alice' } });
  return { status: res.statusCode, body: res.json() };
}
