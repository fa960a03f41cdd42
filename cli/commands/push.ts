// fleetctl push: upload a float ONNX model, then build the bundle (INT8 + accuracy gate, sign).
// A refused gate exits 1 and prints the failing figures next to their thresholds.
import { existsSync, readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { z } from 'zod';
import { TensorJson } from '../../shared/messages.ts';
import { CliError } from '../api-client.ts';
import type { Ctx } from '../context.ts';
import { parseOptions, PushOptions } from '../options.ts';
import { emit, pct } from '../output.ts';

type Run = (cmd: Command, fn: (ctx: Ctx, cmd: Command) => Promise<void>) => Promise<void>;

// The shape the bundle API takes; the server checks it fully (names, sample counts) against the model.
const ReferenceFile = z.object({ inputs: z.record(z.string(), TensorJson), labels: z.array(z.number().int().nonnegative()).optional() }).strict();

interface Gate {
  passed: boolean; agreement: number; floatAccuracy: number | null; quantAccuracy: number | null;
  accuracyDrop: number | null; worstClassDrop: number | null; worstClass: number | null; samples: number;
  thresholds: { minAgreement: number; maxAccuracyDrop: number; maxWorstClassDrop: number }; failures: string[];
}
interface BundleResponse {
  manifestSha256: string; modelId: string; version: number;
  manifest: { quantization: { scheme: string }; artifact: { sha256: string; length: number } };
  report: { floatBytes: number; artifactBytes: number; gate: Gate | null; shippedFloat: boolean };
}

export function pushCommand(program: Command, run: Run): void {
  program.command('push').description('upload a float ONNX model and publish a signed bundle (INT8 behind the accuracy gate)')
    .argument('<model.onnx>', 'the float model')
    .requiredOption('--model-id <id>', 'model id (1-64 of A-Z a-z 0-9 . _ -)')
    .option('--reference <ref.json>', 'reference set {inputs: {name: TensorJson}, labels?}: needed for INT8 (the gate runs on it)')
    .option('--no-quantize', 'ship the float model as is (no gate)')
    .option('--allow-float-fallback', 'ship the float model if the INT8 one fails its gate, instead of refusing')
    .option('--min-agreement <fraction>', 'gate: min top-1 agreement quantized vs float (default 0.99)')
    .option('--max-drop <points>', 'gate: max overall accuracy drop in percentage points (default 1)')
    .option('--max-class-drop <points>', 'gate: max accuracy drop of any one class in points (default 3)')
    .option('--hardware <a,b>', 'hardware classes the bundle is for (default: any)')
    .option('--owner <name>', 'lineage owner')
    .option('--expires-in-days <n>', 'manifest lifetime')
    .action((file: string, raw: Record<string, unknown>, cmd: Command) => run(cmd, async (ctx) => {
      const o = parseOptions(PushOptions, raw);
      if (!existsSync(file)) throw new CliError(`no model file ${file}`, 'FLEETCTL_ERR_USAGE');
      const reference = o.reference ? readReference(o.reference) : undefined;
      if (o.quantize && !reference) throw new CliError('INT8 quantization needs --reference (its accuracy gate runs on it), or pass --no-quantize', 'FLEETCTL_ERR_USAGE');
      const gate = Object.fromEntries(Object.entries({ minAgreement: o.minAgreement, maxAccuracyDrop: o.maxDrop, maxWorstClassDrop: o.maxClassDrop }).filter(([, v]) => v !== undefined));
      const upload = await ctx.api.postBytes<{ sha256: string; length: number }>('/v1/uploads', new Uint8Array(readFileSync(file)));
      if (!ctx.io.json) ctx.io.out(`uploaded ${file}: ${upload.length} bytes, sha256 ${upload.sha256}`);
      let res: BundleResponse;
      try {
        res = (await ctx.api.json<BundleResponse>('POST', `/v1/models/${o.modelId}/bundles`, {
          uploadSha256: upload.sha256, quantize: o.quantize ? 'int8' : 'none', allowFloatFallback: o.allowFloatFallback,
          ...(Object.keys(gate).length ? { gate } : {}), ...(reference ? { reference } : {}),
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
      emit(ctx.io, res, () => [
        `bundle ${res.modelId} v${res.version}: manifest ${res.manifestSha256}`,
        `artifact: ${res.manifest.quantization.scheme}, ${res.report.floatBytes} -> ${res.report.artifactBytes} bytes (${((res.report.artifactBytes / res.report.floatBytes) * 100).toFixed(1)}% of float)${res.report.shippedFloat && o.quantize ? ' [FLOAT FALLBACK: the INT8 model failed its gate]' : ''}`,
        ...(res.report.gate ? gateLines(res.report.gate) : ['gate: not run (float bundle)']),
      ]);
    }));
}

export function gateLines(g: Gate): string[] {
  const t = g.thresholds;
  return [
    `gate ${g.passed ? 'PASSED' : 'FAILED'} on ${g.samples} reference samples:`,
    `  agreement        ${g.agreement.toFixed(4)}  (min ${t.minAgreement})`,
    `  accuracy         float ${pct(g.floatAccuracy)}, quantized ${pct(g.quantAccuracy)}`,
    `  accuracy drop    ${g.accuracyDrop === null ? '-' : g.accuracyDrop.toFixed(2)} points  (max ${t.maxAccuracyDrop})`,
    `  worst class drop ${g.worstClassDrop === null ? '-' : g.worstClassDrop.toFixed(2)} points, class ${g.worstClass ?? '-'}  (max ${t.maxWorstClassDrop})`,
    ...g.failures.map((f) => `  FAILED: ${f}`),
  ];
}

function readReference(path: string): z.infer<typeof ReferenceFile> {
  if (!existsSync(path)) throw new CliError(`no reference file ${path}`, 'FLEETCTL_ERR_USAGE');
  let raw: unknown;
  try { raw = JSON.parse(readFileSync(path, 'utf8')); } catch (err) { throw new CliError(`--reference ${path} is not JSON: ${(err as Error).message}`, 'FLEETCTL_ERR_USAGE'); }
  const r = ReferenceFile.safeParse(raw);
  if (!r.success) throw new CliError(`--reference ${path}: ${r.error.issues[0].path.join('.') || '(root)'}: ${r.error.issues[0].message}`, 'FLEETCTL_ERR_USAGE');
  return r.data;
}
