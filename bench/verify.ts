// Verification throughput: what the agent does to accept one update, in MB/s of artifact, next to
// hashing the same bytes with node:crypto alone. The agent's path (device-agent/agent.ts applyDesired,
// artifact-fetch.ts, downloader.ts) is: parse the DesiredMessage (zod), verifyDesired with the agent's
// signature cache holding only its current key set (seen at an earlier update; the director's desired
// state and the manifest are new bytes and are verified: two Ed25519 checks), then the artifact's bytes
// as the downloader receives them (64 KiB chunks copied into the agent's own buffer and hashed as they
// arrive; the file is never read back), and the length and SHA-256 check against the manifest. The
// baseline reads the file from the page cache and hashes it: both get the bytes into memory once. The difference is the per-update trust work, which does
// not grow with the artifact, so the ratio is lowest for small artifacts.
// Artifacts: the digits model (float ONNX from build/digits) and a 4 MiB file. Each repetition runs a
// path for ~150 ms; medians over repetitions, the two paths interleaved. Rates are per second of this
// process's CPU time (headline) and of wall time (the machine is shared; CPU time is the stable one).
// Also, as context: Ed25519 verifications per second, node:crypto (every hot path) vs tweetnacl.
// Run alone: npx tsx bench/verify.ts [--reps N]
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { b64, generateKeyPair, keyIdOf, sha256Hex, verifyBytes, type Ed25519Impl, type KeyPair } from '../shared/crypto.ts';
import { envelopeDigest, envelopeSignatureValid, parseSigned, signDocument, type SigningKey } from '../shared/envelope.ts';
import { DesiredMessage, DesiredState, Manifest, type KeySet } from '../shared/messages.ts';
import { encodeTensor } from '../shared/tensor-codec.ts';
import { SignatureCache, verifyDesired, verifyKeySet, type TrustState } from '../shared/verify-desired.ts';
import { ReceivedArtifact } from '../device-agent/downloader.ts';
import { AGENT_VERSION, ONNXRUNTIME_WEB_RANGE } from '../shared/version.ts';
import { buildDigitsModel, DIGITS_INPUT, DIGITS_OUTPUT } from '../server/training/digits.ts';
import { cpuCount, isMain, median, round, runAlone, withTempDir } from './util.ts';

export interface BenchVerifyOptions { repetitions?: number; msPerRepetition?: number; largeBytes?: number }

const CHUNK = 64 * 1024;
const DEVICE = { deviceId: 'bench-verify-1', hardware: 'rpi4', agentVersion: AGENT_VERSION };

