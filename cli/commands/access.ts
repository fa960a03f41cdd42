// fleetctl tokens … and enrollment-tokens …: API tokens for people and scripts, enrollment tokens for
// devices. Secrets are printed once, when made; the server keeps only their hashes.
import type { Command } from 'commander';
import { z } from 'zod';
import { accessContract as c, EnrollmentTokenRequest, Role, TokenParams, TokenRequest } from '../../shared/api/access.ts';
import type { Ctx } from '../context.ts';
import { parseArg, parseOptions } from '../options.ts';
import { emit, table } from '../output.ts';

type Run = (cmd: Command, fn: (ctx: Ctx, cmd: Command) => Promise<void>) => Promise<void>;

const int = z.string().trim().regex(/^\d+$/, 'expected a whole number').transform(Number);
const TokenOptions = z.object({ name: TokenRequest.shape.name, role: Role, ttlDays: int.pipe(TokenRequest.shape.ttlDays.unwrap()).optional() });
export const EnrollmentTokenOptions = z.object({
  uses: int.pipe(EnrollmentTokenRequest.shape.uses.unwrap()).optional(),
  ttlSeconds: int.pipe(EnrollmentTokenRequest.shape.ttlSeconds.unwrap()).optional(),
  idPrefix: EnrollmentTokenRequest.shape.idPrefix,
});
const TokenId = TokenParams.shape.tokenId;

export function accessCommands(program: Command, run: Run): void {
  const tokens = program.command('tokens').description('API tokens (admin): who may use the API, with which role');

  tokens.command('create').description('make an API token; its secret is printed once')
    .requiredOption('--name <name>', 'who or what uses it (1-64 of A-Z a-z 0-9 _ . @ -)')
    .requiredOption('--role <role>', 'viewer (read), operator (push, assign, campaigns) or admin (tokens, keys, devices\' credentials)')
    .option('--ttl-days <n>', 'expires after this many days (default: never)')
    .action((raw: Record<string, unknown>, cmd: Command) => run(cmd, async (ctx) => {
      const o = parseOptions(TokenOptions, raw);
      const t = await ctx.api.call(c.createToken, { body: { name: o.name, role: o.role, ...(o.ttlDays ? { ttlDays: o.ttlDays } : {}) } });
      emit(ctx.io, t, () => [
        `token ${t.tokenId} for ${t.name} (${t.role})${t.expiresAt ? `, expires ${t.expiresAt}` : ', no expiry'}`,
        `secret (shown once): ${t.token}`,
      ]);
    }));

  tokens.command('list', { isDefault: true }).description('list API tokens (never their secrets)')
    .action((_o: unknown, cmd: Command) => run(cmd, async (ctx) => {
      const body = await ctx.api.call(c.listTokens);
      emit(ctx.io, body, () => table([['TOKEN', 'NAME', 'ROLE', 'CREATED BY', 'EXPIRES', 'REVOKED', 'LAST USED'],
        ...body.tokens.map((t) => [t.tokenId, t.name, t.role, t.createdBy, t.expiresAt, t.revokedAt, t.lastUsedAt])]));
    }));

  tokens.command('revoke').description('revoke an API token (it is refused from now on)').argument('<tokenId>')
    .action((id: string, _o: unknown, cmd: Command) => run(cmd, async (ctx) => {
      const t = await ctx.api.call(c.revokeToken, { params: { tokenId: parseArg(TokenId, id, 'tokenId') } });
      emit(ctx.io, t, () => [`revoked token ${t.tokenId} (${t.name}, ${t.role}) at ${t.revokedAt}`]);
    }));

  const enrollment = program.command('enrollment-tokens').description('enrollment tokens (admin): what devices present once to register their keys');

  enrollment.command('create').description('make an enrollment token; its secret is printed once')
    .option('--uses <n>', 'devices that may enroll with it (default 1)')
    .option('--ttl-seconds <n>', 'lifetime (default 3600, at most 30 days)')
    .option('--id-prefix <prefix>', 'only device ids starting with this may use it')
    .action((raw: Record<string, unknown>, cmd: Command) => run(cmd, async (ctx) => {
      const o = parseOptions(EnrollmentTokenOptions, raw);
      const t = await ctx.api.call(c.createEnrollmentToken, { body: Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) });
      emit(ctx.io, t, () => [
        `enrollment token ${t.tokenId}: ${t.uses} use(s), expires ${t.expiresAt}${t.idPrefix ? `, device ids starting ${t.idPrefix}` : ''}`,
        `secret (shown once): ${t.token}`,
      ]);
    }));

  enrollment.command('revoke').description('revoke an enrollment token (devices that enrolled with it stay enrolled)').argument('<tokenId>')
    .action((id: string, _o: unknown, cmd: Command) => run(cmd, async (ctx) => {
      const r = await ctx.api.call(c.revokeEnrollmentToken, { params: { tokenId: parseArg(TokenId, id, 'tokenId') } });
      emit(ctx.io, r, () => [`revoked enrollment token ${r.tokenId}`]);
    }));
}
