// fleetctl campaigns rehearse <campaign.json>: run the campaign an operator is about to start on a
// simulated twin of the fleet, before a real device is touched. The real server is only read: the fleet's
// shape (POST /v1/fleet/shape), the candidate's and baseline's bundles and their artifacts (checked
// against their manifests' SHA-256 and length). The twin (firmware-sim/twin.ts) runs in this process
// with its own fleet server and its devices in child processes (firmware-sim/run-scenario.ts).
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import { FleetShape } from '../../shared/api/fleet-shape.ts';
import { envelopeDigest } from '../../shared/envelope.ts';
import { GoldenSet, Manifest, type Envelope, type TensorJson } from '../../shared/messages.ts';
import { CliError, type ApiClient } from '../api-client.ts';
import type { Ctx } from '../context.ts';
import { parseOptions } from '../options.ts';
import { emit, pct, table } from '../output.ts';

type Run = (cmd: Command, fn: (ctx: Ctx, cmd: Command) => Promise<void>) => Promise<void>;

export const RehearseOptions = z.object({
  maxDevices: z.coerce.number().int().min(1).max(20_000).default(2000),
  window: z.coerce.number().int().min(10).max(30 * 86_400).default(3600),
  maxRate: z.coerce.number().positive().max(50).default(2),
  minRate: z.coerce.number().positive().max(50).default(1),
  processes: z.coerce.number().int().min(0).max(16).optional(),
  timeout: z.coerce.number().int().min(10).max(86_400).default(1800),
}).strict();

interface BundleView { manifestSha256: string; modelId: string; version: number; artifactSha256: string; envelope: Envelope; manifest: unknown }

/** A bundle as the real server has it: the manifest checked against its digest, the artifact against the manifest. */
async function fetchBundle(api: ApiClient, manifestSha256: string): Promise<{ manifest: Manifest; artifact: Uint8Array; healthInputs: Record<string, TensorJson>[] }> {
  const { body } = await api.json<BundleView>('GET', `/v1/bundles/${manifestSha256}`);
  if (envelopeDigest(body.envelope) !== manifestSha256) throw new CliError(`bundle ${manifestSha256}: the server's envelope does not hash to its manifest digest`, 'FLEETCTL_ERR_INTEGRITY');
  const manifest = Manifest.parse(JSON.parse(body.envelope.signed));
  const artifact = await api.getBytes(`/v1/artifacts/${manifest.artifact.sha256}`);
  const sha = createHash('sha256').update(artifact).digest('hex');
  if (sha !== manifest.artifact.sha256 || artifact.length !== manifest.artifact.length) {
    throw new CliError(`artifact of ${manifestSha256}: got ${artifact.length} bytes with SHA-256 ${sha}, the manifest says ${manifest.artifact.length} bytes ${manifest.artifact.sha256}`, 'FLEETCTL_ERR_INTEGRITY');
  }
  let vectors = manifest.healthCheck.vectors;
  if (manifest.healthCheck.golden) {
    const g = manifest.healthCheck.golden;
    const bytes = await api.getBytes(`/v1/artifacts/${g.sha256}`);
    if (createHash('sha256').update(bytes).digest('hex') !== g.sha256 || bytes.length !== g.length) throw new CliError(`golden set of ${manifestSha256} does not match its manifest`, 'FLEETCTL_ERR_INTEGRITY');
    vectors = GoldenSet.parse(JSON.parse(new TextDecoder().decode(bytes))).vectors;
  }
  return { manifest, artifact, healthInputs: vectors.map((v) => v.inputs) };
}

export interface WaveReport { wave: number; gate: 'passed' | 'failed'; atMs: number; failures: string[]; figures: Record<string, unknown> }

export interface RehearsalSummary {
  prediction: { status: string; haltWave: number | null; reasons: string[]; devicesTouched: { twin: number; real: number }; campaignMs: number };
  waves: WaveReport[];
  twin: { devices: number; realDevices: number; cost: { ratio: number; candidateMs: number; baselineMs: number } | null };
}