export async function benchVerify(opts: BenchVerifyOptions = {}) {
  const reps = opts.repetitions ?? 9;
  const msPerRep = opts.msPerRepetition ?? 150;
  const largeBytes = opts.largeBytes ?? 4 * 1024 * 1024;
  const digits = await buildDigitsModel();

  return withTempDir('fleet-bench-verify-', async (dir) => {
    const large = join(dir, 'artifact-4mib.onnx');
    writeFileSync(large, randomBytes(largeBytes));
    const keys = makeKeys();
    const artifacts = { digits: digits.paths.onnx, large4MiB: large };

    const sizes: Record<string, object> = {};
    let manifestText = '';
    for (const [name, path] of Object.entries(artifacts)) {
      const bytes = readFileSync(path);
      const msg = signedDesiredMessage(keys, { sha256: sha256Hex(bytes), length: bytes.length }, digits.reference.inputs.subarray(0, 784));
      manifestText = msg.manifest.signed;
      const payload = Buffer.from(JSON.stringify(msg)); // what arrives on the desired topic
      const trust: TrustState = { rootPublicKey: keys.root.publicKey, keysetVersion: 0, lastSeq: 0, versionFloors: {}, timeFloor: 0 };

      const rootKeyId = keyIdOf(keys.root.publicKey);
      // the device's cache as it stands at an update: its current key set verified earlier, nothing else
      const deviceCache = () => { const c = new SignatureCache(64); c.add(c.key(rootKeyId, msg.keyset)); return c; };
      const agentPath = () => {
        const parsed = DesiredMessage.safeParse(JSON.parse(payload.toString('utf8')));
        if (!parsed.success) throw new Error('bench: the desired message does not parse');
        const v = verifyDesired(parsed.data, trust, DEVICE, Date.now(), deviceCache());
        const received = new ReceivedArtifact(v.manifest.artifact.length);
        received.reset(null);
        for (let o = 0; o < bytes.length; o += CHUNK) received.append(bytes.subarray(o, o + CHUNK));
        const got = received.finish();
        if (got.data.byteLength !== v.manifest.artifact.length) throw new Error('bench: length mismatch');
        if (got.sha256 !== v.manifest.artifact.sha256) throw new Error('bench: hash mismatch');
      };
      const rawHash = () => { createHash('sha256').update(readFileSync(path)).digest('hex'); };
      // the trust work alone, to show what the difference is made of
      const trustOnly = () => { verifyDesired(DesiredMessage.parse(JSON.parse(payload.toString('utf8'))), trust, DEVICE, Date.now(), deviceCache()); };
      // the same with no cache at all (the first update after a key-set rotation: three checks)
      const trustCold = () => { verifyDesired(DesiredMessage.parse(JSON.parse(payload.toString('utf8'))), trust, DEVICE, Date.now()); };

      // MB per second of wall time, and per second of this process's CPU time: the machine is shared
      // and noisy, and CPU time is what a preempted run does not inflate (on an idle core they agree).
      const measure = (fn: () => void) => {
        let n = 0;
        const t0 = performance.now(), c0 = process.cpuUsage();
        while (performance.now() - t0 < msPerRep) { fn(); n++; }
        const c = process.cpuUsage(c0), mb = (n * bytes.length) / 1e6;
        return { wall: mb / ((performance.now() - t0) / 1000), cpu: mb / ((c.user + c.system) / 1e6) };
      };
      measure(agentPath); measure(rawHash); // warm-up
      const agent: { wall: number; cpu: number }[] = [], raw: { wall: number; cpu: number }[] = [];
      for (let r = 0; r < reps; r++) {
        if (r % 2 === 0) { agent.push(measure(agentPath)); raw.push(measure(rawHash)); }
        else { raw.push(measure(rawHash)); agent.push(measure(agentPath)); }
      }
      const trustUs: number[] = [], coldUs: number[] = [];
      for (let r = 0; r < reps; r++) {
        for (const [fn, out] of [[trustOnly, trustUs], [trustCold, coldUs]] as const) {
          const c0 = process.cpuUsage();
          for (let i = 0; i < 100; i++) fn();
          const c = process.cpuUsage(c0);
          out.push((c.user + c.system) / 100);
        }
      }
      // issue 13: what the per-update trust checks are made of (CPU µs each, medians over repetitions of 100)
      const parsedMsg = DesiredMessage.parse(JSON.parse(payload.toString('utf8')));
      const directorKey = keys.director.publicKey, targetsKey = keys.targets.publicKey;
      const steps: Record<string, () => void> = {
        messageJsonAndSchema: () => { DesiredMessage.safeParse(JSON.parse(payload.toString('utf8'))); },
        keysetFromCache: () => { verifyKeySet(parsedMsg.keyset, trust, Date.now(), keysetCache); },
        directorEd25519: () => { envelopeSignatureValid(parsedMsg.director, directorKey); },
        desiredStateJsonAndSchema: () => { parseSigned(parsedMsg.director, DesiredState, 'desired state'); },
        manifestSha256: () => { envelopeDigest(parsedMsg.manifest); },
        manifestEd25519: () => { envelopeSignatureValid(parsedMsg.manifest, targetsKey); },
        manifestJsonAndSchema: () => { parseSigned(parsedMsg.manifest, Manifest, 'manifest'); },
      };
      const keysetCache = deviceCache();
      const stepUs: Record<string, number[]> = Object.fromEntries(Object.keys(steps).map((k) => [k, []]));
      for (let r = 0; r < reps; r++) {
        for (const [k, fn] of Object.entries(steps)) {
          const c0 = process.cpuUsage();
          for (let i = 0; i < 100; i++) fn();
          const c = process.cpuUsage(c0);
          stepUs[k].push((c.user + c.system) / 100);
        }
      }
      const trustBreakdownUs = Object.fromEntries(Object.entries(stepUs).map(([k, xs]) => [k, round(median(xs))]));
      const med = (xs: { wall: number; cpu: number }[], k: 'wall' | 'cpu') => median(xs.map((x) => x[k]));
      sizes[name] = {
        artifactBytes: bytes.length,
        // by CPU time (the headline: stable under other load)
        agentVerifyMBps: round(med(agent, 'cpu')), rawHashMBps: round(med(raw, 'cpu')), verifyVsRawHash: round(med(agent, 'cpu') / med(raw, 'cpu')),
        // by wall time, same repetitions
        wall: { agentVerifyMBps: round(med(agent, 'wall')), rawHashMBps: round(med(raw, 'wall')), verifyVsRawHash: round(med(agent, 'wall') / med(raw, 'wall')) },
        // per update, independent of the artifact: parse + the desired state's and the manifest's signature
        // checks + the documents' schemas (CPU µs); cold: also the key set's (first update after a rotation)
        trustChecksUsPerUpdate: round(median(trustUs)),
        trustChecksUsFirstUpdateAfterRotation: round(median(coldUs)),
        // the steps of trustChecksUsPerUpdate, each timed alone (their sum is close to it, not equal)
        trustBreakdownUs,
        // what hashing the artifact alone costs, for scale (CPU µs)
        rawHashUs: round(bytes.length / med(raw, 'cpu')),
        // the best verifyVsRawHash this artifact can reach while every trust check runs: hashing is all the
        // baseline does, and the agent hashes the same bytes plus the per-update checks (issue 13's floor)
        ceilingWithTrustChecks: round((bytes.length / med(raw, 'cpu')) / (bytes.length / med(raw, 'cpu') + median(trustUs))),
        desiredMessageBytes: payload.length,
      };
    }

    return {
      ...sizes,
      target: 'verifyVsRawHash >= 0.9',
      floor: 'two Ed25519 verifications of new bytes per update (desired state, manifest) are never skipped: at ~140 µs each here, a 408 KB artifact (~300 µs to hash) cannot reach 0.9. Each size\'s ceilingWithTrustChecks = rawHashUs / (rawHashUs + trustChecksUsPerUpdate) is the ratio with everything but the trust checks free: reaching 0.9 needs an artifact that takes 9x the trust checks to hash (~4 MB here)',
      signatureVerifiesPerSecond: signatureRates(manifestText, keys.targets),
      runs: { repetitions: reps, msPerRepetition: msPerRep, timing: 'MB/s by process CPU time (headline) and by wall time', artifactBytes: 'the baseline reads the file (page cache) and hashes it; the agent receives the same bytes in chunks into its own buffer and hashes them as they arrive (it never reads the file back)', chunkBytes: CHUNK, signatureCache: 'the device\'s current key set only (desired state and manifest are new bytes)' },
      cpus: cpuCount(),
    };
  });
}

