// fleetctl telemetry: the fleet's figures per model version (and hardware class, device) from
// GET /v1/telemetry; one row per series with the whole range's totals, or one per bucket with --points.
import type { Command } from 'commander';
import type { TelemetryFigures, TelemetryResponse, TelemetrySeries } from '../../shared/api/telemetry.ts';
import { CliError } from '../api-client.ts';
import type { Ctx } from '../context.ts';
import { emit, pct, table } from '../output.ts';

type Run = (cmd: Command, fn: (ctx: Ctx, cmd: Command) => Promise<void>) => Promise<void>;

interface Opts { model?: string; modelVersion?: string; hardware?: string; device?: string; from?: string; to?: string; since?: string; bucket?: string; groupBy?: string; points?: boolean; perModel?: boolean }

const UNITS: Record<string, number> = { m: 60_000, h: 3600_000, d: 86400_000 };

/** --since 90m / 6h / 7d: a start relative to now */
export function sinceToFrom(since: string, now: number): string {
  const m = /^(\d+)([mhd])$/.exec(since);
  if (!m) throw new CliError(`--since ${since}: give a number and m, h or d (90m, 6h, 7d)`, 'FLEETCTL_ERR_USAGE');
  return new Date(now - Number(m[1]) * UNITS[m[2]]).toISOString();
}

const ms = (v: number | null) => (v === null ? '-' : v.toFixed(2));
const worstDrift = (f: TelemetryFigures) => {
  const w = [...f.drift].sort((a, b) => b.psi - a.psi)[0];
  return w ? `${w.name} ${w.psi.toFixed(3)}` : '-';
};

export function telemetryCommand(program: Command, run: Run): void {
  program.command('telemetry').description('inference count, error rate, p50/p95/p99 latency (ms) and drift (PSI) per model version')
    .option('--model <modelId>', 'only this model')
    .option('--model-version <n>', 'only this version (needs --model)')
    .option('--hardware <class>', 'only this hardware class')
    .option('--device <deviceId>', 'only this device (hour buckets)')
    .option('--group-by <dims>', 'also split by hardware and/or device: hardware, device or hardware,device')
    .option('--bucket <minute|hour>', 'bucket size (default minute; per device: hour)')
    .option('--since <age>', 'from this long ago: 90m, 6h, 7d (default: 1h for minute buckets, 24h for hour)')
    .option('--from <iso>', 'start (ISO 8601), instead of --since')
    .option('--to <iso>', 'end (ISO 8601, default now)')
    .option('--points', 'one row per bucket instead of one per series')
    .option('--per-model', 'each model of devices running several models on its own, from its per-model figures (kept rawHours), instead of their primary model')
    .action((o: Opts, cmd: Command) => run(cmd, async (ctx) => {
      const perDevice = o.device !== undefined || (o.groupBy ?? '').includes('device');
      const q = new URLSearchParams();
      const bucket = o.bucket ?? (perDevice ? 'hour' : 'minute');
      q.set('bucket', bucket);
      if (o.since && o.from) throw new CliError('give --since or --from, not both', 'FLEETCTL_ERR_USAGE');
      const from = o.since ? sinceToFrom(o.since, Date.now()) : o.from;
      for (const [k, v] of [['from', from], ['to', o.to], ['modelId', o.model], ['version', o.modelVersion], ['hardware', o.hardware], ['deviceId', o.device], ['groupBy', o.groupBy]] as const) {
        if (v !== undefined) q.set(k, v);
      }
      if (o.perModel) q.set('perModel', 'true'); // [#19]
      const { body } = await ctx.api.json<TelemetryResponse>('GET', `/v1/telemetry?${q}`);
      const byHw = body.groupBy.includes('hardware'), byDev = body.groupBy.includes('device');
      const head = (s: TelemetrySeries) => [`${s.modelId} v${s.version}`, ...(byHw ? [s.hardware ?? '-'] : []), ...(byDev ? [s.deviceId ?? '-'] : [])];
      const cols = ['MODEL', ...(byHw ? ['HARDWARE'] : []), ...(byDev ? ['DEVICE'] : [])];
      const figs = (f: TelemetryFigures) => [f.count, f.errors, pct(f.errorRate), ms(f.p50), ms(f.p95), ms(f.p99), worstDrift(f)];
      const figCols = ['INFERENCES', 'ERRORS', 'ERROR RATE', 'P50', 'P95', 'P99', 'WORST DRIFT (PSI)'];
      emit(ctx.io, body, () => {
        if (body.series.length === 0) return [`no telemetry from ${body.from} to ${body.to}`];
        const title = `${body.bucket} buckets from ${body.from} to ${body.to}; latency in ms${body.perModel ? ' (per model of a set: medians of window percentiles)' : ''}`;
        if (o.points) return [title, ...table([[...cols, 'BUCKET', ...figCols], ...body.series.flatMap((s) => s.points.map((p) => [...head(s), p.t, ...figs(p)]))])];
        return [title, ...table([[...cols, ...figCols], ...body.series.map((s) => [...head(s), ...figs(s.total)])])];
      });
    }));
}
