// fleetctl campaigns …: start a staged rollout from a JSON file, watch it, read its events, and act
// on it by hand (pause, resume, abort, revert, promote). Shapes come from the REST contract.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { z } from 'zod';
import { CampaignAction, CampaignParams, campaignsContract as api, type CampaignView } from '../../shared/api/campaigns.ts';
import { CliError } from '../api-client.ts';
import type { Ctx } from '../context.ts';
import { parseArg, parseOptions, ShaArg } from '../options.ts';
import { CampaignRequest, type CampaignTarget } from '../../server/rollouts/campaign-config.ts';
import { planCampaign } from '../../server/rollouts/plan.ts';
import { emit, table } from '../output.ts';
import { watchCampaign } from './campaign-watch.ts';

type Run = (cmd: Command, fn: (ctx: Ctx, cmd: Command) => Promise<void>) => Promise<void>;

const CampaignId = CampaignParams.shape.campaignId;
const ACTIONS = CampaignAction.options;

export const counts = (c: Pick<CampaignView, 'devices'>) => Object.entries(c.devices).map(([k, v]) => `${k} ${v}`).join(', ');
// [#18] devices holding the update back for their maintenance window or conditions, by reason
const waits = (c: CampaignView) => (c.deviceWaits && Object.keys(c.deviceWaits).length ? `  devices waiting: ${Object.entries(c.deviceWaits).map(([k, v]) => `${k} ${v}`).join(', ')}` : '');
// [#19] a release campaign shows its release and every model of it
const what = (c: CampaignView) => (c.release ? `release ${c.release.name} v${c.release.version} (${c.release.models.map((m) => `${m.modelId} v${m.version}`).join(', ')})` : `${c.modelId} v${c.version}`);
const line = (c: CampaignView) => `${c.campaignId}  ${what(c)}  ${c.status}  wave ${c.wave}/${c.waves}  ${counts(c)}${c.waiting ? `  (${c.waiting})` : ''}${waits(c)}`;
/** what the server allows now, so an operator never tries an action that will be refused */
const actionsLine = (c: CampaignView) => `actions: ${c.actions.length ? c.actions.join(', ') : 'none (final)'}`;
const num = (min: number, max: number) => z.coerce.number().min(min).max(max);
const PlanOptions = z.object({
  devices: z.coerce.number().int().min(1).max(10_000_000).optional(),
  latency: num(1, 100).refine((x) => x > 1, 'a regression is a ratio above 1'),
  errors: num(0, 100).refine((x) => x > 0, 'a regression is more than 0 points'),
  latencySd: num(0, 10),
  baselineErrors: num(0, 100),
  inferencesPerWindow: z.coerce.number().int().min(1).max(1_000_000),
  power: num(0.5, 0.999),
});

interface DeviceView { deviceId: string; hardware: string | null; tags: string[]; active: { modelId: string; version: number } | null }

function matchesTarget(d: DeviceView, t: CampaignTarget): boolean {
  if (t.deviceIds && !t.deviceIds.includes(d.deviceId)) return false;
  if (t.hardware && !t.hardware.includes(d.hardware ?? '')) return false;
  if (t.tags && !t.tags.every((tag) => d.tags.includes(tag))) return false;
  if (t.currentModel) {
    if (d.active?.modelId !== t.currentModel.modelId) return false;
    if (t.currentModel.version !== undefined && d.active?.version !== t.currentModel.version) return false;
  }
  return true;
}

const seconds = z.string().trim().min(1).transform(Number).pipe(z.number({ error: 'expected a number of seconds' }).positive('must be more than 0'));
const WatchOptions = z.object({ interval: seconds.default(2), timeout: seconds.optional() });

