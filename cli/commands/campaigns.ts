// fleetctl campaigns …: start a staged rollout from a JSON file, watch it, read its events, and act
// on it by hand (pause, resume, abort, revert, promote). Shapes come from the REST contract.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { z } from 'zod';
import { CampaignAction, CampaignParams, campaignsContract as api, type CampaignView } from '../../shared/api/campaigns.ts';
import { CliError } from '../api-client.ts';
import type { Ctx } from '../context.ts';
import { parseArg, parseOptions, ShaArg } from '../options.ts';
import { emit, table } from '../output.ts';
import { watchCampaign } from './campaign-watch.ts';

type Run = (cmd: Command, fn: (ctx: Ctx, cmd: Command) => Promise<void>) => Promise<void>;

const CampaignId = CampaignParams.shape.campaignId;
const ACTIONS = CampaignAction.options;

export const counts = (c: Pick<CampaignView, 'devices'>) => Object.entries(c.devices).map(([k, v]) => `${k} ${v}`).join(', ');
const line = (c: CampaignView) => `${c.campaignId}  ${c.modelId} v${c.version}  ${c.status}  wave ${c.wave}/${c.waves}  ${counts(c)}${c.waiting ? `  (${c.waiting})` : ''}`;
/** what the server allows now, so an operator never tries an action that will be refused */
const actionsLine = (c: CampaignView) => `actions: ${c.actions.length ? c.actions.join(', ') : 'none (final)'}`;

const seconds = z.string().trim().min(1).transform(Number).pipe(z.number({ error: 'expected a number of seconds' }).positive('must be more than 0'));
const WatchOptions = z.object({ interval: seconds.default(2), timeout: seconds.optional() });

export function campaignCommands(program: Command, run: Run): void {
  const campaigns = program.command('campaigns').description('staged rollout campaigns');

  campaigns.command('list', { isDefault: true }).description('list campaigns (newest first)')
    .action((_o: unknown, cmd: Command) => run(cmd, async (ctx) => {
      const body = await ctx.api.call(api.listCampaigns);
      emit(ctx.io, body, () => (body.campaigns.length ? table([['CAMPAIGN', 'MODEL', 'STATUS', 'WAVE', 'ACTIONS', 'DEVICES'],
        ...body.campaigns.map((c) => [c.campaignId, `${c.modelId} v${c.version}`, c.status, `${c.wave}/${c.waves}`, c.actions.join(',') || '-', counts(c)])]) : ['no campaigns']));
    }));

  campaigns.command('create').description('start a campaign for a bundle; options (waves, gates, target…) from a JSON file')
    .argument('<manifestSha256>')
    .option('--config <file>', 'JSON with target, waves, gates, onGateFailure, rateLimitPerMinute, maxRetries, deviceDeadlineSeconds, lateJoiners')
    .option('--name <name>', 'a name for the campaign')
    .action((shaArg: string, o: { config?: string; name?: string }, cmd: Command) => run(cmd, async (ctx) => {
      const manifestSha256 = parseArg(ShaArg, shaArg, 'manifestSha256');
      let options: Record<string, unknown> = {};
      if (o.config) {
        try {
          options = JSON.parse(readFileSync(o.config, 'utf8'));
        } catch (err) {
          throw new CliError(`--config ${o.config}: ${(err as Error).message}`, 'FLEETCTL_ERR_CONFIG');
        }
      }
      const body = await ctx.api.call(api.createCampaign, { body: { ...options, ...(o.name ? { name: o.name } : {}), manifestSha256 } });
      emit(ctx.io, body, () => [`started ${line(body)}`, actionsLine(body)]);
    }));

  campaigns.command('show').description('state, devices per state, what it waits for').argument('<campaignId>')
    .action((id: string, _o: unknown, cmd: Command) => run(cmd, async (ctx) => {
      const body = await ctx.api.call(api.getCampaign, { params: { campaignId: parseArg(CampaignId, id, 'campaignId') } });
      emit(ctx.io, body, () => [line(body), actionsLine(body)]);
    }));

  campaigns.command('events').description('every event: waves, gate results with their figures, halts, reverts, manual actions').argument('<campaignId>')
    .action((id: string, _o: unknown, cmd: Command) => run(cmd, async (ctx) => {
      const body = await ctx.api.call(api.campaignEvents, { params: { campaignId: parseArg(CampaignId, id, 'campaignId') } });
      emit(ctx.io, body, () => body.events.map((e) => {
        const failures = ((e.detail as { failures?: string[] } | null)?.failures)?.join('; ');
        return `${e.ts}  ${e.type}  by ${e.actor}${failures ? `: ${failures}` : ''}`;
      }));
    }));

  for (const action of ACTIONS) {
    campaigns.command(action).description(`${action} a campaign by hand`).argument('<campaignId>')
      .action((id: string, _o: unknown, cmd: Command) => run(cmd, async (ctx) => {
        const body = await ctx.api.call(api.actOnCampaign, { params: { campaignId: parseArg(CampaignId, id, 'campaignId'), action } });
        emit(ctx.io, body, () => [`${action}: ${line(body)}`, actionsLine(body)]);
      }));
  }

  campaigns.command('watch').description('follow a campaign until it ends: a progress bar on a terminal, one line per change otherwise; exit 0 if it completed, 1 if not')
    .argument('<campaignId>')
    .option('--interval <seconds>', 'time between two looks (default 2)')
    .option('--timeout <seconds>', 'give up (exit 1) after this long (default: never)')
    .action((id: string, raw: Record<string, unknown>, cmd: Command) => run(cmd, async (ctx) => {
      const o = parseOptions(WatchOptions, raw);
      await watchCampaign(ctx, parseArg(CampaignId, id, 'campaignId'), { intervalMs: o.interval * 1000, timeoutMs: o.timeout === undefined ? undefined : o.timeout * 1000 });
    }));
}
