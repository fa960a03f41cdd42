// fleetctl releases push | list | show | assign (issue 19). `releases push <release.json>` pushes every
// model the file names with a model file (upload, bundle: INT8 behind the gate when it has samples), then
// makes the next version of the release from those bundles (and bundles it names by version), with its
// chain; the server computes the chain's golden outputs from the chain samples on the exact artifacts.
// File paths in the release file are relative to the file's own folder.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import { ModelId } from '../../shared/ids.ts';
import { Chain, TensorJson } from '../../shared/messages.ts';
import { releasesContract, type ReleaseView } from '../../shared/api/releases.ts';
import { SampleSet } from '../../shared/samples.ts';
import { CliError } from '../api-client.ts';
import { parseWith, readJson } from '../json-file.ts';
import type { Ctx } from '../context.ts';
import { emit, table } from '../output.ts';

type Run = (cmd: Command, fn: (ctx: Ctx, cmd: Command) => Promise<void>) => Promise<void>;

/** The release file. */
export const ReleaseFile = z.object({
  name: ModelId,
  models: z.array(z.object({
    modelId: ModelId,
    /** a float ONNX model to push first (a new version of modelId); without it, an existing bundle */
    file: z.string().min(1).optional(),
    /** samples file for that push ({"samples": [...]}, as `fleetctl push --samples`) */
    samples: z.string().min(1).optional(),
    /** false: ship the float model (default: INT8 behind the gate when samples are given, float otherwise) */
    quantize: z.boolean().optional(),
    /** an existing bundle's version (without `file`; the latest if omitted) */
    version: z.number().int().positive().optional(),
  }).strict().refine((m) => !(m.file && m.version), { message: 'give a file to push or an existing version, not both' })).min(1).max(16),
  chain: z.object({
    steps: Chain.shape.steps,
    /** chain samples: a file {"samples": [{"inputs": {name: TensorJson}}]} or the list inline */
    samples: z.union([z.string().min(1), z.array(z.object({ inputs: z.record(z.string(), TensorJson) }).strict()).min(1).max(8)]).optional(),
    atol: z.number().nonnegative().optional(),
    rtol: z.number().nonnegative().optional(),
  }).strict().optional(),
}).strict();
export type ReleaseFile = z.infer<typeof ReleaseFile>;

export function releaseLines(r: ReleaseView): string[] {
  return [
    `release ${r.name} v${r.version} (${r.models.length} models, by ${r.createdBy} at ${r.createdAt})`,
    ...table([['model', 'version', 'manifest'], ...r.models.map((m, i) => [`${m.modelId}${i === 0 ? ' (primary)' : ''}`, m.version, m.manifestSha256])]),
    r.chain ? `chain: ${r.chain.steps.map((s) => s.modelId).join(' -> ')}; ${r.chain.goldenVectors} golden vectors` : 'chain: none',
  ];
}