/** The human form of a rehearsal report: the prediction, then one row per judged wave. */
export function rehearsalLines(r: RehearsalSummary): string[] {
  const p = r.prediction;
  const num = (v: unknown) => (typeof v === 'number' ? v : null);
  return [
    p.status === 'completed'
      ? `prediction: completed in ${(p.campaignMs / 1000).toFixed(1)} s`
      : `prediction: ${p.status} in wave ${p.haltWave}: ${p.reasons.join('; ') || '(no gate failure recorded)'}`,
    `devices touched: ${p.devicesTouched.twin} of ${r.twin.devices} twin devices (about ${p.devicesTouched.real} of ${r.twin.realDevices} real)`,
    ...(r.twin.cost ? [`model cost: candidate ${r.twin.cost.ratio.toFixed(2)}x the baseline (${r.twin.cost.candidateMs.toFixed(3)} vs ${r.twin.cost.baselineMs.toFixed(3)} ms on this host)`] : []),
    '',
    ...table([['WAVE', 'GATE', 'AT', 'UPDATED', 'REPORTING', 'INFERENCES', 'ERRORS', 'P95 RATIO', 'FAILURES'],
      ...r.waves.map((w) => {
        const inferences = num(w.figures.inferences), errors = num(w.figures.errors) ?? 0, ratio = num(w.figures.p95Ratio);
        return [w.wave, w.gate, `${(w.atMs / 1000).toFixed(1)} s`, num(w.figures.updated), num(w.figures.reporting), inferences,
          inferences ? pct(errors / inferences) : null, ratio === null ? null : ratio.toFixed(2), w.failures.join('; ') || null];
      })]),
  ];
}