interface Keys { root: KeyPair; targets: SigningKey; director: SigningKey }

export function makeKeys(): Keys {
  const signing = (kp: KeyPair): SigningKey => ({ keyId: keyIdOf(kp.publicKey), seed: kp.seed, publicKey: kp.publicKey });
  return { root: generateKeyPair(), targets: signing(generateKeyPair()), director: signing(generateKeyPair()) };
}

/** A DesiredMessage as the server publishes it: root-signed key set, targets-signed manifest, director-signed desired state. */
export function signedDesiredMessage(keys: Keys, artifact: { sha256: string; length: number }, sample: Float32Array): DesiredMessage {
  const now = Date.now();
  const iso = (ms: number) => new Date(ms).toISOString();
  const root: SigningKey = { keyId: keyIdOf(keys.root.publicKey), seed: keys.root.seed, publicKey: keys.root.publicKey };
  const keyset: KeySet = {
    type: 'keyset', version: 1, issuedAt: iso(now), expires: iso(now + 365 * 86400_000), revoked: [],
    keys: [
      { keyId: keys.targets.keyId, publicKey: b64.encode(keys.targets.publicKey), roles: ['targets'] },
      { keyId: keys.director.keyId, publicKey: b64.encode(keys.director.publicKey), roles: ['director'] },
    ],
  };
  // Like the server's: one golden vector of a real digit (784 floats) and its 10 outputs, a drift baseline.
  const manifest: Manifest = {
    type: 'manifest', modelId: 'digits', version: 1,
    artifact: { ...artifact, format: 'onnx' },
    quantization: { scheme: 'int8-weight-symmetric', perChannel: true, sessionConfig: { 'session.disable_quant_qdq': '1' }, quantizedOps: 2, skippedOps: 0 },
    io: { inputs: [{ name: DIGITS_INPUT, type: 'float32', shape: ['N', 784] }], outputs: [{ name: DIGITS_OUTPUT, type: 'float32', shape: ['N', 10] }] },
    runtime: { onnxruntimeWeb: ONNXRUNTIME_WEB_RANGE, minAgentVersion: AGENT_VERSION },
    hardwareTargets: ['rpi4', 'jetson-nano'],
    healthCheck: {
      vectors: [{ inputs: { [DIGITS_INPUT]: encodeTensor('float32', [1, 784], sample) }, outputs: { [DIGITS_OUTPUT]: encodeTensor('float32', [1, 10], new Float32Array(10).fill(0.1)) } }],
      atol: 1e-4, rtol: 1e-3, latencyBudgetMs: 250,
    },
    driftBaseline: {
      inputs: { [DIGITS_INPUT]: { kind: 'values', edges: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], counts: new Array(10).fill(100) } },
      outputs: { [DIGITS_OUTPUT]: { kind: 'argmax', edges: [], counts: new Array(10).fill(50) } },
    },
    lineage: { owner: 'bench' },
    issuedAt: iso(now), expires: iso(now + 365 * 86400_000),
  };
  const keysetEnv = signDocument(keyset, root);
  const manifestEnv = signDocument(manifest, keys.targets);
  const director = signDocument({
    type: 'desired', deviceId: DEVICE.deviceId, seq: 1, issuedAt: iso(now), expires: iso(now + 7 * 86400_000),
    modelId: 'digits', version: 1, manifestSha256: envelopeDigest(manifestEnv),
  }, keys.director);
  return { keyset: keysetEnv, manifest: manifestEnv, director };
}