export function releaseCommands(program: Command, run: Run): void {
  const releases = program.command('releases').description('releases: sets of models devices switch to as one (issue 19)');

  releases.command('push').description('push the models a release file names, then make the next version of the release')
    .argument('<release.json>', 'the release file (docs/cli.md "Releases")')
    .action((file: string, _raw: unknown, cmd: Command) => run(cmd, async (ctx) => {
      const spec = parseWith(ReleaseFile, readJson('release', file), file);
      const base = dirname(resolve(file));
      const at = (p: string) => resolve(base, p);
      const models: { modelId: string; version?: number }[] = [];
      const pushed: { modelId: string; version: number; manifestSha256: string }[] = [];
      for (const m of spec.models) {
        if (!m.file) { models.push({ modelId: m.modelId, ...(m.version ? { version: m.version } : {}) }); continue; }
        if (!existsSync(at(m.file))) throw new CliError(`${file}: no model file ${m.file}`, 'FLEETCTL_ERR_USAGE');
        const samples = m.samples ? parseWith(SampleSet, readJson('samples', at(m.samples)), m.samples) : undefined;
        const quantize = m.quantize ?? !!samples;
        if (quantize && !samples) throw new CliError(`${m.modelId}: INT8 quantization needs samples (or "quantize": false)`, 'FLEETCTL_ERR_USAGE');
        const upload = await ctx.api.postBytes<{ sha256: string; length: number }>('/v1/uploads', new Uint8Array(readFileSync(at(m.file))));
        const b = (await ctx.api.json<{ manifestSha256: string; version: number }>('POST', `/v1/models/${m.modelId}/bundles`, {
          uploadSha256: upload.sha256, quantize: quantize ? 'int8' : 'none', ...(samples ? { samples: samples.samples } : {}),
        })).body;
        pushed.push({ modelId: m.modelId, version: b.version, manifestSha256: b.manifestSha256 });
        if (!ctx.io.json) ctx.io.out(`pushed ${m.modelId} v${b.version}: manifest ${b.manifestSha256}`);
        models.push({ modelId: m.modelId, version: b.version });
      }
      const chainSamples = spec.chain?.samples === undefined ? undefined
        : typeof spec.chain.samples === 'string'
          ? parseWith(z.object({ samples: z.array(z.object({ inputs: z.record(z.string(), TensorJson) }).strict()).min(1).max(8) }).strict(), readJson('chain samples', at(spec.chain.samples)), spec.chain.samples).samples
          : spec.chain.samples;
      const body = {
        name: spec.name, models,
        ...(spec.chain ? { chain: { steps: spec.chain.steps, ...(chainSamples ? { samples: chainSamples } : {}), ...(spec.chain.atol !== undefined ? { atol: spec.chain.atol } : {}), ...(spec.chain.rtol !== undefined ? { rtol: spec.chain.rtol } : {}) } } : {}),
      };
      const r = await ctx.api.call(releasesContract.createRelease, { body });
      emit(ctx.io, { pushed, release: r }, () => releaseLines(r));
    }));

  releases.command('list').description('every release and version')
    .action((_raw: unknown, cmd: Command) => run(cmd, async (ctx) => {
      const r = await ctx.api.call(releasesContract.listReleases);
      emit(ctx.io, r, () => table([['release', 'version', 'models', 'chain', 'created'], ...r.releases.map((x) => [x.name, x.version, x.models.map((m) => `${m.modelId} v${m.version}`).join(', '), x.chain ? 'yes' : 'no', x.createdAt])]));
    }));

  releases.command('show').description('one release, its versions newest first').argument('<name>')
    .action((name: string, _raw: unknown, cmd: Command) => run(cmd, async (ctx) => {
      const r = await ctx.api.call(releasesContract.getRelease, { params: { name } });
      emit(ctx.io, r, () => r.versions.flatMap((v) => [...releaseLines(v), '']));
    }));

  releases.command('assign').description('point devices at a release: each gets one signed desired state naming all its models').argument('<name>')
    .option('--devices <a,b>', 'device ids')
    .option('--all', 'every known device')
    .option('--hardware <class>', 'with --all: only this hardware class')
    .option('--version <n>', 'a release version (default: the latest)')
    .action((name: string, raw: { devices?: string; all?: boolean; hardware?: string; version?: string }, cmd: Command) => run(cmd, async (ctx) => {
      if (!!raw.devices === !!raw.all) throw new CliError('give either --devices a,b or --all', 'FLEETCTL_ERR_USAGE');
      if (raw.version !== undefined && !/^[1-9]\d*$/.test(raw.version)) throw new CliError('--version: expected a positive whole number', 'FLEETCTL_ERR_USAGE');
      const body = {
        ...(raw.devices ? { deviceIds: raw.devices.split(',').map((s) => s.trim()).filter(Boolean) } : { all: true as const, ...(raw.hardware ? { hardware: raw.hardware } : {}) }),
        ...(raw.version ? { version: Number(raw.version) } : {}),
      };
      const r = await ctx.api.call(releasesContract.assignRelease, { params: { name }, body });
      emit(ctx.io, r, () => [`release ${r.release.name} v${r.release.version} assigned to ${r.assigned} devices`]);
    }));
}
