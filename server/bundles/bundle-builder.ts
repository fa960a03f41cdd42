// Turn an uploaded float model into a signed bundle: quantize (with the accuracy gate), compute the
// health-check vectors on the exact artifact that ships, write the manifest and sign it.
import { z } from 'zod';
import { envelopeDigest, signDocument } from '../../shared/envelope.ts';
import { Sha256Hex } from '../../shared/ids.ts';
import type { Envelope, GoldenSet, Manifest } from '../../shared/messages.ts';
import { ONNXRUNTIME_WEB_RANGE, AGENT_VERSION } from '../../shared/version.ts';
import type { Db } from '../db/database.ts';
import { AppError } from '../errors.ts';
import type { KeyStore } from '../keys/key-store.ts';
import { canonicalJson } from '../../shared/canonical-json.ts';
import { MAX_SAMPLES, type Sample } from '../../shared/samples.ts';
import { GateRequest, labelOutput, runGate, type GateResult, type OutputKind } from '../quantize/accuracy-gate.ts';
import { quantizeModel, type QuantizeReport } from '../quantize/quantize.ts';
import type { IoSpec } from '../onnx/types.ts';
import type { BlobStore } from './blob-store.ts';
import { computeDriftBaseline } from './drift-baseline.ts';
import { computeGoldenVectors, spatialDynamicInputs, synthGoldenInputs } from './golden-vectors.ts';
import { ModelRunError, ortMessage, runOnSamples, type SampleOutputs } from './run-samples.ts';
import { checkSamples, ReferenceSet, referenceToSamples, type RunSample } from './samples.ts';

export { ReferenceSet };
import { BundleRequest } from '../../shared/api/bundle-request.ts';

// the request is part of the REST contract (shared/api/bundle-request.ts)
export { BundleRequest };

export interface BundleRecord {
  manifestSha256: string;
  modelId: string;
  version: number;
  manifest: Manifest;
  envelope: Envelope;
  report: BundleReport;
}

export type BundleOutcome = 'int8' | 'float' | 'float-fallback' | 'nothing-quantized';

export interface BundleReport {
  floatBytes: number;
  artifactBytes: number;
  /** the quantizer's own report (null when not asked for, or when it could not read the model) */
  quantization: unknown;
  /** int8: quantized and gated; float: quantize "none"; float-fallback: INT8 failed its gate and fallback was asked for; nothing-quantized: see quantizationSummary */
  outcome: BundleOutcome;
  /** one line: what was quantized, or exactly why nothing was */
  quantizationSummary: string;
  gate: GateResult | null;
  shippedFloat: boolean;
  serverMedianMs: number;
  /** samples the push brought (0: none) */
  samples: number;
  healthCheck: {
    source: 'samples' | 'synthetic';
    vectors: number;
    /** inline in the signed manifest, or a golden blob the manifest names by digest */
    location: 'inline' | 'golden-blob';
    bytes: number;
    goldenSha256?: string;
    warnings: string[];
  };
}

/** Health-check vectors larger than this (JSON) travel as a golden blob, so the signed desired message stays far below MQTT's limits. */
export const INLINE_GOLDEN_MAX_BYTES = 48 * 1024;

export interface BundleDeps { db: Db; blobs: BlobStore; keys: KeyStore; manifestTtlDays: number }