/** Ed25519 verifications per CPU second of a manifest's signed bytes; medians of 3 timed repetitions each. */
function signatureRates(manifestText: string, key: SigningKey) {
  const message = Buffer.from(manifestText, 'utf8');
  const sig = Buffer.from(signDocument(JSON.parse(manifestText), key).sig, 'base64');
  // per second of CPU time, as above
  const rate = (impl: Ed25519Impl, ms: number) => {
    let n = 0;
    const t0 = performance.now(), c0 = process.cpuUsage();
    while (performance.now() - t0 < ms) {
      if (!verifyBytes(message, sig, key.publicKey, impl)) throw new Error(`bench: ${impl} refused a good signature`);
      n++;
    }
    const c = process.cpuUsage(c0);
    return n / ((c.user + c.system) / 1e6);
  };
  rate('node', 50); rate('tweetnacl', 100); // warm-up
  const node = [0, 1, 2].map(() => rate('node', 200));
  const nacl = [0, 1, 2].map(() => rate('tweetnacl', 700));
  return {
    node: round(median(node)), tweetnacl: round(median(nacl)), nodeVsTweetnacl: round(median(node) / median(nacl)),
    messageBytes: message.length, repetitions: 3,
  };
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({ options: { reps: { type: 'string' } } });
  await runAlone(() => benchVerify({ repetitions: values.reps ? Number(values.reps) : undefined }));
}
