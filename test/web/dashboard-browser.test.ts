// The dashboard in headless Chromium (Debian package, /usr/bin/chromium; .ci/run installs it) driven
// by playwright-core, against a real server with a simulated fleet of real agents over loopback, and a
// campaign whose candidate is twice as slow: the page must show the halt, the failing p95 figure
// against its threshold, and the revert, with the same numbers the API gives. Screenshots go to
// test-artifacts/ (gitignored).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import type { SimulatedFleet } from '../../firmware-sim/fleet.ts';
import type { FaultProfile } from '../../firmware-sim/faults.ts';
import { assign, pushBundle, startFleet, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { createCampaign, events, FAST_WAVES, getCampaign, tinyInputs, tinyReference, waitForCampaign } from '../helpers/campaigns.ts';

const N = 10;
const ARTIFACTS = join(process.cwd(), 'test-artifacts');
const CHROMIUM = '/usr/bin/chromium';

describe('the dashboard in Chromium shows a halted, reverted campaign', { timeout: 240_000 }, () => {
  let server: TestServer;
  let fleet: SimulatedFleet;
  let browser: BrowserContext;
  let page: Page;
  let profileDir: string;
  let campaignId: string;
  let loads = 0, loadsWhileRunning = 0;
  let firstStatus = '';
  const profiles: FaultProfile[] = Array.from({ length: N }, () => ({ latency: { baseMs: 20, factorByArtifact: {} }, brokenArtifacts: {} }));
  let seed = 40;
  const push = () => pushBundle(server, 'tiny', tinyClassifier(seed++), { quantize: 'none', reference: tinyReference(), healthCheck: { latencyBudgetMs: 5000 } });

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    server = await startTestServer();
    fleet = await startFleet(server, { count: N, hardware: (i) => (i % 2 ? 'cam-b' : 'cam-a'), telemetryWindowMs: 250, faults: (i) => profiles[i] });
    const v1 = await push();
    await assign(server, v1.manifestSha256, fleet.agents.map((a) => a.deviceId));
    await fleet.waitAll((_s, a) => a.active?.manifestSha256 === v1.manifestSha256, 120_000);
    fleet.startWorkload({ ratePerSecond: 5, inputs: tinyInputs });
    await new Promise((r) => setTimeout(r, 1500)); // telemetry on v1: the latency gate compares against it

    profileDir = mkdtempSync(join(tmpdir(), 'fleet-chromium-'));
    browser = await chromium.launchPersistentContext(profileDir, {
      executablePath: CHROMIUM, headless: true, timeout: 60_000,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'],
      viewport: { width: 1100, height: 1400 },
    });
    page = browser.pages()[0] ?? await browser.newPage();
    page.on('load', () => { loads++; });
    // the token arrives in the fragment, as an operator's link would carry it; the page keeps it and drops it from the address
    await page.goto(`${server.baseUrl}/#token=${server.adminToken}`);

    const slow = await push();
    profiles.forEach((p) => { p.latency!.factorByArtifact![slow.manifest.artifact.sha256] = 2; });
    // the first wave soaks 3 s: long enough for the page to see the campaign running before its gate halts it
    const waves = [{ ...FAST_WAVES[0], soakSeconds: 3 }, ...FAST_WAVES.slice(1)];
    const c = await createCampaign(server, { name: 'slow-v2', manifestSha256: slow.manifestSha256, waves });
    expect(c.status).toBe(201);
    campaignId = c.body.campaignId;
    // open the campaign while it runs (a hash change, not a load), and let the page follow it by itself
    await page.evaluate((id) => { location.hash = `#/campaigns/${id}`; }, campaignId);
    await page.waitForSelector('#campaign-status', { timeout: 30_000 });
    firstStatus = await page.locator('#campaign-status').innerText();
    const end = await waitForCampaign(server, campaignId, ['reverted', 'completed'], 120_000);
    expect(end.status).toBe('reverted');
    await page.waitForFunction(() => document.getElementById('campaign-status')?.textContent === 'reverted' && document.getElementById('campaign-halt')?.textContent?.includes('reverted ('), undefined, { timeout: 30_000 });
    loadsWhileRunning = loads;
    await page.goto(`${server.baseUrl}/`);
    await page.waitForSelector('#campaigns tbody tr', { timeout: 30_000 });
  }, 300_000);

  afterAll(async () => {
    await browser?.close();
    if (profileDir) rmSync(profileDir, { recursive: true, force: true });
    await fleet?.stop();
    await server?.close();
  });

  const text = (sel: string) => page.locator(sel).innerText();

  it('followed the campaign from running to reverted without a reload', async () => {
    expect(['running', 'reverting']).toContain(firstStatus);
    expect(loadsWhileRunning).toBe(1); // the first page load only: the status changed under the page's own polling
  });

  it('lists the campaign on the overview, reverted, with no action left', async () => {
    expect(page.url()).toBe(`${server.baseUrl}/`);
    const row = page.locator('#campaigns tbody tr', { hasText: 'slow-v2' });
    expect(await row.locator('td').nth(2).innerText()).toBe('reverted');
    expect(await row.locator('button').count()).toBe(0);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-overview.png'), fullPage: true });
  });

  it('shows the halt, the failing p95 figure against its threshold, and the revert, as the API says', async () => {
    await page.goto(`${server.baseUrl}/#/campaigns/${campaignId}`);
    await page.waitForSelector('#gates tbody tr', { timeout: 30_000 });
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-campaign.png'), fullPage: true });
    const api = await getCampaign(server, campaignId);
    const ev = await events(server, campaignId);
    const gate = ev.find((e) => e.type === 'gate_failed')!;
    const failures = gate.detail.failures as string[];
    const figures = gate.detail.figures as Record<string, number>;
    // devices report modelled time: 20 ms on v1, twice that on the candidate
    expect(figures.p95New).toBe(40);
    expect(figures.p95Old).toBe(20);
    // the sequential test (docs/canary-statistics.md) halts it on the paired figures, and the fixed limit fails too
    const P95_LINE = "p95 latency 40.00 ms is 2.00x the previous model's 20.00 ms (limit 1.5x)";
    expect(failures).toHaveLength(2);
    expect(failures[0]).toMatch(/^sequential test: latency shown worse on \d+ devices, p95 ratio 1\.952 /); // (40 + 1) / (20 + 1) ms
    expect(failures[1]).toBe(P95_LINE);

    expect(await text('#campaign-status')).toBe('reverted');
    expect(await text('#campaign-title')).toBe('Campaign slow-v2: tiny v2');
    expect(await text(`#actions-${campaignId}`)).toBe('none');
    const reverted = ev.find((e) => e.type === 'reverted')!;
    const gateTime = await page.evaluate((ts) => new Date(ts).toLocaleTimeString(), (gate as unknown as { ts: string }).ts);
    expect(await text('#campaign-halt')).toBe(`Halted at wave 1: its gate failed at ${gateTime}; revert started by engine; reverted (done 5) in ${((reverted.detail.durationMs as number) / 1000).toFixed(1)} s`);
    expect(await page.locator('#gate-failures li').allInnerTexts()).toEqual([`wave 1: ${failures[0]}`, `wave 1: ${P95_LINE}`]);
    const p95Row = page.locator('#gates tbody tr', { hasText: 'p95 latency ratio' });
    expect(await p95Row.locator('td').allInnerTexts()).toEqual(['wave 1', 'p95 latency ratio', '2.00x (40.00 / 20.00 ms)', '≤ 1.5x', 'FAIL']);
    expect(await p95Row.getAttribute('class')).toBe('fail');
    const p99Row = page.locator('#gates tbody tr', { hasText: 'p99 latency ratio' });
    expect(await p99Row.locator('td').allInnerTexts()).toEqual(['wave 1', 'p99 latency ratio', `${figures.p99Ratio.toFixed(2)}x (${figures.p99New.toFixed(2)} / ${figures.p99Old.toFixed(2)} ms)`, '≤ 2x', 'ok']);
    expect(await page.locator('#gates tbody tr.fail').count()).toBe(1);

    // the timeline: wave 1's gate failed, waves 2-4 never started, then halted, revert started, reverted
    // (SVG elements have no innerText: read their textContent)
    const svgTexts = (sel: string) => page.locator(sel).evaluateAll((els) => els.map((e) => e.textContent));
    const timelineTexts = await svgTexts('#timeline text');
    expect(timelineTexts.filter((t) => t === 'gate failed')).toHaveLength(1);
    expect(timelineTexts.filter((t) => t === 'not started')).toHaveLength(3);
    expect(await svgTexts('#timeline text.milestone')).toEqual(['halted', 'revert started', 'reverted']); // 'halted' marks the failed gate

    // devices by state, and their revert, as the API counts them
    const touched = api.deviceList.filter((d) => d.state !== 'pending');
    expect(touched).toHaveLength(5);
    expect(touched.every((d) => d.wave === 0)).toBe(true);
    for (const [state, n] of Object.entries(api.devices)) expect(await text(`#state-${state}`)).toBe(String(n));
    const reverts: Record<string, number> = {};
    for (const d of api.deviceList) if (d.revertState) reverts[d.revertState] = (reverts[d.revertState] ?? 0) + 1;
    expect(Object.values(reverts).reduce((a, b) => a + b, 0)).toBe(5);
    expect(await text('#revert-states')).toBe(`revert: ${Object.entries(reverts).map(([k, v]) => `${k} ${v}`).join(', ')}`);
    expect(await page.locator('#campaign-devices tbody tr').count()).toBe(5);
  });

  it('charts latency per version on the model view, with v2 twice as slow', async () => {
    await page.goto(`${server.baseUrl}/#/models/tiny`);
    await page.waitForSelector('#model-versions tbody tr', { timeout: 30_000 });
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-model.png'), fullPage: true });
    const all = await page.locator('#model-versions tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
    // v3 is the revert: v1's artifact again under a newer version (lineage.revertOf), once devices report on it
    expect(all.map((r) => r[0]).slice(0, 2)).toEqual(['v1', 'v2']);
    expect(all.length === 2 || (all.length === 3 && all[2][0] === 'v3')).toBe(true);
    const rows = all.slice(0, 2);
    // p95 from the merged histograms: 20 ms and 40 ms, within one 10% bucket
    const p95 = (r: (string | null)[]) => Number.parseFloat(r[4]!);
    expect(p95(rows[0])).toBeGreaterThanOrEqual(20);
    expect(p95(rows[0])).toBeLessThanOrEqual(22);
    expect(p95(rows[1])).toBeGreaterThanOrEqual(40);
    expect(p95(rows[1])).toBeLessThanOrEqual(44);
    expect((await page.locator('#model-p95 text').evaluateAll((els) => els.map((e) => e.textContent))).filter((t) => t === 'v2')).toHaveLength(1);
    expect(await page.locator('#model-p95 polyline, #model-p95 circle').count()).toBe(all.length);
  });

  it('shows a reverted device with its history and telemetry', async () => {
    const api = await getCampaign(server, campaignId);
    const deviceId = api.deviceList.find((d) => d.state !== 'pending')!.deviceId;
    await page.goto(`${server.baseUrl}/#/devices/${deviceId}`);
    await page.waitForSelector('#device-events tbody tr', { timeout: 30_000 });
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-device.png'), fullPage: true });
    expect(await text('#device-title')).toBe(`Device ${deviceId}`);
    const dev = (await server.app.inject({ method: 'GET', url: `/v1/devices/${deviceId}` })).json();
    expect(await page.locator('#device-events tbody tr').count()).toBe(dev.events.length);
    expect(await page.locator('#device-info tbody td').nth(5).innerText()).toBe(`reverted: ${dev.campaign.state}${dev.campaign.reason ? ` (${dev.campaign.reason})` : ''}`);
    expect(await page.locator('#device-p95 polyline, #device-p95 circle').count()).toBeGreaterThanOrEqual(2); // v1 and v2 at least
  });

  it('counts the campaign and the installs in /metrics', async () => {
    const m = (await server.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(m).toContain('fleet_campaigns{state="reverted"} 1');
    expect(m).toContain(`fleet_devices_online{hardware="cam-a"} ${N / 2}`);
    expect(m).toMatch(/fleet_installs_total\{model_id="tiny",version="1"\} 10\n/);
  });
});
