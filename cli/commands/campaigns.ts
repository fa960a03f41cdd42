// fleetctl campaigns …: start a staged rollout from a JSON file, watch it, read its events, and act
// on it by hand (pause, resume, abort, revert, promote).
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { z } from 'zod';
import { CliError } from '../api-client.ts';
import type { Ctx } from '../context.ts';
import { parseArg, ShaArg } from '../options.ts';
import { emit, table } from '../output.ts';

type Run = (cmd: Command, fn: (ctx: Ctx, cmd: Command) => Promise<void>) => Promise<void>;

interface CampaignView { campaignId: string; name: string | null; modelId: string; version: number; status: string; wave: number; waves: number; devices: Record<string, number>; waiting: string | null; createdBy: string }

const CampaignId = z.string().uuid('campaign ids are UUIDs');
const ACTIONS = ['pause', 'resume', 'abort', 'revert', 'promote'] as const;

const line = (c: CampaignView) => `${c.campaignId}  ${c.modelId} v${c.version}  ${c.status}  wave ${c.wave}/${c.waves}  ${Object.entries(c.devices).map(([k, v]) => `${k} ${v}`).join(', ')}${c.waiting ? `  (${c.waiting})` : ''}`;

export function campaignCommands(program: Command, run: Run): void {
  const campaigns = program.command('campaigns').description('staged rollout campaigns');

  campaigns.command('list', { isDefault: true }).description('list campaigns (newest first)')
    .action((_o: unknown, cmd: Command) => run(cmd, async (ctx) => {
      const { body } = await ctx.api.json<{ campaigns: CampaignView[] }>('GET', '/v1/campaigns');
      emit(ctx.io, body, () => (body.campaigns.length ? table([['CAMPAIGN', 'MODEL', 'STATUS', 'WAVE', 'DEVICES'],
        ...body.campaigns.map((c) => [c.campaignId, `${c.modelId} v${c.version}`, c.status, `${c.wave}/${c.waves}`, Object.entries(c.devices).map(([k, v]) => `${k} ${v}`).join(', ')])]) : ['no campaigns']));
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
      const { body } = await ctx.api.json<CampaignView>('POST', '/v1/campaigns', { ...options, ...(o.name ? { name: o.name } : {}), manifestSha256 });
      emit(ctx.io, body, () => [`started ${line(body)}`]);
    }));

  campaigns.command('show').description('state, devices per state, what it waits for').argument('<campaignId>')
    .action((id: string, _o: unknown, cmd: Command) => run(cmd, async (ctx) => {
      const { body } = await ctx.api.json<CampaignView>('GET', `/v1/campaigns/${parseArg(CampaignId, id, 'campaignId')}`);
      emit(ctx.io, body, () => [line(body)]);
    }));

  campaigns.command('events').description('every event: waves, gate results with their figures, halts, reverts, manual actions').argument('<campaignId>')
    .action((id: string, _o: unknown, cmd: Command) => run(cmd, async (ctx) => {
      const { body } = await ctx.api.json<{ events: { ts: string; type: string; actor: string; detail: Record<string, unknown> | null }[] }>('GET', `/v1/campaigns/${parseArg(CampaignId, id, 'campaignId')}/events`);
      emit(ctx.io, body, () => body.events.map((e) => {
        const failures = (e.detail?.failures as string[] | undefined)?.join('; ');
        return `${e.ts}  ${e.type}  by ${e.actor}${failures ? `: ${failures}` : ''}`;
      }));
    }));

  for (const action of ACTIONS) {
    campaigns.command(action).description(`${action} a campaign by hand`).argument('<campaignId>')
      .action((id: string, _o: unknown, cmd: Command) => run(cmd, async (ctx) => {
        const { body } = await ctx.api.json<CampaignView>('POST', `/v1/campaigns/${parseArg(CampaignId, id, 'campaignId')}/${action}`);
        emit(ctx.io, body, () => [`${action}: ${line(body)}`]);
      }));
  }
}
