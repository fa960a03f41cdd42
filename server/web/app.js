// The fleet page: reads the admin API with the operator's token (kept in this browser only) and offers
// the campaign actions the server says are allowed now (campaign.actions). Views by address:
//   #/                  overview: campaigns, devices, bundles
//   #/campaigns/<id>    waves on a timeline, each gate's figures against its thresholds, devices by state
//   #/models/<modelId>  latency, error rate and drift over time per version (GET /v1/telemetry)
//   #/devices/<id>      the device, its status history and its telemetry per hour
// Every view is polled again every few seconds (live without reloading). Everything is written with
// textContent or SVG attributes: no server string becomes markup. Charts are drawn here, as inline SVG.
'use strict';
const $ = (id) => document.getElementById(id);
const SVG_NS = 'http://www.w3.org/2000/svg';
const POLL_MS = 3000;
// a token may arrive in the fragment (#token=…), which never reaches the server: keep it, then drop it from the address bar
const fromHash = new URLSearchParams(location.hash.slice(1)).get('token');
if (fromHash) { localStorage.setItem('fleetToken', fromHash); history.replaceState(null, '', location.pathname); }
let token = localStorage.getItem('fleetToken') || '';
$('token').value = token;
$('login').addEventListener('submit', (e) => { e.preventDefault(); token = $('token').value.trim(); localStorage.setItem('fleetToken', token); refresh(); });

async function api(method, path) {
  const res = await fetch(path, { method, headers: { authorization: `Bearer ${token}` } });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.message || `${res.status}`);
  return body;
}

// ---- small DOM helpers ------------------------------------------------------------------------

/** el('td', { id, className, href }, child, 'text', …): attributes set as properties, children appended */
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) if (v !== undefined && v !== null) e[k] = v;
  for (const c of children) if (c !== undefined && c !== null) e.append(c instanceof Node ? c : String(c));
  return e;
}

function table(id, headers, rows) {
  return el('table', { id },
    el('thead', null, el('tr', null, ...headers.map((h) => el('th', null, h)))),
    el('tbody', null, ...rows.map((cells) => {
      const tr = el('tr', cells.className ? { className: cells.className } : null);
      for (const c of cells.cells || cells) tr.append(el('td', null, c == null ? '' : c));
      return tr;
    })));
}

const link = (href, text) => el('a', { href }, text);
const fmt = (x, digits = 2) => (x === null || x === undefined ? '–' : Number(x).toFixed(digits));
const pct = (x, digits = 1) => (x === null || x === undefined ? '–' : `${(x * 100).toFixed(digits)}%`);
const short = (s) => (s ? s.slice(0, 8) : '');

function actionButtons(c) {
  const span = el('span', { id: `actions-${c.campaignId}`, className: 'actions' });
  for (const a of c.actions || []) {
    const b = el('button', { type: 'button' }, a);
    b.dataset.action = a;
    b.addEventListener('click', async () => {
      if (!confirm(`${a} campaign ${c.campaignId}?`)) return;
      try { await api('POST', `/v1/campaigns/${c.campaignId}/${a}`); } catch (err) { alert(err.message); }
      refresh();
    });
    span.append(b);
  }
  return span;
}

// ---- charts -----------------------------------------------------------------------------------

const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#4b5563'];

function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

/**
 * A line chart: series = [{ label, points: [{ t: ms, v: number|null }] }]. Points with v null are gaps.
 * One series with one point is drawn as a dot.
 */
