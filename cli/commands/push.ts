// fleetctl push: upload a float ONNX model, then build the bundle (INT8 + accuracy gate, sign).
// A refused gate exits 1 and prints the failing figures next to their thresholds. The printout says
// what was quantized (or why nothing was), every output's gate figures, and where the health-check
// vectors come from and travel: one line each, never two that contradict each other.
import { existsSync, readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { z } from 'zod';
import { TensorJson } from '../../shared/messages.ts';
import { SampleSet } from '../../shared/samples.ts';
import { CliError } from '../api-client.ts';
import type { Ctx } from '../context.ts';
import { parseOptions, PushOptions } from '../options.ts';
import { emit, pct } from '../output.ts';

type Run = (cmd: Command, fn: (ctx: Ctx, cmd: Command) => Promise<void>) => Promise<void>;

// The shapes the bundle API takes; the server checks them fully (names, dims, labels) against the model.
const ReferenceFile = z.object({ inputs: z.record(z.string(), TensorJson), labels: z.array(z.number().int().nonnegative()).optional() }).strict();

interface OutputGate {
  name: string; kind: 'classifier' | 'fidelity'; passed: boolean; positions?: number; agreement?: number;
  floatAccuracy?: number | null; quantAccuracy?: number | null; accuracyDrop?: number | null; worstClassDrop?: number | null; worstClass?: number | null;
  sqnrDb?: number | null; cosine?: number; maxAbsError?: number; maxRelError?: number; failures: string[];
}
interface Gate {
  passed: boolean; agreement: number | null; samples: number; failures: string[]; outputs?: OutputGate[];
  floatAccuracy: number | null; quantAccuracy: number | null; accuracyDrop: number | null; worstClassDrop: number | null; worstClass: number | null;
  thresholds: { minAgreement: number; maxAccuracyDrop: number; maxWorstClassDrop: number; minSqnrDb?: number; minCosine?: number };
}
interface BundleResponse {
  manifestSha256: string; modelId: string; version: number;
  manifest: { quantization: { scheme: string }; artifact: { sha256: string; length: number } };
  report: {
    floatBytes: number; artifactBytes: number; gate: Gate | null; shippedFloat: boolean;
    outcome?: 'int8' | 'float' | 'float-fallback' | 'nothing-quantized'; quantizationSummary?: string;
    healthCheck?: { source: 'samples' | 'synthetic'; vectors: number; location: 'inline' | 'golden-blob'; bytes: number; goldenSha256?: string; warnings: string[] };
  };
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function pushCommand(program: Command, run: Run): void {
  program.command('push').description('upload a float ONNX model and publish a signed bundle (INT8 behind the accuracy gate)')
    .argument('<model.onnx>', 'the float model')
    .requiredOption('--model-id <id>', 'model id (1-64 of A-Z a-z 0-9 . _ -)')
    .option('--samples <samples.json>', 'samples {"samples": [{"inputs": {name: TensorJson}, "label"?, "outputs"?}]}: health-check vectors, the INT8 gate and the drift baseline are made from them')
    .option('--reference <ref.json>', 'older batched form {inputs: {name: TensorJson}, labels?}, sliced along the first dim into samples')
    .option('--no-quantize', 'ship the float model as is (no gate)')
    .option('--allow-float-fallback', 'ship the float model if the INT8 one fails its gate, instead of refusing')
    .option('--gate-output <name=kind>', 'read an output as classifier (top-1) or fidelity (SQNR, cosine); repeatable', collect)
    .option('--min-agreement <fraction>', 'gate: min top-1 agreement quantized vs float, classifier outputs (default 0.99)')
    .option('--max-drop <points>', 'gate: max overall accuracy drop in percentage points (default 1)')
    .option('--max-class-drop <points>', 'gate: max accuracy drop of any one class in points (default 3)')
    .option('--min-sqnr-db <dB>', 'gate: min signal-to-quantization-noise ratio, fidelity outputs (default 20)')
    .option('--min-cosine <c>', 'gate: min cosine similarity quantized vs float, fidelity outputs (default 0.99)')
    .option('--hardware <a,b>', 'hardware classes the bundle is for (default: any)')
    .option('--owner <name>', 'lineage owner')
    .option('--expires-in-days <n>', 'manifest lifetime')
    .action((file: string, raw: Record<string, unknown>, cmd: Command) => run(cmd, async (ctx) => {
      const o = parseOptions(PushOptions, raw);
      if (!existsSync(file)) throw new CliError(`no model file ${file}`, 'FLEETCTL_ERR_USAGE');
      const samples = o.samples ? readSamples(o.samples) : undefined;
      const reference = o.reference ? readReference(o.reference) : undefined;
      if (o.quantize && !samples && !reference) throw new CliError('INT8 quantization needs --samples (its accuracy gate runs on them) or --reference, or pass --no-quantize', 'FLEETCTL_ERR_USAGE');
      const gate = Object.fromEntries(Object.entries({
        minAgreement: o.minAgreement, maxAccuracyDrop: o.maxDrop, maxWorstClassDrop: o.maxClassDrop, minSqnrDb: o.minSqnrDb, minCosine: o.minCosine,
        outputs: Object.keys(o.gateOutput).length ? o.gateOutput : undefined,
      }).filter(([, v]) => v !== undefined));
      const upload = await ctx.api.postBytes<{ sha256: string; length: number }>('/v1/uploads', new Uint8Array(readFileSync(file)));
      if (!ctx.io.json) ctx.io.out(`uploaded ${file}: ${upload.length} bytes, sha256 ${upload.sha256}`);
      let res: BundleResponse;
      try {
        res = (await ctx.api.json<BundleResponse>('POST', `/v1/models/${o.modelId}/bundles`, {
          uploadSha256: upload.sha256, quantize: o.quantize ? 'int8' : 'none', allowFloatFallback: o.allowFloatFallback,
          ...(Object.keys(gate).length ? { gate } : {}), ...(samples ? { samples: samples.samples } : {}), ...(reference ? { reference } : {}),
          ...(o.hardware ? { hardwareTargets: o.hardware } : {}), ...(o.owner ? { lineage: { owner: o.owner } } : {}),
          ...(o.expiresInDays ? { expiresInDays: o.expiresInDays } : {}),
        })).body;
      } catch (err) {
        const gateDetails = (err as CliError).details as { gate?: Gate } | undefined;
        if (err instanceof CliError && gateDetails?.gate) {
          // Figures to stderr (the error line follows), JSON to stdout with --json.
          if (ctx.io.json) ctx.io.out(JSON.stringify({ error: err.code, message: err.message, gate: gateDetails.gate }, null, 2));
          else for (const line of gateLines(gateDetails.gate)) ctx.io.err(line);
        }
        throw err;
      }
      emit(ctx.io, res, () => pushLines(res));
    }));
}

export function pushLines(res: BundleResponse): string[] {
  const r = res.report;
  const outcome = r.outcome ?? (r.shippedFloat ? 'float' : 'int8');
  const ratio = ((r.artifactBytes / r.floatBytes) * 100).toFixed(1);
  const hc = r.healthCheck;
  return [
    `bundle ${res.modelId} v${res.version}: manifest ${res.manifestSha256}`,
    `quantization: ${r.quantizationSummary ?? outcome}`,
    `artifact: ${res.manifest.quantization.scheme}, ${r.floatBytes} -> ${r.artifactBytes} bytes (${ratio}% of float)`,
    ...(outcome === 'float-fallback' ? ['FLOAT FALLBACK: the INT8 model failed its gate and --allow-float-fallback was given: the float model ships'] : []),
    ...(r.gate ? gateLines(r.gate)
      : outcome === 'nothing-quantized' ? ['gate: not run (nothing was quantized: the float model ships as uploaded)']
        : ['gate: not run (float bundle: quantization not asked for)']),
    ...(hc ? [
      `health check: ${hc.vectors} vectors from ${hc.source === 'samples' ? 'your samples' : 'synthetic inputs made from the signature'}, ${hc.location === 'inline' ? `inline in the manifest (${hc.bytes} bytes)` : `golden blob ${hc.goldenSha256} (${hc.bytes} bytes)`}`,
      ...hc.warnings.map((w) => `  warning: ${w}`),
    ] : []),
  ];
}

export function gateLines(g: Gate): string[] {
  const t = g.thresholds;
  const outputs = g.outputs ?? [];
  return [
    `gate ${g.passed ? 'PASSED' : 'FAILED'} on ${g.samples} reference samples:`,
    ...outputs.map((o) => (o.kind === 'classifier' ? classifierLine(o, t) : fidelityLine(o, t))),
    ...g.failures.map((f) => `  FAILED: ${f}`),
  ];
}

function classifierLine(o: OutputGate, t: Gate['thresholds']): string {
  const parts = [`  ${o.name} (classifier): agreement ${o.agreement?.toFixed(4) ?? '-'} (min ${t.minAgreement}) over ${o.positions ?? '-'} positions`];
  if (o.floatAccuracy !== null && o.floatAccuracy !== undefined) {
    parts.push(`accuracy float ${pct(o.floatAccuracy)}, quantized ${pct(o.quantAccuracy)}`);
    parts.push(`drop ${o.accuracyDrop?.toFixed(2) ?? '-'} points (max ${t.maxAccuracyDrop})`);
    parts.push(`worst class drop ${o.worstClassDrop?.toFixed(2) ?? '-'} points, class ${o.worstClass ?? '-'} (max ${t.maxWorstClassDrop})`);
  }
  return parts.join('; ');
}

function fidelityLine(o: OutputGate, t: Gate['thresholds']): string {
  const sqnr = o.sqnrDb === null ? 'identical (no noise)' : o.sqnrDb === undefined ? '-' : `${o.sqnrDb.toFixed(2)} dB`;
  return `  ${o.name} (fidelity): SQNR ${sqnr} (min ${t.minSqnrDb ?? '-'} dB); cosine ${o.cosine?.toFixed(5) ?? '-'} (min ${t.minCosine ?? '-'}); max abs error ${o.maxAbsError?.toExponential(2) ?? '-'}; max rel error ${o.maxRelError?.toExponential(2) ?? '-'}`;
}

function readJson(flag: string, path: string): unknown {
  if (!existsSync(path)) throw new CliError(`no ${flag.slice(2)} file ${path}`, 'FLEETCTL_ERR_USAGE');
  try { return JSON.parse(readFileSync(path, 'utf8')); } catch (err) { throw new CliError(`${flag} ${path} is not JSON: ${(err as Error).message}`, 'FLEETCTL_ERR_USAGE'); }
}

/** "samples[3].inputs.x.dims" from zod's ['samples', 3, 'inputs', 'x', 'dims']. */
function fieldPath(path: PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i ? '.' : ''}${String(p)}`)).join('') || '(root)';
}

function readSamples(path: string): SampleSet {
  const r = SampleSet.safeParse(readJson('--samples', path));
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new CliError(`--samples ${path}: ${fieldPath(issue.path)}: ${issue.message}`, 'FLEETCTL_ERR_USAGE');
  }
  return r.data;
}

function readReference(path: string): z.infer<typeof ReferenceFile> {
  const r = ReferenceFile.safeParse(readJson('--reference', path));
  if (!r.success) throw new CliError(`--reference ${path}: ${fieldPath(r.error.issues[0].path)}: ${r.error.issues[0].message}`, 'FLEETCTL_ERR_USAGE');
  return r.data;
}
