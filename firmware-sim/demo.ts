// The whole system on embedded defaults, in one command (`npm run demo [-- --json] [--devices N]`):
// fleet server (Fastify + embedded aedes + SQLite in a temp folder), keys, the digits model trained,
// quantized to INT8 behind its accuracy gate and signed, a simulated fleet running the real agent,
// one rollout to every device, and a summary.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildServer } from '../server/app.ts';
import { buildDigitsModel, DIGITS_INPUT } from '../server/training/digits.ts';
import { b64 } from '../shared/crypto.ts';
import { newSecret } from '../server/auth/secrets.ts';
import { encodeTensor } from '../shared/tensor-codec.ts';
import { enrollFleet } from './enroll-fleet.ts';
import { SimulatedFleet } from './fleet.ts';

const { values } = parseArgs({ options: { json: { type: 'boolean', default: false }, devices: { type: 'string', default: '24' }, keep: { type: 'boolean', default: false } } });
const deviceCount = Number(values.devices);
if (!Number.isInteger(deviceCount) || deviceCount < 1 || deviceCount > 2000) throw new Error('--devices must be an integer from 1 to 2000');
const say = (line: string) => { if (!values.json) console.log(line); };

const t0 = Date.now();
const dir = mkdtempSync(join(tmpdir(), 'fleet-demo-'));
say(`data folder: ${dir}`);

const digits = await buildDigitsModel();
say(`digits model: 784-128-10 MLP, held-out accuracy ${(digits.heldOutAccuracy * 100).toFixed(2)}% (${digits.cached ? 'cached' : `trained in ${digits.trainSeconds.toFixed(1)} s`})`);

// Auth on, as in production: the demo is the operator, with a bootstrap admin token; devices enroll.
const adminToken = newSecret('apiToken');
const app = await buildServer({ dataDir: join(dir, 'server'), httpPort: 0, mqttPort: 0, logLevel: 'error', bootstrapAdminToken: adminToken });
const authorization = `Bearer ${adminToken}`;
await app.listen({ host: '127.0.0.1', port: 0 });
const baseUrl = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
say(`fleet server: ${baseUrl}, mqtt://127.0.0.1:${app.fleet.broker.port}, root key ${app.fleet.keys.rootKeyId}`);

let fleet: SimulatedFleet | null = null;
try {
  const upload = await app.inject({ method: 'POST', url: '/v1/uploads', headers: { 'content-type': 'application/octet-stream', authorization }, payload: Buffer.from(digits.onnx) });
  if (upload.statusCode !== 201) throw new Error(`upload refused: ${upload.body}`);
  const [n, pixels] = digits.reference.shape;
  const push = await app.inject({
    method: 'POST', url: '/v1/models/digits/bundles', headers: { authorization },
    payload: {
      uploadSha256: upload.json().sha256,
      quantize: 'int8',
      reference: { inputs: { [DIGITS_INPUT]: encodeTensor('float32', [n, pixels], digits.reference.inputs) }, labels: digits.reference.labels },
      lineage: { owner: 'demo' },
    },
  });
  if (push.statusCode !== 201) throw new Error(`bundle refused: ${push.body}`);
  const bundle = push.json();
  const gate = bundle.report.gate;
  say(`bundle digits v${bundle.version}: ${bundle.report.floatBytes} -> ${bundle.report.artifactBytes} bytes (${((bundle.report.artifactBytes / bundle.report.floatBytes) * 100).toFixed(1)}%), gate ${gate.passed ? 'passed' : 'FAILED'}: agreement ${(gate.agreement * 100).toFixed(2)}%, accuracy ${(gate.floatAccuracy * 100).toFixed(2)}% -> ${(gate.quantAccuracy * 100).toFixed(2)}%`);

  const deviceIds = Array.from({ length: deviceCount }, (_, i) => `cam-${String(i).padStart(5, '0')}`);
  // each device makes its Ed25519 key pair in its data folder; only the public keys are registered
  const enrolled = await enrollFleet((o) => app.inject({ ...o, payload: o.payload as object, headers: { authorization } }), join(dir, 'devices'), deviceIds);
  say(`enrolled ${enrolled.devices} devices with key pairs (keys ${enrolled.keygenMs} ms, registration ${enrolled.enrollMs} ms)`);
  fleet = new SimulatedFleet({
    count: deviceCount, baseDir: join(dir, 'devices'), idPrefix: 'cam',
    mqttUrl: `mqtt://127.0.0.1:${app.fleet.broker.port}`, serverUrl: baseUrl, rootPublicKey: b64.encode(app.fleet.keys.rootPublicKey),
    hardware: (i) => (i % 3 === 0 ? 'jetson-nano' : 'rpi4'),
  });
  await fleet.start();
  say(`fleet: ${deviceCount} simulated devices connected`);

  const rolloutStart = Date.now();
  const assigned = await app.inject({ method: 'POST', url: '/v1/assignments', headers: { authorization }, payload: { manifestSha256: bundle.manifestSha256, deviceIds: fleet.agents.map((a) => a.deviceId) } });
  if (assigned.statusCode !== 202) throw new Error(`assignment refused: ${assigned.body}`);
  const final = new Set(['active', 'failed', 'rejected', 'reverted']);
  await fleet.waitAll((s) => s.manifestSha256 === bundle.manifestSha256 && final.has(s.state), 120_000);
  const rolloutMs = Date.now() - rolloutStart;

  // The devices' own code calling the agent: classify held-out digits on a few devices.
  let correct = 0, total = 0;
  for (const agent of fleet.agents.slice(0, 4)) {
    for (let i = 0; i < 50; i++) {
      const out = await agent.infer({ [DIGITS_INPUT]: { data: digits.reference.inputs.subarray(i * pixels, (i + 1) * pixels), dims: [1, pixels] } });
      const probs = Object.values(out)[0].data as Float32Array;
      if (probs.indexOf(Math.max(...probs)) === digits.reference.labels[i]) correct++;
      total++;
    }
  }
  const s = fleet.summary(bundle.manifestSha256);
  const result = {
    devices: s.devices, updated: s.updated, reverted: s.reverted, failed: s.failed + s.rejected, byReason: s.byReason,
    durationMs: Date.now() - t0, rolloutMs,
    model: { modelId: 'digits', version: bundle.version, manifestSha256: bundle.manifestSha256, floatBytes: bundle.report.floatBytes, artifactBytes: bundle.report.artifactBytes, heldOutAccuracy: digits.heldOutAccuracy },
    gate: { passed: gate.passed, agreement: gate.agreement, floatAccuracy: gate.floatAccuracy, quantAccuracy: gate.quantAccuracy },
    onDeviceAccuracy: correct / total,
  };
  say(`rollout: ${s.updated}/${s.devices} devices updated, ${s.reverted} reverted, ${s.failed + s.rejected} failed, in ${rolloutMs} ms`);
  say(`on-device inference: ${correct}/${total} held-out digits right through the agent`);
  say(`done in ${result.durationMs} ms`);
  if (values.json) console.log(JSON.stringify(result));
  process.exitCode = s.updated === s.devices ? 0 : 1;
} finally {
  await fleet?.stop();
  await app.close();
  if (!values.keep) rmSync(dir, { recursive: true, force: true });
}
