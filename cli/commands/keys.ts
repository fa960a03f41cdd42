// fleetctl keys: init (offline root), sign-keyset (offline), import, rotate, revoke, show.
import { readFileSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { signDocument } from '../../shared/envelope.ts';
import { Envelope, KeySet } from '../../shared/messages.ts';
import { CliError } from '../api-client.ts';
import type { Ctx } from '../context.ts';
import { KeyIdArg, parseArg } from '../options.ts';
import { emit, table } from '../output.ts';
import { initRootKey, loadRootKey } from '../root-key.ts';

type Run = (cmd: Command, fn: (ctx: Ctx, cmd: Command) => Promise<void>) => Promise<void>;

interface KeysView {
  mode: string; root: { keyId: string; publicKey: string };
  keyset: KeySet | null; pending: KeySet | null;
}

export function keysCommand(program: Command, run: Run): void {
  const keys = program.command('keys').description('root and signing keys: init, sign-keyset, import, rotate, revoke, show');

  keys.command('init').description('OFFLINE: make a root key in a folder on this machine (0600 file, 0700 folder); prints its public key')
    .requiredOption('--dir <dir>', 'folder for root.key and root.pub')
    .action((opts: { dir: string }, cmd: Command) => run(cmd, async ({ io }) => {
      const r = initRootKey(opts.dir);
      emit(io, r, () => [
        `root key written to ${r.keyFile} (mode 0600); keep it offline`,
        `root key id:     ${r.keyId}`,
        `root public key: ${r.publicKey}`,
        `(also in ${r.publicFile}; pin it in every agent's rootPublicKey and the server's FLEET_ROOT_PUBLIC_KEY)`,
      ]);
    }));

  keys.command('sign-keyset').description('OFFLINE: sign a key set JSON (e.g. the server\'s pending one) with the root key')
    .argument('<keyset.json>', 'a key set document, or the output of `keys show --json` (its pending key set is signed)')
    .requiredOption('--root-key <file>', 'the root key file made by `keys init`')
    .option('--out <file>', 'write the signed envelope here (default: print it)')
    .action((file: string, opts: { rootKey: string; out?: string }, cmd: Command) => run(cmd, async ({ io }) => {
      const keyset = readKeySet(file);
      const envelope = signDocument(keyset, loadRootKey(opts.rootKey));
      if (opts.out) writeFileSync(opts.out, JSON.stringify(envelope, null, 2) + '\n');
      emit(io, opts.out ? { signed: true, out: opts.out, keysetVersion: keyset.version, envelope } : envelope,
        () => (opts.out ? [`key set v${keyset.version} signed by root ${envelope.keyId}: ${opts.out}`] : [JSON.stringify(envelope, null, 2)]));
    }));

  keys.command('import').description('send a root-signed key set envelope to the server')
    .argument('<signed.json>', 'output of `keys sign-keyset --out`')
    .action((file: string, _opts: unknown, cmd: Command) => run(cmd, async (ctx) => {
      const envelope = readEnvelope(file);
      const { body } = await ctx.api.json<Record<string, unknown>>('POST', '/v1/keys/keyset', envelope);
      emit(ctx.io, body, () => [`key set v${body.keysetVersion} imported; ${body.reissued} desired state(s) re-issued`]);
    }));

  keys.command('rotate').description('add a new signing key; the old one keeps verifying until revoked')
    .option('--root-key <file>', 'offline root: sign and import the resulting key set right away')
    .action((opts: { rootKey?: string }, cmd: Command) => run(cmd, async (ctx) => {
      const { body } = await ctx.api.json<Record<string, unknown> & { pending?: KeySet }>('POST', '/v1/keys/rotate');
      const result = await finishChange(ctx, body, opts.rootKey);
      emit(ctx.io, result, () => [`new signing key ${body.keyId}`, ...changeLines(result)]);
    }));

  keys.command('revoke').description('revoke a signing key: devices refuse anything it signs once they get the new key set')
    .argument('<keyId>', 'the key id (32 hex characters)')
    .option('--root-key <file>', 'offline root: sign and import the resulting key set right away')
    .action((keyIdArg: string, opts: { rootKey?: string }, cmd: Command) => run(cmd, async (ctx) => {
      const keyId = parseArg(KeyIdArg, keyIdArg, 'keyId');
      const { body } = await ctx.api.json<Record<string, unknown> & { pending?: KeySet }>('POST', `/v1/keys/${keyId}/revoke`);
      const result = await finishChange(ctx, body, opts.rootKey);
      emit(ctx.io, result, () => [`signing key ${keyId} revoked`, ...changeLines(result)]);
    }));

  keys.command('show').description('root public key, current key set and any pending one')
    .action((_opts: unknown, cmd: Command) => run(cmd, async (ctx) => {
      const { body } = await ctx.api.json<KeysView>('GET', '/v1/keys');
      emit(ctx.io, body, () => [
        `mode: ${body.mode}`,
        `root: ${body.root.keyId}  ${body.root.publicKey}`,
        ...(body.keyset ? [`key set v${body.keyset.version}, expires ${body.keyset.expires}`, ...table(body.keyset.keys.map((k) => ['  ', k.keyId, k.roles.join(',')])),
          ...(body.keyset.revoked.length ? [`revoked: ${body.keyset.revoked.join(', ')}`] : [])] : ['no key set yet']),
        ...(body.pending ? [`pending key set v${body.pending.version} waits for the root's signature: keys show --json > p.json; keys sign-keyset p.json --root-key root.key --out s.json; keys import s.json`] : []),
      ]);
    }));
}

/** Offline root with --root-key: sign the pending key set here and import it in the same command. */
async function finishChange(ctx: Ctx, body: Record<string, unknown> & { pending?: KeySet }, rootKey?: string): Promise<Record<string, unknown>> {
  if (body.applied || !rootKey) return body;
  const envelope = signDocument(KeySet.parse(body.pending), loadRootKey(rootKey));
  const imported = await ctx.api.json<Record<string, unknown>>('POST', '/v1/keys/keyset', envelope);
  return { ...body, ...imported.body, signedOffline: true };
}

function changeLines(r: Record<string, unknown>): string[] {
  if (!r.applied) return [`key set v${(r.pending as KeySet).version} is PENDING: sign it with the offline root (keys sign-keyset) and import it`];
  const resigned = (r.resignedBundles as { modelId: string; fromVersion: number; version: number }[] | undefined) ?? [];
  return [
    `key set v${r.keysetVersion} in force; ${r.reissued ?? 0} desired state(s) re-issued`,
    ...resigned.map((b) => `re-signed ${b.modelId} v${b.fromVersion} as v${b.version}`),
  ];
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new CliError(`cannot read ${file} as JSON: ${(err as Error).message}`, 'FLEETCTL_ERR_USAGE');
  }
}

function readKeySet(file: string): KeySet {
  const raw = readJson(file) as { pending?: unknown };
  const doc = raw && typeof raw === 'object' && 'pending' in raw ? raw.pending : raw;
  if (doc === null) throw new CliError(`${file} holds no pending key set`, 'FLEETCTL_ERR_USAGE');
  const r = KeySet.safeParse(doc);
  if (!r.success) throw new CliError(`${file} is not a key set: ${r.error.issues[0].path.join('.')}: ${r.error.issues[0].message}`, 'FLEETCTL_ERR_USAGE');
  return r.data;
}

function readEnvelope(file: string): Envelope {
  const raw = readJson(file) as { envelope?: unknown };
  const r = Envelope.safeParse(raw && typeof raw === 'object' && 'envelope' in raw ? raw.envelope : raw);
  if (!r.success) throw new CliError(`${file} is not a signed envelope: ${r.error.issues[0].path.join('.')}: ${r.error.issues[0].message}`, 'FLEETCTL_ERR_USAGE');
  return r.data;
}
