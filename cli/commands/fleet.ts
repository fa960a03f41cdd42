// fleetctl models | bundles [list] | bundles export | assign: thin views over the admin API (devices: devices.ts).
import { writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { Command } from 'commander';
import { b64, sha256Hex } from '../../shared/crypto.ts';
import { bundlesContract } from '../../shared/api/bundles.ts';
import { devicesContract } from '../../shared/api/devices.ts';
import { keysContract } from '../../shared/api/keys.ts';
import type { Envelope } from '../../shared/messages.ts';
import { CliError } from '../api-client.ts';
import { BUNDLE_FORMAT, type BundleFile } from '../bundle-file.ts';
import type { Ctx } from '../context.ts';
import { AssignOptions, parseArg, parseOptions, ShaArg } from '../options.ts';
import { emit, table } from '../output.ts';

type Run = (cmd: Command, fn: (ctx: Ctx, cmd: Command) => Promise<void>) => Promise<void>;


export function fleetCommands(program: Command, run: Run): void {
  program.command('models').description('list models and their latest versions')
    .action((_o: unknown, cmd: Command) => run(cmd, async (ctx) => {
      const body = await ctx.api.call(bundlesContract.listModels);
      emit(ctx.io, body, () => (body.models.length ? table([['MODEL', 'LATEST', 'BUNDLES', 'DEVICES', 'CREATED'], ...body.models.map((m) => [m.modelId, m.latestVersion, m.bundles, m.devices, m.createdAt])]) : ['no models']));
    }));

  const bundles = program.command('bundles').description('list bundles, or export one for offline inspect/verify');
  bundles.command('list', { isDefault: true }).description('list bundles (newest first)')
    .option('--model <id>', 'only this model')
    .action((o: { model?: string }, cmd: Command) => run(cmd, async (ctx) => {
      const body = await ctx.api.call(o.model ? bundlesContract.listModelBundles : bundlesContract.listBundles, o.model ? { params: { modelId: o.model } } : {});
      emit(ctx.io, body, () => (body.bundles.length ? table([['MANIFEST', 'MODEL', 'VERSION', 'QUANT', 'BYTES', 'KEY'],
        ...body.bundles.map((b) => [b.manifestSha256, b.modelId, b.version, b.quantization, b.artifactBytes, b.keyId])]) : ['no bundles']));
    }));

  bundles.command('export').description('write a bundle file: key set + signed manifest + artifact, verifiable offline')
    .argument('<manifestSha256>')
    .requiredOption('--out <file>', 'bundle file to write')
    .option('--artifact-file <file>', 'write the artifact to this file instead of inline base64')
    .action((shaArg: string, o: { out: string; artifactFile?: string }, cmd: Command) => run(cmd, async (ctx) => {
      const sha = parseArg(ShaArg, shaArg, 'manifestSha256');
      const b = await ctx.api.call(bundlesContract.getBundle, { params: { sha256: sha } });
      const k = await ctx.api.call(keysContract.getKeys);
      if (!k.keysetEnvelope) throw new CliError('the server has no key set yet', 'FLEETCTL_ERR_NO_KEYSET');
      const artifact = await ctx.api.getBytes(`/v1/artifacts/${b.artifactSha256}`);
      if (sha256Hex(artifact) !== b.artifactSha256) throw new CliError('the artifact downloaded does not match its SHA-256: try again', 'FLEETCTL_ERR_DOWNLOAD');
      if (o.artifactFile) writeFileSync(o.artifactFile, artifact);
      const file: BundleFile = {
        format: BUNDLE_FORMAT, formatVersion: 1, manifestSha256: sha, keyset: k.keysetEnvelope, manifest: b.envelope,
        // a relative name when the artifact sits next to the bundle, so the pair can be moved together
        artifact: o.artifactFile ? { path: o.artifactFile.includes('/') ? o.artifactFile : basename(o.artifactFile) } : { base64: b64.encode(artifact) },
        exportedAt: new Date().toISOString(), exportedFrom: ctx.api.base,
      };
      writeFileSync(o.out, JSON.stringify(file, null, 2) + '\n');
      emit(ctx.io, { out: o.out, manifestSha256: sha, modelId: b.modelId, version: b.version, artifactBytes: artifact.byteLength },
        () => [`exported ${b.modelId} v${b.version} (${artifact.byteLength} artifact bytes) to ${o.out}`]);
    }));

  program.command('assign').description('point devices at a bundle (signed desired state per device)')
    .argument('<manifestSha256>')
    .option('--devices <a,b>', 'device ids')
    .option('--all', 'every known device')
    .option('--hardware <class>', 'with --all: only this hardware class')
    .action((shaArg: string, raw: Record<string, unknown>, cmd: Command) => run(cmd, async (ctx) => {
      const sha = parseArg(ShaArg, shaArg, 'manifestSha256');
      const o = parseOptions(AssignOptions, raw);
      const body = await ctx.api.call(devicesContract.assign, { body: {
        manifestSha256: sha, ...(o.devices ? { deviceIds: o.devices } : { all: true, ...(o.hardware ? { hardware: o.hardware } : {}) }),
      } });
      emit(ctx.io, body, () => [`assigned ${sha.slice(0, 12)}… to ${body.assigned} device(s)`]);
    }));
}