export function campaignCommands(program: Command, run: Run): void {
  const campaigns = program.command('campaigns').description('staged rollout campaigns');

  campaigns.command('list', { isDefault: true }).description('list campaigns (newest first)')
    .action((_o: unknown, cmd: Command) => run(cmd, async (ctx) => {
      const body = await ctx.api.call(api.listCampaigns);
      emit(ctx.io, body, () => (body.campaigns.length ? table([['CAMPAIGN', 'MODEL', 'STATUS', 'WAVE', 'ACTIONS', 'DEVICES'],
        ...body.campaigns.map((c) => [c.campaignId, what(c), c.status, `${c.wave}/${c.waves}`, c.actions.join(',') || '-', counts(c)])]) : ['no campaigns']));
    }));

  campaigns.command('create').description('start a campaign for a bundle, or for a release (--release); options (waves, gates, target…) from a JSON file')
    .argument('[manifestSha256]', 'the bundle to roll out (or --release)')
    .option('--release <name>', 'roll out a release (every model of it, as one set per device) instead of a bundle')
    .option('--release-version <n>', 'the release\'s version (default: its latest)')
    .option('--config <file>', 'JSON with target, waves, gates, onGateFailure, rateLimitPerMinute, maxRetries, deviceDeadlineSeconds, lateJoiners')
    .option('--name <name>', 'a name for the campaign')
    .action((shaArg: string | undefined, o: { config?: string; name?: string; release?: string; releaseVersion?: string }, cmd: Command) => run(cmd, async (ctx) => {
      if ((shaArg === undefined) === (o.release === undefined)) throw new CliError('name exactly one of a bundle (manifestSha256) or --release <name>', 'FLEETCTL_ERR_USAGE');
      if (o.releaseVersion !== undefined && o.release === undefined) throw new CliError('--release-version needs --release', 'FLEETCTL_ERR_USAGE');
      const what = o.release !== undefined
        ? { release: o.release, ...(o.releaseVersion !== undefined ? { releaseVersion: parseArg(z.coerce.number().int().positive(), o.releaseVersion, '--release-version') } : {}) }
        : { manifestSha256: parseArg(ShaArg, shaArg!, 'manifestSha256') };
      let options: Record<string, unknown> = {};
      if (o.config) {
        try {
          options = JSON.parse(readFileSync(o.config, 'utf8'));
        } catch (err) {
          throw new CliError(`--config ${o.config}: ${(err as Error).message}`, 'FLEETCTL_ERR_CONFIG');
        }
      }
      const body = await ctx.api.call(api.createCampaign, { body: { ...options, ...(o.name ? { name: o.name } : {}), ...what } });
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

  campaigns.command('plan').description('devices and inferences each wave needs for the sequential test to detect a regression (docs/canary-statistics.md)')
    .argument('<campaign.json>', 'the campaign config (as for create; manifestSha256 may be left out)')
    .option('--devices <n>', 'fleet size (default: the server\'s devices matching the campaign target)')
    .option('--latency <ratio>', 'p95 regression to detect', '1.2')
    .option('--errors <points>', 'error-rate regression to detect, in percentage points', '1')
    .option('--latency-sd <sd>', 'spread of one device\'s log p95 ratio between models (0.1: about 10%)', '0.1')
    .option('--baseline-errors <points>', 'the previous model\'s error rate, in points', '0.5')
    .option('--inferences-per-window <n>', 'inferences per telemetry window on one device', '30')
    .option('--power <p>', 'chance of detecting a regression that is there', '0.8')
    .action((file: string, o: Record<string, string | undefined>, cmd: Command) => run(cmd, async (ctx) => {
      const opts = parseOptions(PlanOptions, o, 'plan');
      let raw: Record<string, unknown>;
      try {
        raw = JSON.parse(readFileSync(file, 'utf8'));
      } catch (err) {
        throw new CliError(`${file}: ${(err as Error).message}`, 'FLEETCTL_ERR_CONFIG');
      }
      const parsed = CampaignRequest.safeParse(raw.release ? raw : { manifestSha256: '0'.repeat(64), ...raw });
      if (!parsed.success) {
        throw new CliError(`${file}: ${parsed.error.issues.slice(0, 3).map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`).join('; ')}`, 'FLEETCTL_ERR_CONFIG');
      }
      const config = parsed.data;
      let fleet = opts.devices;
      if (fleet === undefined) {
        const { body } = await ctx.api.json<{ devices: DeviceView[] }>('GET', '/v1/devices?limit=100000');
        fleet = body.devices.filter((d) => matchesTarget(d, config.target)).length;
      }
      const plan = planCampaign(config, fleet, {
        latencyRegression: opts.latency, errorRegressionPoints: opts.errors, latencySd: opts.latencySd,
        baselineErrorPoints: opts.baselineErrors, inferencesPerWindow: opts.inferencesPerWindow, power: opts.power,
      });
      const yes = (b: boolean) => (b ? 'yes' : 'no');
      emit(ctx.io, plan, () => [
        `${plan.fleetDevices} devices; alpha ${plan.alpha}, beta ${plan.beta}, power ${opts.power}; a device's observation: ${plan.assumptions.windowsPerDevice} windows x ${opts.inferencesPerWindow} inferences`,
        `devices the sequential test needs: ${plan.needs.anyDecision} to decide anything, ${plan.needs.latency ?? '-'} to detect ${opts.latency}x p95, ${plan.needs.errors ?? '-'} to detect +${opts.errors} points of errors, ${plan.needs.advanceGood ?? '-'} to advance a good model`,
        ...table([['WAVE', 'DEVICES', 'SO FAR', `DETECTS ${opts.latency}x P95`, `DETECTS +${opts.errors}PT ERRORS`, 'INFERENCES/DEVICE FOR ERRORS', 'ADVANCES A GOOD MODEL'],
          ...plan.waves.map((w) => [w.wave, w.devices, w.cumulativeDevices, yes(w.detectsLatency), yes(w.detectsErrors), w.inferencesPerDeviceForErrors, yes(w.advancesGood)])]),
        ...plan.warnings.map((w) => `warning: ${w}`),
      ]);
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
