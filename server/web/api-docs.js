// The API reference: reads /openapi.json (generated from shared/api/) and renders every operation with
// its parameters, body and responses, and a form to try it with the operator's token. No framework,
// no CDN: the page works offline on the machine that serves it.
'use strict';
const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const k of kids) e.append(k);
  return e;
};
let token = localStorage.getItem('fleetToken') || '';
$('token').value = token;
$('login').addEventListener('submit', (e) => { e.preventDefault(); token = $('token').value.trim(); localStorage.setItem('fleetToken', token); });

let doc;
const resolve = (s) => (s && s.$ref ? doc.components.schemas[s.$ref.split('/').pop()] : s);

/** A plausible example value for a JSON schema: defaults first, then the first enum value, then by type. */
function example(schema, depth = 0) {
  const s = resolve(schema) || {};
  if (depth > 6) return null;
  if (s.default !== undefined) return s.default;
  if (s.const !== undefined) return s.const;
  if (s.enum) return s.enum[0];
  if (s.anyOf || s.oneOf) return example((s.anyOf || s.oneOf)[0], depth + 1);
  const type = Array.isArray(s.type) ? s.type[0] : s.type;
  if (type === 'object') {
    const out = {};
    for (const k of s.required || []) out[k] = example(s.properties[k], depth + 1);
    return out;
  }
  if (type === 'array') return [example(s.items, depth + 1)];
  if (type === 'integer' || type === 'number') return s.minimum !== undefined && s.minimum > -1e15 ? s.minimum : 0;
  if (type === 'boolean') return false;
  if (type === 'string') return s.format === 'binary' ? '' : 'string';
  return null;
}

function operation(path, method, op) {
  const inputs = {};
  const params = el('div');
  for (const p of op.parameters || []) {
    const input = el('input', { size: '70', placeholder: p.required ? 'required' : 'optional' });
    inputs[`${p.in}:${p.name}`] = input;
    params.append(el('label', {}, `${p.in} ${p.name} `, input, p.description ? ` ${p.description}` : ''));
  }
  const json = op.requestBody && op.requestBody.content['application/json'];
  const bodyBox = json ? el('textarea', {}) : null;
  if (bodyBox) bodyBox.value = JSON.stringify(example(json.schema), null, 2);
  const out = el('pre', {}, '');
  const send = el('button', {}, 'Send');
  send.addEventListener('click', async () => {
    let url = path.replace(/\{(\w+)\}/g, (_, name) => encodeURIComponent(inputs[`path:${name}`].value.trim()));
    const q = new URLSearchParams();
    for (const [k, input] of Object.entries(inputs)) if (k.startsWith('query:') && input.value.trim()) q.set(k.slice(6), input.value.trim());
    if ([...q].length) url += `?${q}`;
    const headers = token ? { authorization: `Bearer ${token}` } : {};
    if (bodyBox) headers['content-type'] = 'application/json';
    out.textContent = '…';
    try {
      const res = await fetch(url, { method: method.toUpperCase(), headers, body: bodyBox ? bodyBox.value : undefined });
      const type = res.headers.get('content-type') || '';
      const text = type.includes('json') ? JSON.stringify(await res.json(), null, 2) : type.startsWith('text/') ? (await res.text()).slice(0, 2000) : `(${type}, ${(await res.arrayBuffer()).byteLength} bytes)`;
      out.className = res.ok ? 'ok' : 'bad';
      out.textContent = `HTTP ${res.status}\n${text}`;
    } catch (err) {
      out.className = 'bad';
      out.textContent = String(err);
    }
  });
  const responses = Object.entries(op.responses).map(([status, r]) => {
    const [type, c] = Object.entries(r.content || {})[0] || ['', {}];
    return el('details', {}, el('summary', {}, `${status} ${type}`), el('pre', {}, JSON.stringify(resolve(c.schema), null, 2)));
  });
  return el('details', {},
    el('summary', {}, el('span', { class: `m ${method.toUpperCase()}` }, method.toUpperCase()), el('span', { class: 'path' }, path), ` ${op.summary}`, el('span', { class: 'access' }, op['x-access'])),
    el('div', { class: 'body' },
      op.description ? el('p', {}, op.description) : '',
      params,
      json ? el('div', {}, el('p', {}, 'JSON body (an example made from the schema: edit it)'), bodyBox, el('details', {}, el('summary', {}, 'body schema'), el('pre', {}, JSON.stringify(resolve(json.schema), null, 2)))) : '',
      op.requestBody && op.requestBody.content['application/octet-stream'] ? el('p', {}, 'Raw body (application/octet-stream): use fleetctl push or curl --data-binary.') : '',
      el('p', {}, 'Responses'), ...responses,
      op.requestBody && !json ? '' : send, out));
}

async function main() {
  doc = await (await fetch('/openapi.json')).json();
  const byTag = new Map();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags && op.tags[0]) || 'other';
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operation(path, method, op));
    }
  }
  $('ops').textContent = '';
  for (const [tag, ops] of byTag) $('ops').append(el('h2', {}, tag), ...ops);
}
main().catch((err) => { $('ops').textContent = `cannot read /openapi.json: ${err}`; });