function lineChart(id, title, series, unit, opts = {}) {
  const W = 460, H = 180, L = 48, R = 10, T = 20, B = 34;
  const pts = series.flatMap((s) => s.points.filter((p) => p.v !== null && Number.isFinite(p.v)));
  const root = svg('svg', { id, width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title });
  root.append(svg('text', { x: L, y: 13, 'font-weight': 600 }, title));
  if (pts.length === 0) { root.append(svg('text', { x: L, y: H / 2 }, 'no data in this range')); return root; }
  const t0 = Math.min(...pts.map((p) => p.t)), t1 = Math.max(...pts.map((p) => p.t));
  let v1 = Math.max(...pts.map((p) => p.v), opts.threshold ?? -Infinity);
  if (!(v1 > 0)) v1 = 1;
  v1 *= 1.1;
  const x = (t) => L + (t1 === t0 ? (W - L - R) / 2 : ((t - t0) / (t1 - t0)) * (W - L - R));
  const y = (v) => T + (1 - v / v1) * (H - T - B);
  root.append(svg('line', { x1: L, y1: y(0), x2: W - R, y2: y(0), stroke: '#999' }), svg('line', { x1: L, y1: T, x2: L, y2: y(0), stroke: '#999' }));
  root.append(svg('text', { x: 2, y: T + 8 }, `${fmt(v1, v1 < 1 ? 3 : 1)}${unit}`), svg('text', { x: 2, y: y(0) }, `0${unit}`));
  root.append(svg('text', { x: L, y: H - 18 }, new Date(t0).toLocaleTimeString()), svg('text', { x: W - R - 60, y: H - 18 }, new Date(t1).toLocaleTimeString()));
  if (opts.threshold !== undefined) {
    root.append(svg('line', { x1: L, y1: y(opts.threshold), x2: W - R, y2: y(opts.threshold), stroke: '#b00020', 'stroke-dasharray': '4 3' }),
      svg('text', { x: W - R - 90, y: y(opts.threshold) - 3, fill: '#b00020' }, `limit ${opts.threshold}${unit}`));
  }
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const good = s.points.filter((p) => p.v !== null && Number.isFinite(p.v));
    if (good.length === 1) root.append(svg('circle', { cx: x(good[0].t), cy: y(good[0].v), r: 3, fill: color }));
    else if (good.length > 1) root.append(svg('polyline', { fill: 'none', stroke: color, 'stroke-width': 2, points: good.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(' ') }));
    root.append(svg('text', { x: L + i * 110, y: H - 4, fill: color }, s.label));
  });
  return root;
}

// ---- overview ---------------------------------------------------------------------------------

async function overview() {
  const [c, d, b] = await Promise.all([api('GET', '/v1/campaigns'), api('GET', '/v1/devices?limit=500'), api('GET', '/v1/bundles')]);
  return [
    el('h2', null, 'Campaigns'),
    table('campaigns', ['Campaign', 'Model', 'Status', 'Wave', 'Devices', 'Waiting for', 'Actions'], c.campaigns.map((x) => [
      link(`#/campaigns/${x.campaignId}`, x.name || short(x.campaignId)), link(`#/models/${x.modelId}`, `${x.modelId} v${x.version}`),
      el('span', { className: `badge ${x.status}` }, x.status), `${x.wave}/${x.waves}`,
      Object.entries(x.devices).map(([k, v]) => `${k} ${v}`).join(', '), x.waiting, actionButtons(x)])),
    el('h2', null, 'Devices'),
    table('devices', ['Device', 'Hardware', 'Online', 'Active model', 'Freshness', 'Last status'], d.devices.map((x) => [
      link(`#/devices/${x.deviceId}`, x.deviceId), x.hardware, x.online ? 'yes' : 'no',
      x.active ? activeText(x) : x.claimedActive ? `claims ${x.claimedActive.modelId} v${x.claimedActive.version} (unverified)` : '',
      x.freshness ? (x.freshness.stale ? 'STALE' : 'fresh') : '',
      x.lastStatus ? `${x.lastStatus.state}${x.lastStatus.reason ? ` (${x.lastStatus.reason})` : ''}` : ''])),
    el('h2', null, 'Bundles'),
    table('bundles', ['Manifest', 'Model', 'Version', 'Quantization', 'Bytes', 'Key'], b.bundles.map((x) => [
      el('span', { className: 'mono' }, x.manifestSha256.slice(0, 16)), link(`#/models/${x.modelId}`, x.modelId), x.version, x.quantization, x.artifactBytes, x.keyId.slice(0, 12)])),
  ];
}

// ---- campaign ---------------------------------------------------------------------------------

