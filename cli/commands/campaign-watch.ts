// fleetctl campaigns watch: look at a campaign every few seconds until it reaches a final status.
// On a terminal one line is redrawn (a progress bar over the campaign's devices); otherwise a line is
// printed whenever something changed, so a log or a CI job reads cleanly. Completed exits 0; reverted
// or aborted exit 1, as does --timeout.
import { campaignsContract as api, FINAL_STATUSES, type CampaignView } from '../../shared/api/campaigns.ts';
import { CliError } from '../api-client.ts';
import type { Ctx } from '../context.ts';

export interface WatchOptions {
  intervalMs: number;
  timeoutMs?: number;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
}

const FINISHED = ['updated', 'failed', 'reverted'];

/** devices that are done (updated, failed for good, reverted) out of all the campaign's devices */
export function progress(c: Pick<CampaignView, 'devices'>): { done: number; total: number } {
  const total = Object.values(c.devices).reduce((a, n) => a + n, 0);
  const done = Object.entries(c.devices).filter(([s]) => FINISHED.includes(s)).reduce((a, [, n]) => a + n, 0);
  return { done, total };
}

export function progressBar(c: CampaignView, width = 30): string {
  const { done, total } = progress(c);
  const filled = total ? Math.round((done / total) * width) : 0;
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${total}  ${c.status}  wave ${c.wave}/${c.waves}${c.waiting ? `  (${c.waiting})` : ''}`;
}

export function summary(c: CampaignView): string {
  const devices = Object.entries(c.devices).map(([k, v]) => `${k} ${v}`).join(', ');
  const acts = c.status === 'halted' || c.status === 'paused' ? `  actions: ${c.actions.join(', ')}` : '';
  return `${c.status}  wave ${c.wave}/${c.waves}  ${devices || 'no devices'}${c.waiting ? `  (${c.waiting})` : ''}${acts}`;
}

export async function watchCampaign(ctx: Ctx, campaignId: string, o: WatchOptions): Promise<CampaignView> {
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const now = o.now ?? Date.now;
  const started = now();
  const tty = !ctx.io.json && ctx.io.tty === true && ctx.io.write !== undefined;
  let last = '';
  let lastStatus = '';
  let drawn = 0;
  for (;;) {
    const c = await ctx.api.call(api.getCampaign, { params: { campaignId } });
    const { deviceList: _l, config: _c, ...view } = c;
    const final = FINAL_STATUSES.includes(view.status);
    if (tty) {
      // a status change gets its own line above the bar, so the history stays on screen
      if (lastStatus && view.status !== lastStatus) { ctx.io.write!('\n'); drawn = 0; }
      const bar = progressBar(view);
      ctx.io.write!(`\r${bar}${' '.repeat(Math.max(0, drawn - bar.length))}`);
      drawn = bar.length;
      if (final) ctx.io.write!('\n');
    } else if (!ctx.io.json) {
      const s = summary(view);
      if (s !== last) ctx.io.out(`${new Date(now()).toISOString()}  ${s}`);
      last = s;
    }
    lastStatus = view.status;
    if (final) {
      if (ctx.io.json) ctx.io.out(JSON.stringify(view, null, 2));
      if (view.status === 'completed') return view;
      throw new CliError(`campaign ${campaignId} ended ${view.status}, not completed: see fleetctl campaigns events ${campaignId}`, `FLEETCTL_ERR_CAMPAIGN_${view.status.toUpperCase()}`, { reported: true });
    }
    if (o.timeoutMs !== undefined && now() - started >= o.timeoutMs) {
      if (tty) ctx.io.write!('\n');
      throw new CliError(`campaign ${campaignId} is still ${view.status} after ${o.timeoutMs / 1000} s (--timeout)`, 'FLEETCTL_ERR_TIMEOUT');
    }
    await sleep(o.intervalMs);
  }
}