export function rehearseCommand(campaigns: Command, run: Run): void {
  campaigns.command('rehearse').description('run a campaign file on a simulated twin of the fleet first: which wave halts and why, how long it takes; nothing is sent to real devices')
    .argument('<campaign.json>', 'the campaign as it would be POSTed (manifestSha256, target, waves, gates...)')
    .option('--max-devices <n>', 'at most this many twin devices, class shares kept (default 2000)')
    .option('--window <seconds>', 'telemetry window the fleet shape is read from (default 3600)')
    .option('--max-rate <n>', 'cap on the twin workload, inferences per second per device (default 2)')
    .option('--min-rate <n>', 'floor of the twin workload, inferences per second per device (default 1)')
    .option('--processes <n>', 'child processes the twin devices run in (default: one per 500 devices)')
    .option('--timeout <seconds>', 'give up on the rehearsal after this long (default 1800)')
    .action((file: string, o: Record<string, string | undefined>, cmd: Command) => run(cmd, async (ctx) => {
      const opts = parseOptions(RehearseOptions, Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)));
      let raw: unknown;
      try { raw = JSON.parse(readFileSync(file, 'utf8')); } catch (err) { throw new CliError(`${file}: ${(err as Error).message}`, 'FLEETCTL_ERR_CONFIG'); }
      const { CampaignRequest } = await import('../../server/rollouts/campaign-config.ts');
      const parsed = CampaignRequest.safeParse(raw);
      if (!parsed.success) throw new CliError(`${file}: ${parsed.error.issues.slice(0, 3).map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`, 'FLEETCTL_ERR_CONFIG');
      if (!parsed.data.manifestSha256) throw new CliError(`${file}: rehearse takes a campaign of one bundle (manifestSha256); a release campaign is not rehearsed`, 'FLEETCTL_ERR_CONFIG');
      const campaign = raw as Record<string, unknown>;
      // progress on stderr, with --json too (the report is the only thing on stdout)
      const say = (line: string) => ctx.io.err(line);

      const candidate = await fetchBundle(ctx.api, parsed.data.manifestSha256!);
      const shape = FleetShape.parse((await ctx.api.json('POST', '/v1/fleet/shape', { target: parsed.data.target, windowSeconds: opts.window })).body);
      // the baseline: what most targeted devices run now, other than the candidate
      const running = new Map<string, number>();
      for (const c of shape.classes) for (const m of c.currentModels) if (m.manifestSha256 && m.manifestSha256 !== parsed.data.manifestSha256) running.set(m.manifestSha256, (running.get(m.manifestSha256) ?? 0) + m.devices);
      const ranked = [...running.entries()].sort((a, b) => b[1] - a[1]);
      const baselineSha = ranked[0]?.[0] ?? null;
      const baseline = baselineSha ? await fetchBundle(ctx.api, baselineSha) : null;

      const dir = mkdtempSync(join(tmpdir(), 'fleet-rehearse-'));
      try {
        writeFileSync(join(dir, 'candidate.onnx'), candidate.artifact);
        if (baseline) writeFileSync(join(dir, 'baseline.onnx'), baseline.artifact);
        // the candidate's health-check inputs: both twin bundles' health check and drift baseline, and the workload
        writeFileSync(join(dir, 'reference.json'), JSON.stringify({ samples: candidate.healthInputs.map((inputs) => ({ inputs })) }));
        const { twinScenario, failureKinds } = await import('../../firmware-sim/twin.ts');
        const plan = twinScenario(shape, campaign, {
          model: { candidateFile: join(dir, 'candidate.onnx'), ...(baseline ? { baselineFile: join(dir, 'baseline.onnx') } : {}), reference: join(dir, 'reference.json'), modelId: candidate.manifest.modelId },
          maxDevices: opts.maxDevices, maxInferencesPerSecond: opts.maxRate, minInferencesPerSecond: opts.minRate, timeoutMs: opts.timeout * 1000, ...(opts.processes !== undefined ? { processes: opts.processes } : {}),
        });
        if (ranked.length > 1) plan.notes.push(`the target runs ${ranked.length} models; the twin runs the most common, ${baselineSha} (${ranked[0][1]} devices), on every device`);
        if (!baseline) plan.notes.push('no targeted device runs a model: the twin has no baseline, latency gates have nothing to compare with');
        say(`twin: ${plan.twinDevices} devices for ${plan.realDevices} real ones, ${plan.inferencesPerSecond} inferences/s per device`);
        for (const n of plan.notes) say(`note: ${n}`);
        const { runScenario } = await import('../../firmware-sim/run-scenario.ts');
        const out = await runScenario(plan.scenario, { log: say });

        const waves: WaveReport[] = out.campaign.events.filter((e) => e.type === 'gate_passed' || e.type === 'gate_failed').map((e) => {
          const d = (e.detail ?? {}) as { wave: number; failures?: string[]; figures?: Record<string, unknown> };
          return { wave: d.wave, gate: e.type === 'gate_passed' ? 'passed' : 'failed', atMs: e.at, failures: d.failures ?? [], figures: d.figures ?? {} };
        });
        const halted = out.campaign.status !== 'completed';
        const report = {
          prediction: {
            status: out.campaign.status,
            haltWave: halted ? out.campaign.wave : null,
            reasons: out.campaign.failures,
            reasonKinds: failureKinds(out.campaign.failures),
            devicesTouched: { twin: out.devicesTouched, real: Math.round(out.devicesTouched / plan.scale) },
            timeToCompleteMs: halted ? null : out.timings.campaignMs,
            campaignMs: out.timings.campaignMs,
          },
          waves,
          twin: { devices: plan.twinDevices, realDevices: plan.realDevices, scale: plan.scale, inferencesPerSecond: plan.inferencesPerSecond, groups: plan.scenario.fleet.groups, cost: out.cost, notes: plan.notes },
          candidate: { manifestSha256: parsed.data.manifestSha256, modelId: candidate.manifest.modelId, version: candidate.manifest.version, artifactSha256: candidate.manifest.artifact.sha256 },
          baseline: baseline && baselineSha ? { manifestSha256: baselineSha, modelId: baseline.manifest.modelId, version: baseline.manifest.version, artifactSha256: baseline.manifest.artifact.sha256 } : null,
          shape,
          events: out.campaign.events,
        };
        emit(ctx.io, report, () => rehearsalLines(report));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }));
}
