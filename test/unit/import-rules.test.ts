// Habit 9 of ../shared/STYLE.md, kept by a test: shared/ imports no code of ours outside it; the
// onnxruntime wrapper (runtime/) only shared/; the agent never the server and the server never the
// agent. Every relative import and dynamic import() of every .ts file is checked.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');

/** For each top-level folder, the folders of ours its files may import from. */
const ALLOWED: Record<string, string[]> = {
  shared: ['shared'],
  runtime: ['runtime', 'shared'],
  'device-agent': ['device-agent', 'runtime', 'shared'],
  server: ['server', 'runtime', 'shared'],
};

/**
 * The one exception: the REST contract (shared/api/) takes the campaign request from the rollout
 * engine's own module, so that options added there reach the API description and the CLI without
 * being copied. That module must stay schemas only (zod and shared/), which the last test checks.
 */
const CONTRACT_SOURCES = ['server/rollouts/campaign-config.ts'];

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return tsFiles(p);
    return p.endsWith('.ts') ? [p] : [];
  });
}

/** Relative specifiers of static imports, re-exports and dynamic import() calls. */
export function relativeImports(source: string): string[] {
  const specs: string[] = [];
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)['"](\.{1,2}\/[^'"]+)['"]/g;
  for (let m = re.exec(source); m; m = re.exec(source)) specs.push(m[1]);
  return specs;
}

function violations(top: string): string[] {
  const out: string[] = [];
  for (const file of tsFiles(join(ROOT, top))) {
    for (const spec of relativeImports(readFileSync(file, 'utf8'))) {
      const target = relative(ROOT, resolve(dirname(file), spec));
      const targetTop = target.split('/')[0];
      if (CONTRACT_SOURCES.includes(target) && relative(ROOT, file).startsWith('shared/api/')) continue;
      if (!ALLOWED[top].includes(targetTop)) out.push(`${relative(ROOT, file)} imports ${target}`);
    }
  }
  return out;
}

describe('import rules', () => {
  for (const top of Object.keys(ALLOWED)) {
    it(`${top}/ imports only from ${ALLOWED[top].join(', ')}`, () => {
      expect(violations(top)).toEqual([]);
    });
  }

  it('the server modules the REST contract reads are schemas only: they import zod and shared/ alone', () => {
    for (const f of CONTRACT_SOURCES) {
      const source = readFileSync(join(ROOT, f), 'utf8');
      const targets = relativeImports(source).map((spec) => relative(ROOT, resolve(dirname(join(ROOT, f)), spec)).split('/')[0]);
      expect(targets.filter((t) => t !== 'shared'), f).toEqual([]);
      const packages = [...source.matchAll(/\bfrom\s*['"]([^.'"][^'"]*)['"]/g)].map((m) => m[1]);
      expect(packages.filter((p) => p !== 'zod'), f).toEqual([]);
    }
  });

  it('finds static, re-exported and dynamic relative imports (so the rules above can fail)', () => {
    const src = `import a from '../server/x.ts';\nexport { b } from "./y.ts";\nconst c = await import('../device-agent/z.ts');\nimport './side.ts';`;
    expect(relativeImports(src)).toEqual(['../server/x.ts', './y.ts', '../device-agent/z.ts', './side.ts']);
  });
});