/** Each figure of a gate verdict beside the threshold it is judged against (server/rollouts/decide.ts). */
function gateRows(ev, gates, wave) {
  const f = ev.detail.figures || {};
  const rows = [];
  const row = (check, figure, threshold, failing) => rows.push({ className: failing ? 'fail' : '', cells: [`wave ${ev.detail.wave}`, check, figure, threshold, failing ? 'FAIL' : 'ok'] });
  const bad = (f.failed || 0) + (f.reverted || 0), finished = (f.updated || 0) + bad;
  const rate = finished ? bad / finished : 0;
  row('install failures', `${bad} of ${finished} (${pct(rate)})`, `< ${gates.failureCount} devices or < ${pct(gates.failureRate)}`, bad >= gates.failureCount && rate >= gates.failureRate && finished > 0);
  if (wave) {
    row('devices reporting', String(f.reporting ?? 0), `≥ ${wave.minReporting ?? 0}`, false);
    row('inferences', String(f.inferences ?? 0), `≥ ${wave.minInferences ?? 0}`, false);
  }
  if (f.errorRate !== undefined) row('error rate', pct(f.errorRate, 2), `≤ ${pct(gates.maxErrorRate, 2)}`, f.errorRate > gates.maxErrorRate);
  if (f.p95Ratio !== null && f.p95Ratio !== undefined) {
    row('p95 latency ratio', `${fmt(f.p95Ratio)}x (${fmt(f.p95New)} / ${fmt(f.p95Old)} ms)`, `≤ ${gates.maxP95Ratio}x`, f.p95Ratio > gates.maxP95Ratio && f.p95New - f.p95Old >= gates.minLatencyDeltaMs);
    row('p99 latency ratio', `${fmt(f.p99Ratio)}x (${fmt(f.p99New)} / ${fmt(f.p99Old)} ms)`, `≤ ${gates.maxP99Ratio}x`, f.p99Ratio > gates.maxP99Ratio && f.p99New - f.p99Old >= gates.minLatencyDeltaMs);
  } else {
    row('p95 latency ratio', 'no previous model to compare', `≤ ${gates.maxP95Ratio}x`, false);
  }
  for (const [k, v] of Object.entries(f)) {
    if (!k.startsWith('psi:')) continue;
    const limit = gates.haltOnDrift === 'never' ? null : gates.haltOnDrift === 'critical' ? gates.psi.critical : gates.psi.alert;
    row(`drift ${k.slice(4)} (PSI)`, fmt(v, 3), limit === null ? 'not judged' : `< ${limit}`, limit !== null && v >= limit);
  }
  return rows;
}

function timeline(c, events) {
  const W = 900, rowH = 26, L = 70;
  const t0 = Date.parse(c.createdAt);
  const times = events.map((e) => Date.parse(e.ts));
  const end = Math.max(Date.now(), ...times);
  const x = (t) => L + ((t - t0) / Math.max(end - t0, 1)) * (W - L - 10);
  const root = svg('svg', { id: 'timeline', width: W, height: (c.waves + 2) * rowH + 10, viewBox: `0 0 ${W} ${(c.waves + 2) * rowH + 10}` });
  const starts = new Map(), ends = new Map(), outcome = new Map();
  for (const e of events) {
    const w = e.detail && e.detail.wave;
    if (e.type === 'wave_started' && !starts.has(w)) starts.set(w, Date.parse(e.ts));
    if ((e.type === 'gate_passed' || e.type === 'gate_failed') && w) { ends.set(w, Date.parse(e.ts)); outcome.set(w, e.type === 'gate_passed' ? 'passed' : 'failed'); }
  }
  for (let w = 1; w <= c.waves; w++) {
    const yTop = 6 + (w - 1) * rowH;
    root.append(svg('text', { x: 2, y: yTop + 15 }, `wave ${w}`));
    if (!starts.has(w)) { root.append(svg('text', { x: L, y: yTop + 15, fill: '#999' }, 'not started')); continue; }
    const s = starts.get(w), e = ends.get(w) ?? (c.wave === w && c.status === 'running' ? end : s);
    const out = outcome.get(w) || (c.wave === w ? c.status : 'started');
    const color = out === 'passed' ? '#16a34a' : out === 'failed' ? '#dc2626' : '#2563eb';
    root.append(svg('rect', { x: x(s), y: yTop + 3, width: Math.max(x(e) - x(s), 4), height: rowH - 8, fill: color, opacity: 0.8 }));
    root.append(svg('text', { x: Math.min(x(e) + 6, W - 120), y: yTop + 15, 'data-wave': w }, out === 'passed' ? 'gate passed' : out === 'failed' ? 'gate failed' : out));
  }
  // the campaign's own milestones on one line below the waves
  const yM = 6 + c.waves * rowH;
  root.append(svg('text', { x: 2, y: yM + 15 }, 'events'));
  // a failed gate halts the campaign (then the engine reverts at once, or waits for the operator and logs 'halted')
  const marks = events.filter((e) => ['gate_failed', 'revert_started', 'reverted', 'completed', 'manual_action'].includes(e.type));
  marks.forEach((e, i) => {
    const label = e.type === 'manual_action' ? e.detail.action : e.type === 'revert_started' ? 'revert started' : e.type === 'gate_failed' ? 'halted' : e.type;
    const color = e.type === 'completed' ? '#16a34a' : '#b00020';
    root.append(svg('circle', { cx: x(Date.parse(e.ts)), cy: yM + 11, r: 4, fill: color }));
    root.append(svg('text', { x: Math.min(x(Date.parse(e.ts)) + 6, W - 110), y: yM + 15 + (i % 2) * 12, class: 'milestone' }, label));
  });
  return root;
}

