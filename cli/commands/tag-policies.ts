// fleetctl tag-policies list | set <tag> <policy.json> | delete <tag> (issue 18): maintenance windows and
// download conditions for the devices that carry a tag (docs/agent.md "Windows and conditions"). Every
// assignment to such a device is signed with the policy unless its campaign names one.
import type { Command } from 'commander';
import { tagPoliciesContract, type TagPolicyView } from '../../shared/api/tag-policies.ts';
import { UpdatePolicy } from '../../shared/update-policy.ts';
import { parseWith, readJson } from '../json-file.ts';
import type { Ctx } from '../context.ts';
import { emit, table } from '../output.ts';

type Run = (cmd: Command, fn: (ctx: Ctx, cmd: Command) => Promise<void>) => Promise<void>;

/** One line per window and condition, e.g. `download mon,tue 01:00-05:00`. */
export function policyLines(p: TagPolicyView): string[] {
  const w = (kind: string, ws: UpdatePolicy['downloadWindows']) => (ws ?? []).map((x) => `${kind} ${x.days.join(',')} ${x.start}-${x.end}`);
  const c = p.policy.conditions ?? {};
  const conditions = [
    c.minBatteryPercent !== undefined ? `battery >= ${c.minBatteryPercent}% or on a charger` : '',
    c.unmeteredOnly ? 'unmetered network only' : '',
    c.notBusy ? 'not while busy' : '',
    c.minFreeDiskBytes !== undefined ? `free disk >= ${c.minFreeDiskBytes} B` : '',
  ].filter(Boolean);
  const all = [...w('download', p.policy.downloadWindows), ...w('switch', p.policy.switchWindows), ...conditions];
  return all.length ? all : ['(no windows, no conditions)'];
}

export function tagPolicyCommands(program: Command, run: Run): void {
  const tp = program.command('tag-policies').description('maintenance windows and download conditions per device tag');

  tp.command('list').description('every tag policy')
    .action((_raw: unknown, cmd: Command) => run(cmd, async (ctx) => {
      const r = await ctx.api.call(tagPoliciesContract.listTagPolicies);
      emit(ctx.io, r, () => r.policies.length
        ? table([['tag', 'policy', 'updated'], ...r.policies.map((p) => [p.tag, policyLines(p).join('; '), `${p.updatedAt} by ${p.updatedBy}`])])
        : ['no tag policies']);
    }));

  tp.command('set').description('set the policy of a tag from a JSON file (docs/agent.md "Windows and conditions")')
    .argument('<tag>').argument('<policy.json>')
    .action((tag: string, file: string, _raw: unknown, cmd: Command) => run(cmd, async (ctx) => {
      const policy = parseWith(UpdatePolicy, readJson('policy', file), file);
      const r = await ctx.api.call(tagPoliciesContract.putTagPolicy, { params: { tag }, body: policy });
      emit(ctx.io, r, () => [`tag ${r.tag}: ${policyLines(r).join('; ')}`]);
    }));

  tp.command('delete').description('remove the policy of a tag (assignments made from now on carry none for it)').argument('<tag>')
    .action((tag: string, _raw: unknown, cmd: Command) => run(cmd, async (ctx) => {
      const r = await ctx.api.call(tagPoliciesContract.deleteTagPolicy, { params: { tag } });
      emit(ctx.io, r, () => [r.deleted ? `tag ${tag}: policy removed` : `tag ${tag} had no policy`]);
    }));
}
