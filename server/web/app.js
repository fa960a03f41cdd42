// The fleet page: reads the admin API with the operator's token (kept in this browser only) and offers
// the campaign actions. Everything is written with textContent: no server string becomes markup.
'use strict';
const $ = (id) => document.getElementById(id);
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

function fill(tableId, rows) {
  const tbody = $(tableId).querySelector('tbody');
  tbody.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement('tr');
    for (const c of cells) {
      const td = document.createElement('td');
      if (c instanceof Node) td.append(c); else td.textContent = c == null ? '' : String(c);
      tr.append(td);
    }
    return tr;
  }));
}

function actions(c) {
  const span = document.createElement('span');
  // what the server allows now (the engine's own rule, GET /v1/campaigns: `actions`), never a guess here
  const allowed = c.actions || [];
  for (const a of allowed) {
    const b = document.createElement('button');
    b.textContent = a;
    b.addEventListener('click', async () => {
      if (!confirm(`${a} campaign ${c.campaignId}?`)) return;
      try { await api('POST', `/v1/campaigns/${c.campaignId}/${a}`); } catch (err) { alert(err.message); }
      refresh();
    });
    span.append(b);
  }
  return span;
}

async function refresh() {
  if (!token) { $('status').textContent = 'enter an API token (viewer or above)'; return; }
  try {
    const [c, d, b] = await Promise.all([api('GET', '/v1/campaigns'), api('GET', '/v1/devices?limit=500'), api('GET', '/v1/bundles')]);
    fill('campaigns', c.campaigns.map((x) => [x.campaignId.slice(0, 8), `${x.modelId} v${x.version}`, x.status, `${x.wave}/${x.waves}`,
      Object.entries(x.devices).map(([k, v]) => `${k} ${v}`).join(', '), x.waiting, actions(x)]));
    fill('devices', d.devices.map((x) => [x.deviceId, x.hardware, x.online ? 'yes' : 'no', x.active ? `${x.active.modelId} v${x.active.version}` : x.claimedActive ? `claims ${x.claimedActive.modelId} v${x.claimedActive.version} (unverified)` : '',
      x.freshness ? (x.freshness.stale ? 'STALE' : 'fresh') : '',
      x.lastStatus ? `${x.lastStatus.state}${x.lastStatus.reason ? ` (${x.lastStatus.reason})` : ''}` : '']));
    fill('bundles', b.bundles.map((x) => [x.manifestSha256.slice(0, 16), x.modelId, x.version, x.quantization, x.artifactBytes, x.keyId.slice(0, 12)]));
    $('status').textContent = `updated ${new Date().toLocaleTimeString()}`;
    $('status').className = 'ok';
  } catch (err) {
    $('status').textContent = err.message;
    $('status').className = 'bad';
  }
}

refresh();
setInterval(refresh, 3000);
