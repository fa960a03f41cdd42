// The configuration the code accepts and the configuration the docs describe, held together: every
// field of the agent's schema (device-agent/config.ts) is in docs/agent.md's configuration table and
// every field of the server's (server/config.ts) in README's, with every environment variable each
// reads; and nothing is documented that the code would refuse.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { AGENT_ENV_VARS, AgentConfig } from '../../device-agent/config.ts';
import { SERVER_ENV_VARS, ServerConfig } from '../../server/config.ts';

const ROOT = join(import.meta.dirname, '..', '..');

/** A schema's fields as dotted paths, nested objects included: {a, b: {c}} -> a, b, b.c */
export function fieldPaths(schema: z.ZodType, prefix = ''): string[] {
  let s: z.ZodType = schema;
  // look through default(), optional(), nullable() to the object inside
  while (s instanceof z.ZodDefault || s instanceof z.ZodOptional || s instanceof z.ZodNullable) s = s.unwrap() as z.ZodType;
  if (!(s instanceof z.ZodObject)) return [];
  return Object.entries(s.shape as Record<string, z.ZodType>).flatMap(([k, v]) => [`${prefix}${k}`, ...fieldPaths(v, `${prefix}${k}.`)]);
}

/** The rows of the first table after a heading: each row's cells. */
export function tableAfter(markdown: string, heading: string): string[][] {
  const lines = markdown.split('\n');
  const start = lines.findIndex((l) => l.trim() === heading);
  if (start < 0) throw new Error(`no heading ${heading}`);
  const rows: string[][] = [];
  for (let i = start + 1; i < lines.length && !/^#{1,2} /.test(lines[i]); i++) {
    if (!lines[i].startsWith('|')) { if (rows.length) break; continue; }
    if (/^\|[-| ]+\|$/.test(lines[i])) continue;
    rows.push(lines[i].split(/(?<!\\)\|/).slice(1, -1).map((c) => c.trim()));
  }
  return rows.slice(1); // the header row
}

const ticked = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]);

/** Fields a docs table documents: every `name` in the first column. */
function documentedFields(rows: string[][]): string[] {
  return rows.flatMap((r) => ticked(r[0]));
}

/** Fields not covered: a field is covered by its own row, by a parent's row (apiRateLimit documents its perSecond), or by rows for all its fields. */
function undocumented(paths: string[], documented: string[]): string[] {
  const has = new Set(documented);
  const ancestors = (p: string) => p.split('.').slice(0, -1).map((_, i, parts) => parts.slice(0, i + 1).join('.'));
  const children = (p: string) => paths.filter((q) => q.startsWith(`${p}.`) && !q.slice(p.length + 1).includes('.'));
  const covered = (p: string): boolean => has.has(p) || ancestors(p).some((a) => has.has(a)) || (children(p).length > 0 && children(p).every(covered));
  return paths.filter((p) => !covered(p));
}

describe('agent configuration: device-agent/config.ts vs docs/agent.md', () => {
  const md = readFileSync(join(ROOT, 'docs', 'agent.md'), 'utf8');
  const rows = tableAfter(md, '## Configuration');
  const paths = fieldPaths(AgentConfig);
  const section = md.slice(md.indexOf('## Configuration'), md.indexOf('\n## ', md.indexOf('## Configuration') + 5));

  it('reads the schema and the table (so the checks below can fail)', () => {
    expect(paths).toContain('deviceSecret');
    expect(paths).toContain('download.retries');
    expect(rows.length).toBeGreaterThan(20);
  });

  it('every field the agent accepts is in the table', () => {
    expect(undocumented(paths, documentedFields(rows))).toEqual([]);
  });

  it('every field in the table is one the agent accepts', () => {
    expect(documentedFields(rows).filter((f) => !paths.includes(f))).toEqual([]);
  });

  it('every FLEET_AGENT_* variable the agent reads is in the section, and every one named there is read', () => {
    const named = [...new Set([...section.matchAll(/FLEET_AGENT_[A-Z_]+/g)].map((m) => m[0]))];
    expect(Object.keys(AGENT_ENV_VARS).filter((v) => !named.includes(v))).toEqual([]);
    expect(named.filter((v) => !(v in AGENT_ENV_VARS))).toEqual([]);
  });

  it("README's agent line names only fields the agent accepts", () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const line = readme.slice(readme.indexOf('The agent: see `docs/agent.md`'), readme.indexOf('\n\n', readme.indexOf('The agent: see `docs/agent.md`')));
    const names = ticked(line).filter((n) => !n.includes('/') && !n.startsWith('FLEET_'));
    expect(names.length).toBeGreaterThan(5);
    expect(names.filter((n) => !paths.includes(n))).toEqual([]);
  });
});

describe('server configuration: server/config.ts vs README', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const rows = tableAfter(readme, '## Configuration');
  const paths = fieldPaths(ServerConfig);

  it('reads the schema and the table (so the checks below can fail)', () => {
    expect(paths).toContain('apiRateLimit.perSecond');
    expect(rows.length).toBeGreaterThan(10);
  });

  it('every field the server accepts is in the table', () => {
    expect(undocumented(paths, documentedFields(rows))).toEqual([]);
  });

  it('every field in the table is one the server accepts', () => {
    expect(documentedFields(rows).filter((f) => !paths.includes(f))).toEqual([]);
  });

  it("every FLEET_* variable the server reads is in its field's row, and every one in the table is read", () => {
    const missing = Object.entries(SERVER_ENV_VARS).filter(([env, field]) => !rows.some((r) => ticked(r[0]).includes(field) && ticked(r[1] ?? '').includes(env)));
    expect(missing.map(([env, field]) => `${field} ${env}`)).toEqual([]);
    const named = rows.flatMap((r) => ticked(r[1] ?? '')).filter((t) => t.startsWith('FLEET_'));
    expect(named.filter((v) => !(v in SERVER_ENV_VARS))).toEqual([]);
  });
});

describe('the checks themselves', () => {
  it('fieldPaths and the coverage rule', () => {
    const s = z.object({ a: z.number().default(1), b: z.object({ c: z.string(), d: z.string() }).default({ c: '', d: '' }) });
    expect(fieldPaths(s)).toEqual(['a', 'b', 'b.c', 'b.d']);
    expect(undocumented(fieldPaths(s), ['a', 'b'])).toEqual([]);
    expect(undocumented(fieldPaths(s), ['a', 'b.c', 'b.d'])).toEqual([]);
    expect(undocumented(fieldPaths(s), ['a', 'b.c'])).toEqual(['b', 'b.d']);
    expect(undocumented(fieldPaths(s), ['b'])).toEqual(['a']);
  });
});