/** One line on why and how a campaign stopped: the halt, and the revert that followed. */
function haltSummary(events) {
  const failed = events.find((e) => e.type === 'gate_failed');
  if (!failed) return null;
  const parts = [`Halted at wave ${failed.detail.wave}: its gate failed at ${new Date(failed.ts).toLocaleTimeString()}`];
  const started = events.find((e) => e.type === 'revert_started');
  if (started) parts.push(`revert started by ${started.actor}`);
  const done = events.find((e) => e.type === 'reverted');
  if (done) {
    const { durationMs, ...counts } = done.detail || {};
    parts.push(`reverted (${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', ')}) in ${(durationMs / 1000).toFixed(1)} s`);
  }
  return parts.join('; ');
}

async function campaignView(id) {
  const [c, ev] = await Promise.all([api('GET', `/v1/campaigns/${id}`), api('GET', `/v1/campaigns/${id}/events`)]);
  const events = ev.events;
  const gates = c.config.gates;
  const gateEvents = events.filter((e) => e.type === 'gate_failed' || e.type === 'gate_passed');
  const states = Object.entries(c.devices).map(([k, v]) => el('div', { className: 'card' }, el('b', { id: `state-${k}` }, v), k));
  const byRevert = {};
  for (const d of c.deviceList) if (d.revertState) byRevert[d.revertState] = (byRevert[d.revertState] || 0) + 1;
  const halt = haltSummary(events);
  const failures = gateEvents.filter((e) => e.type === 'gate_failed').flatMap((e) => (e.detail.failures || []).map((f) => el('li', null, `wave ${e.detail.wave}: ${f}`)));
  return [
    // [#19] a release campaign names its release and links every model of it
    el('h2', { id: 'campaign-title' }, `Campaign ${c.name || short(c.campaignId)}: `, ...(c.release
      ? [`release ${c.release.name} v${c.release.version} (`, ...c.release.models.flatMap((m, i) => [i ? ', ' : '', link(`#/models/${m.modelId}`, `${m.modelId} v${m.version}`)]), ')']
      : [link(`#/models/${c.modelId}`, `${c.modelId} v${c.version}`)])),
    el('p', null, 'Status ', el('span', { id: 'campaign-status', className: `badge ${c.status}` }, c.status), ` · wave ${c.wave} of ${c.waves}`,
      c.waiting ? el('span', { id: 'campaign-waiting' }, ` · waiting for ${c.waiting}`) : null,
      c.deviceWaits && Object.keys(c.deviceWaits).length ? el('span', { id: 'campaign-device-waits' }, ` · devices waiting for their window or conditions: ${Object.entries(c.deviceWaits).map(([k, v]) => `${k} ${v}`).join(', ')}`) : null),
    halt ? el('p', { id: 'campaign-halt', className: 'bad' }, halt) : null,
    el('p', null, 'Actions allowed now: ', c.actions && c.actions.length ? actionButtons(c) : el('span', { id: `actions-${c.campaignId}` }, 'none')),
    el('h3', null, 'Waves'), timeline(c, events),
    el('h3', null, 'Gates'),
    failures.length ? el('ul', { id: 'gate-failures', className: 'bad' }, ...failures) : null,
    table('gates', ['Wave', 'Check', 'Figure', 'Threshold', 'Result'], gateEvents.flatMap((e) => gateRows(e, gates, c.config.waves[e.detail.wave - 1]))),
    // shadow mode (issue 17): each wave run in shadow, its figures per hardware group
    c.shadow && c.shadow.length ? el('h3', null, 'Shadow') : null,
    c.shadow && c.shadow.length ? table('campaign-shadow', ['Wave', 'State', 'Hardware', 'Devices', 'Compared', 'Agreement', 'Latency ratio', 'Error rate'],
      c.shadow.flatMap((w) => w.groups.length ? w.groups.map((g) => [w.wave, w.state, g.hardware || '(unknown)', g.devices, g.samples, fig(g.agreement), fig(g.latencyRatio), fig(g.errorRate)])
        : [[w.wave, w.state, '', w.devices, w.samples, '', '', '']])) : null,
    el('h3', null, 'Devices by state'), el('div', { className: 'cards', id: 'device-states' }, ...states),
    Object.keys(byRevert).length ? el('p', { id: 'revert-states' }, 'revert: ', Object.entries(byRevert).map(([k, v]) => `${k} ${v}`).join(', ')) : null,
    table('campaign-devices', ['Device', 'Wave', 'State', 'Reason', 'Revert', 'Attempts'], c.deviceList.filter((d) => d.state !== 'pending').map((d) => ({
      className: d.state === 'failed' || d.state === 'reverted' ? 'fail' : '',
      cells: [link(`#/devices/${d.deviceId}`, d.deviceId), d.wave + 1, d.state, d.reason, d.revertState, d.attempts],
    }))),
    el('p', null, `${c.deviceList.filter((d) => d.state === 'pending').length} devices not yet in a wave.`),
    el('h3', null, 'Events'),
    table('campaign-events', ['Time', 'Event', 'By', 'Detail'], events.slice().reverse().map((e) => [
      new Date(e.ts).toLocaleTimeString(), e.type, e.actor, el('span', { className: 'mono' }, JSON.stringify(e.type === 'created' ? { devices: e.detail.devices } : e.detail).slice(0, 300))])),
  ];
}