export async function buildBundle(deps: BundleDeps, modelId: string, input: BundleRequest): Promise<BundleRecord> {
  const req = BundleRequest.parse(input);
  const upload = deps.db.prepare('SELECT info_json FROM uploads WHERE sha256 = ?').get(req.uploadSha256) as { info_json: string } | undefined;
  if (!upload || !deps.blobs.has(req.uploadSha256)) throw new AppError('FLEET_ERR_UPLOAD_NOT_FOUND', `no uploaded model ${req.uploadSha256}: POST /v1/uploads first`, 404);
  const info = JSON.parse(upload.info_json) as { inputs: IoSpec[]; outputs: IoSpec[] };
  const floatBytes = deps.blobs.get(req.uploadSha256);

  const kinds = req.gate?.outputs ?? {};
  for (const name of Object.keys(kinds)) {
    if (!info.outputs.some((o) => o.name === name)) throw new AppError('FLEET_ERR_BAD_GATE', `gate.outputs.${name} is not an output of the model (outputs: ${info.outputs.map((o) => o.name).join(', ')})`, 400);
  }
  if (req.samples && req.reference) throw new AppError('FLEET_ERR_BAD_SAMPLES', 'send samples or reference, not both', 400);
  const given = req.samples ?? (req.reference ? referenceToSamples(req.reference, info.inputs) : undefined);
  const samples = given ? checkSamples(given, info, labelOutput(info.outputs, kinds)) : undefined;

  const q = req.quantize === 'int8' ? await quantizeAndGate(floatBytes, info, samples, req, kinds) : null;
  const outcome: BundleOutcome = q?.outcome ?? 'float';
  const artifact = q?.outcome === 'int8' ? q.bytes : floatBytes;
  // the config the quantizer says its output needs ({} for its Cast -> Mul weights, folded at load)
  const sessionConfig: Record<string, string> = q?.outcome === 'int8' ? { ...q.report!.sessionConfig } : {};
  const quantization: Manifest['quantization'] = q?.outcome === 'int8'
    ? { scheme: 'int8-weight-symmetric', perChannel: q.perChannel, sessionConfig, floatSha256: req.uploadSha256, quantizedOps: q.quantizedOps, skippedOps: q.skippedOps }
    : { scheme: 'none', perChannel: false, sessionConfig: {}, quantizedOps: 0, skippedOps: 0 };
  const gate = q?.gate ?? null;
  const shipped = outcome === 'int8' ? 'INT8' : 'float';

  // Health-check vectors: the first samples, or (with none) inputs made from the signature.
  const synth = samples ? null : synthGoldenInputs(info.inputs, req.healthCheck.vectors);
  const goldenInputs = given ? given.slice(0, req.healthCheck.vectors).map((s) => s.inputs) : synth!.inputs;
  let golden: Awaited<ReturnType<typeof computeGoldenVectors>>;
  try {
    golden = await computeGoldenVectors(artifact, sessionConfig, goldenInputs);
  } catch (err) {
    if (!(err instanceof ModelRunError)) throw err;
    if (synth) {
      throw new AppError('FLEET_ERR_SAMPLES_REQUIRED', `the model failed on synthetic inputs made from its signature (every dynamic dim set to 1): ${err.ortMessage}. Send samples of real inputs (fleetctl push --samples samples.json)`, 422);
    }
    throw new AppError('FLEET_ERR_MODEL_RUN_FAILED', `the ${shipped} model failed on health-check ${err.message}`, 422);
  }
  // It runs on them, but a [1, 3, 1, 1] image shows nothing about a detector.
  const spatial = synth ? spatialDynamicInputs(info.inputs) : [];
  if (spatial.length) {
    throw new AppError('FLEET_ERR_SAMPLES_REQUIRED', `input ${spatial.join(', ')} has dynamic dims beyond the batch: health-check inputs made from the signature set them to 1, which shows nothing about the model on real inputs. Send samples of real inputs (fleetctl push --samples samples.json)`, 422);
  }

  let driftBaseline: Manifest['driftBaseline'];
  if (samples) {
    let outputs = q?.outcome === 'int8' ? q.quantOutputs : q?.floatOutputs;
    if (!outputs) {
      try {
        outputs = await runOnSamples(artifact, { config: sessionConfig }, samples, info.inputs);
      } catch (err) {
        if (err instanceof ModelRunError) throw new AppError('FLEET_ERR_MODEL_RUN_FAILED', `the ${shipped} model failed on ${err.message}`, 422);
        throw err;
      }
    }
    driftBaseline = computeDriftBaseline(samples, outputs);
  }

  const vectorsJson = JSON.stringify(golden.vectors);
  const goldenBlob = Buffer.byteLength(vectorsJson) > INLINE_GOLDEN_MAX_BYTES
    ? deps.blobs.put(new TextEncoder().encode(canonicalJson({ type: 'golden', vectors: golden.vectors } satisfies GoldenSet)))
    : null;
  const stored = deps.blobs.put(artifact);

  const now = new Date();
  const signer = deps.keys.signerFor('targets');
  // Synchronous from here on: the version is taken and the row written in one transaction.
  return deps.db.transaction((): BundleRecord => {
    deps.db.prepare('INSERT OR IGNORE INTO models (model_id, latest_version, created_at) VALUES (?, 0, ?)').run(modelId, now.toISOString());
    const prev = deps.db.prepare('SELECT latest_version FROM models WHERE model_id = ?').get(modelId) as { latest_version: number };
    const version = prev.latest_version + 1;
    const manifest: Manifest = {
      type: 'manifest',
      modelId,
      version,
      artifact: { sha256: stored.sha256, length: stored.length, format: 'onnx' },
      quantization,
      io: { inputs: info.inputs, outputs: info.outputs },
      runtime: { onnxruntimeWeb: ONNXRUNTIME_WEB_RANGE, minAgentVersion: AGENT_VERSION },
      hardwareTargets: req.hardwareTargets,
      healthCheck: {
        vectors: goldenBlob ? [] : golden.vectors,
        ...(goldenBlob ? { golden: { sha256: goldenBlob.sha256, length: goldenBlob.length, vectors: golden.vectors.length } } : {}),
        atol: req.healthCheck.atol,
        rtol: req.healthCheck.rtol,
        latencyBudgetMs: req.healthCheck.latencyBudgetMs ?? Math.max(250, Math.ceil(golden.medianMs * 20)),
      },
      ...(driftBaseline ? { driftBaseline } : {}),
      lineage: {
        ...(prev.latest_version > 0 ? { parentVersion: prev.latest_version } : {}),
        ...req.lineage,
        ...(gate ? { metrics: gateMetrics(gate, req.lineage?.metrics) } : {}),
      },
      issuedAt: now.toISOString(),
      expires: new Date(now.getTime() + (req.expiresInDays ?? deps.manifestTtlDays) * 86400_000).toISOString(),
    };
    const envelope = signDocument(manifest, signer);
    const manifestSha256 = envelopeDigest(envelope);
    const report: BundleReport = {
      floatBytes: floatBytes.byteLength, artifactBytes: stored.length, quantization: q?.report ?? null, outcome,
      quantizationSummary: q?.summary ?? 'not asked for (quantize: "none"): the float model ships as uploaded',
      gate, shippedFloat: outcome !== 'int8', serverMedianMs: golden.medianMs, samples: given?.length ?? 0,
      healthCheck: {
        source: synth ? 'synthetic' : 'samples', vectors: golden.vectors.length,
        location: goldenBlob ? 'golden-blob' : 'inline', bytes: goldenBlob ? goldenBlob.length : Buffer.byteLength(vectorsJson),
        ...(goldenBlob ? { goldenSha256: goldenBlob.sha256 } : {}),
        warnings: synth ? [...synth.warnings, 'no samples: the health check runs on synthetic inputs, which show the model runs, not that it gives right answers; send samples (--samples) for a meaningful check'] : [],
      },
    };
    const addArtifact = deps.db.prepare('INSERT OR IGNORE INTO artifacts (sha256, length, created_at) VALUES (?, ?, ?)');
    addArtifact.run(stored.sha256, stored.length, now.toISOString());
    if (goldenBlob) addArtifact.run(goldenBlob.sha256, goldenBlob.length, now.toISOString());
    deps.db.prepare('INSERT INTO bundles (manifest_sha256, model_id, version, artifact_sha256, envelope_json, report_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(manifestSha256, modelId, version, stored.sha256, JSON.stringify(envelope), JSON.stringify(report), now.toISOString());
    deps.db.prepare('UPDATE models SET latest_version = ? WHERE model_id = ?').run(version, modelId);
    return { manifestSha256, modelId, version, manifest, envelope, report };
  })();
}

interface QuantOutcome {
  outcome: Exclude<BundleOutcome, 'float'>;
  bytes: Uint8Array;
  report: QuantizeReport | null;
  summary: string;
  gate: GateResult | null;
  perChannel: boolean;
  quantizedOps: number;
  skippedOps: number;
  floatOutputs?: SampleOutputs[];
  quantOutputs?: SampleOutputs[];
}

/** Quantize, then gate the result on the samples; nothing quantized means the float model ships, ungated. */
async function quantizeAndGate(
  floatBytes: Uint8Array, info: { inputs: IoSpec[]; outputs: IoSpec[] }, samples: RunSample[] | undefined,
  req: z.infer<typeof BundleRequest>, kinds: Record<string, OutputKind>,
): Promise<QuantOutcome> {
  if (!samples) throw new AppError('FLEET_ERR_REFERENCE_REQUIRED', 'int8 quantization needs samples for its accuracy gate: send samples (fleetctl push --samples), or quantize: "none"', 422);
  let q: { bytes: Uint8Array; report: QuantizeReport };
  try {
    q = quantizeModel(floatBytes);
  } catch (err) {
    if (err instanceof AppError) throw err;
    const summary = `nothing could be quantized: the quantizer could not rewrite this model (${ortMessage(err)})`;
    return { outcome: 'nothing-quantized', bytes: floatBytes, report: null, summary, gate: null, perChannel: false, quantizedOps: 0, skippedOps: 0 };
  }
  const r = q.report;
  if (r.quantized.length === 0) {
    // the quantizer's summary says why ("nothing quantized: ..."), and it returned the float bytes
    return { outcome: 'nothing-quantized', bytes: floatBytes, report: r, summary: r.summary, gate: null, perChannel: false, quantizedOps: 0, skippedOps: r.skipped.length };
  }
  const { floatOutputs, quantOutputs, ...gate } = await runGate(floatBytes, q.bytes, samples, info, req.gate ?? {}, { kinds, quantSession: { config: r.sessionConfig } });
  const base = { report: r, gate, perChannel: r.quantized.some((w) => w.perChannel), quantizedOps: r.quantized.length, skippedOps: r.skipped.length, floatOutputs };
  const what = r.summary;
  if (gate.passed) return { ...base, outcome: 'int8', bytes: q.bytes, summary: `INT8: ${what}; gate passed`, quantOutputs: quantOutputs ?? undefined };
  if (!req.allowFloatFallback) {
    throw new AppError('FLEET_ERR_GATE_FAILED', `quantized model failed its accuracy gate: ${gate.failures.join('; ')}`, 422, { gate });
  }
  return { ...base, outcome: 'float-fallback', bytes: floatBytes, summary: `INT8 (${what}) failed its gate; the float model ships instead (allowFloatFallback)` };
}

function gateMetrics(gate: GateResult, given: Record<string, number> = {}): Record<string, number> {
  const m: Record<string, number> = { ...given };
  if (gate.agreement !== null) m.quantAgreement = gate.agreement;
  if (gate.floatAccuracy !== null) m.floatAccuracy = gate.floatAccuracy;
  if (gate.quantAccuracy !== null) m.quantAccuracy = gate.quantAccuracy;
  if (gate.accuracyDrop !== null) m.quantAccuracyDrop = gate.accuracyDrop;
  const sqnr = gate.outputs.map((o) => o.sqnrDb).filter((x): x is number => typeof x === 'number');
  if (sqnr.length) m.quantMinSqnrDb = Math.min(...sqnr);
  return m;
}
