// fleetctl inspect | verify: read an exported bundle file without any server.
import type { Command } from 'commander';
import { envelopeDigest } from '../../shared/envelope.ts';
import { CliError } from '../api-client.ts';
import { readBundleFile } from '../bundle-file.ts';
import type { Ctx } from '../context.ts';
import { emit } from '../output.ts';
import { parseRootPublicKey } from '../root-key.ts';
import { verifyBundle } from '../verify-bundle.ts';

type Run = (cmd: Command, fn: (ctx: Ctx, cmd: Command) => Promise<void>) => Promise<void>;

export function offlineCommands(program: Command, run: Run): void {
  program.command('inspect').description('OFFLINE: show what a bundle file holds (nothing is verified: use verify)')
    .argument('<bundle.json>')
    .action((file: string, _o: unknown, cmd: Command) => run(cmd, async ({ io }) => {
      const { bundle, artifact, artifactProblem } = readBundleFile(file);
      const manifest = safeJson(bundle.manifest.signed) as Record<string, any> | null;
      const keyset = safeJson(bundle.keyset.signed) as Record<string, any> | null;
      const view = {
        manifestSha256: bundle.manifestSha256, digestOfSignedText: envelopeDigest(bundle.manifest), signedBy: bundle.manifest.keyId,
        manifest, keyset: keyset ? { version: keyset.version, expires: keyset.expires, keys: keyset.keys?.map((k: { keyId: string }) => k.keyId), revoked: keyset.revoked, signedBy: bundle.keyset.keyId } : null,
        artifact: artifact ? { bytes: artifact.byteLength } : { problem: artifactProblem }, exportedAt: bundle.exportedAt, exportedFrom: bundle.exportedFrom,
      };
      emit(io, view, () => [
        `bundle ${bundle.manifestSha256}`,
        ...(manifest ? [
          `model ${manifest.modelId} v${manifest.version}, ${manifest.quantization?.scheme}, artifact ${manifest.artifact?.length} bytes sha256 ${manifest.artifact?.sha256}`,
          `inputs ${JSON.stringify(manifest.io?.inputs?.map((i: { name: string; shape: unknown }) => [i.name, i.shape]))} outputs ${JSON.stringify(manifest.io?.outputs?.map((i: { name: string; shape: unknown }) => [i.name, i.shape]))}`,
          `hardware ${manifest.hardwareTargets?.length ? manifest.hardwareTargets.join(', ') : 'any'}; ${healthCheckText(manifest.healthCheck)}, latency budget ${manifest.healthCheck?.latencyBudgetMs} ms`,
          `issued ${manifest.issuedAt}, expires ${manifest.expires}; lineage ${JSON.stringify(manifest.lineage)}`,
        ] : ['manifest: signed text is not JSON']),
        `signed by key ${bundle.manifest.keyId}; key set v${keyset?.version} (signed by ${bundle.keyset.keyId})`,
        artifact ? `artifact in file: ${artifact.byteLength} bytes` : `artifact: ${artifactProblem}`,
      ]);
    }));

  program.command('verify').description('OFFLINE: check root -> key set -> manifest signature, expiry, artifact length and SHA-256')
    .argument('<bundle.json>')
    .requiredOption('--root <pubkey|file>', 'the root public key (base64), or a file holding it (root.pub)')
    .action((file: string, o: { root: string }, cmd: Command) => run(cmd, async ({ io }) => {
      const root = parseRootPublicKey(o.root);
      const { bundle, artifact, artifactProblem } = readBundleFile(file);
      const result = verifyBundle(bundle, artifact, root, Date.now(), artifactProblem);
      emit(io, result, () => [...result.checks.map((c) => `${c.ok ? 'ok  ' : 'FAIL'}  ${c.name}: ${c.detail}`), result.ok ? 'bundle VERIFIED' : 'bundle REFUSED']);
      if (!result.ok) throw new CliError(`verification failed: ${result.checks.filter((c) => !c.ok).map((c) => c.name).join(', ')}`, 'FLEETCTL_ERR_VERIFY', { reported: true });
    }));
}

/** Inline vectors, or the golden blob the manifest names (fetched from the server by digest; not in the bundle file). */
function healthCheckText(hc: { vectors?: unknown[]; golden?: { sha256?: string; length?: number; vectors?: number } } | undefined): string {
  if (hc?.golden) return `${hc.golden.vectors} health-check vectors in golden blob ${hc.golden.sha256} (${hc.golden.length} bytes, fetched by digest from the server, not in this file)`;
  return `${hc?.vectors?.length} health-check vectors inline`;
}

function safeJson(text: string): unknown {
  try { return JSON.parse(text); } catch { return null; }
}