// ---- model ------------------------------------------------------------------------------------

const RANGES = { '1h': { ms: 3600e3, bucket: 'minute' }, '24h': { ms: 86400e3, bucket: 'hour' }, '7d': { ms: 7 * 86400e3, bucket: 'hour' } };
let modelRange = '1h';

function telemetryCharts(prefix, series, label) {
  const chart = (what, title, unit, value, threshold) => lineChart(`${prefix}-${what}`, title,
    series.map((s) => ({ label: label(s), points: s.points.map((p) => ({ t: Date.parse(p.t), v: value(p) })) })), unit, threshold === undefined ? {} : { threshold });
  return el('div', { className: 'charts' },
    chart('p95', 'p95 latency', ' ms', (p) => p.p95),
    chart('errors', 'error rate', '%', (p) => (p.errorRate === null ? null : p.errorRate * 100)),
    chart('drift', 'drift (largest PSI)', '', (p) => (p.drift.length ? Math.max(...p.drift.map((d) => d.psi)) : null), 0.2),
    chart('count', 'inferences', '', (p) => p.count));
}

async function modelView(modelId) {
  const r = RANGES[modelRange];
  const to = new Date(), from = new Date(to.getTime() - r.ms);
  const t = await api('GET', `/v1/telemetry?modelId=${encodeURIComponent(modelId)}&bucket=${r.bucket}&from=${from.toISOString()}&to=${to.toISOString()}`);
  const picker = el('p', null, 'Range: ', ...Object.keys(RANGES).map((k) => {
    const b = el('button', { type: 'button', disabled: k === modelRange }, k);
    b.addEventListener('click', () => { modelRange = k; refresh(); });
    return b;
  }));
  return [
    el('h2', { id: 'model-title' }, `Model ${modelId}`), picker,
    telemetryCharts('model', t.series, (s) => `v${s.version}`),
    el('h3', null, `Per version, last ${modelRange}`),
    table('model-versions', ['Version', 'Inferences', 'Error rate', 'p50', 'p95', 'p99', 'Drift (PSI)'], t.series.map((s) => [
      `v${s.version}`, s.total.count, pct(s.total.errorRate, 2), `${fmt(s.total.p50)} ms`, `${fmt(s.total.p95)} ms`, `${fmt(s.total.p99)} ms`,
      s.total.drift.map((d) => `${d.name} ${fmt(d.psi, 3)}`).join(', ')])),
  ];
}

// ---- device -----------------------------------------------------------------------------------

/** a figure to 4 decimals, or nothing */
function fig(x) { return typeof x === 'number' ? x.toFixed(4) : ''; }

/** a device's active model, or every model it runs (issue 19: the primary first, and the release they are) */
function activeText(x) {
  if (x.models && x.models.length > 1) return `${x.models.map((m) => `${m.modelId} v${m.version}${m.unverified ? ' (unverified)' : ''}`).join(', ')}${x.release ? ` (release ${x.release.name} v${x.release.version})` : ''}`;
  return x.active ? `${x.active.modelId} v${x.active.version}` : '';
}

async function deviceView(deviceId) {
  const to = new Date(), from = new Date(to.getTime() - 7 * 86400e3);
  const [d, t] = await Promise.all([
    api('GET', `/v1/devices/${encodeURIComponent(deviceId)}`),
    api('GET', `/v1/telemetry?deviceId=${encodeURIComponent(deviceId)}&bucket=hour&from=${from.toISOString()}&to=${to.toISOString()}`),
  ]);
  return [
    el('h2', { id: 'device-title' }, `Device ${d.deviceId}`),
    table('device-info', ['Hardware', 'Online', 'Active model', 'Agent', 'Last seen', 'Campaign'], [[
      d.hardware, d.online ? 'yes' : 'no', activeText(d), d.agentVersion, d.lastSeen,
      d.campaign ? link(`#/campaigns/${d.campaign.campaignId}`, `${d.campaign.campaignStatus}: ${d.campaign.state}${d.campaign.reason ? ` (${d.campaign.reason})` : ''}`) : '']]),
    // [#19] a device running several models: each model's (and the chain's) telemetry, last hour
    d.modelTelemetry ? el('h3', null, 'Per model, last hour') : null,
    d.modelTelemetry ? table('device-model-telemetry', ['Model', 'Manifest', 'Calls', 'Errors', 'p50 ms', 'p95 ms', 'p99 ms', 'Max ms'], [
      ...d.modelTelemetry.models.map((m) => [m.modelId, short(m.manifestSha256), m.count, m.errors, fmt(m.p50), fmt(m.p95), fmt(m.p99), fmt(m.maxMs)]),
      ...(d.modelTelemetry.chain ? [['chain', '', d.modelTelemetry.chain.count, d.modelTelemetry.chain.errors, fmt(d.modelTelemetry.chain.p50), fmt(d.modelTelemetry.chain.p95), fmt(d.modelTelemetry.chain.p99), fmt(d.modelTelemetry.chain.maxMs)]] : []),
    ]) : null,
    // shadow mode (issue 17): the candidate the device holds and its figures since it loaded it
    d.shadow ? el('h3', null, 'Shadow') : null,
    d.shadow ? table('device-shadow', ['Candidate', 'State', 'Since', 'Sample rate', 'Compared', 'Dropped', 'Errors', 'Agreement', 'Latency ratio'], [[
      `${d.shadow.modelId} v${d.shadow.version}`, `${d.shadow.state}${d.shadow.reason ? ` (${d.shadow.reason})` : ''}`, d.shadow.since, d.shadow.sampleRate,
      d.shadow.samples, d.shadow.dropped, d.shadow.errors, fig(d.shadow.agreement), fig(d.shadow.latencyRatio)]]) : null,
    el('h3', null, 'Telemetry per hour, last 7 days'),
    telemetryCharts('device', t.series, (s) => `${s.modelId} v${s.version}`),
    el('h3', null, 'History'),
    table('device-events', ['Time', 'State', 'Reason', 'Detail'], d.events.map((e) => [e.ts, e.state, e.reason, e.detail])),
  ];
}

// ---- routing and polling ----------------------------------------------------------------------

function route() {
  const m = /^#\/(campaigns|models|devices)\/([^/?#]+)/.exec(location.hash);
  if (!m) return () => overview();
  const id = decodeURIComponent(m[2]);
  return { campaigns: () => campaignView(id), models: () => modelView(id), devices: () => deviceView(id) }[m[1]];
}

let busy = false;
async function refresh() {
  if (!token) { $('status').textContent = 'enter an API token (viewer or above)'; return; }
  if (busy) return;
  busy = true;
  try {
    const nodes = await route()();
    $('view').replaceChildren(...nodes.filter(Boolean));
    $('status').textContent = `updated ${new Date().toLocaleTimeString()}`;
    $('status').className = 'ok';
  } catch (err) {
    $('status').textContent = err.message;
    $('status').className = 'bad';
  } finally {
    busy = false;
  }
}

window.addEventListener('hashchange', refresh);
refresh();
setInterval(refresh, POLL_MS);
