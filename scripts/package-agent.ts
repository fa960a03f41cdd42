// npm run package:agent: the device agent as something a device installs (docs/agent.md "Install").
//
//   build/package/fleet-agent-<version>.tgz    npm package: `npm install -g fleet-agent-<version>.tgz`
//   build/package/fleet-agent_<version>_all.deb Debian package (dpkg-deb): agent, fleet user, unit
//
// The agent and its runtime dependencies (mqtt, zod, tweetnacl, onnxruntime-web's JavaScript) are one
// esbuild bundle (lib/agent.mjs); beside it are the only onnxruntime-web files the agent loads in Node
// (ort-wasm-simd-threaded.mjs and .wasm: the WASM backend, single thread). No node_modules, no install
// scripts, no compiler: installing needs no network. Run with --out DIR to build elsewhere.
import { build, type Metafile } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { AGENT_VERSION } from '../shared/version.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ORT_DIST = join(ROOT, 'node_modules', 'onnxruntime-web', 'dist');
/** what ort.node.min.mjs loads at the first session (WASM backend, numThreads = 1; runtime/onnx-session.ts) */
const ORT_RUNTIME_FILES = ['ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm'];
const NODE_RANGE = '>=20.19 <21 || >=22';

export interface AgentPackages { tgz: string; deb: string; stage: string; version: string }

export async function packageAgent(outDir: string): Promise<AgentPackages> {
  const version = AGENT_VERSION;
  rmSync(outDir, { recursive: true, force: true });
  const stage = join(outDir, 'fleet-agent');
  mkdirSync(join(stage, 'lib'), { recursive: true });
  mkdirSync(join(stage, 'bin'), { recursive: true });

  const result = await build({
    entryPoints: [join(ROOT, 'device-agent', 'main.ts')],
    outfile: join(stage, 'lib', 'agent.mjs'),
    bundle: true, platform: 'node', format: 'esm', target: 'node20',
    // CommonJS dependencies (mqtt's) call require() for Node built-ins; an ES module has none of its own
    banner: { js: "import { createRequire as __fleetCreateRequire } from 'node:module'; const require = __fleetCreateRequire(import.meta.url);" },
    legalComments: 'none', metafile: true, logLevel: 'warning',
  });
  // the shadow candidate's thread (device-agent/shadow-worker.ts spawns lib/shadow-thread.mjs beside the bundle)
  await build({
    entryPoints: [join(ROOT, 'device-agent', 'shadow-thread.mjs')],
    outfile: join(stage, 'lib', 'shadow-thread.mjs'),
    bundle: true, platform: 'node', format: 'esm', target: 'node20',
    banner: { js: "import { createRequire as __fleetCreateRequire } from 'node:module'; const require = __fleetCreateRequire(import.meta.url);" },
    legalComments: 'none', logLevel: 'warning',
  });
  for (const f of ORT_RUNTIME_FILES) copyFileSync(join(ORT_DIST, f), join(stage, 'lib', f));

  const bin = readFileSync(join(ROOT, 'packaging', 'agent', 'bin.mjs'), 'utf8').replace('__VERSION__', version);
  writeFileSync(join(stage, 'bin', 'fleet-agent.mjs'), bin);
  chmodSync(join(stage, 'bin', 'fleet-agent.mjs'), 0o755);
  copyFileSync(join(ROOT, 'packaging', 'agent', 'agent.json.example'), join(stage, 'agent.json.example'));
  copyFileSync(join(ROOT, 'packaging', 'agent', 'fleet-agent.service'), join(stage, 'fleet-agent.service'));
  copyFileSync(join(ROOT, 'docs', 'agent.md'), join(stage, 'README.md'));
  writeFileSync(join(stage, 'THIRD_PARTY_LICENSES.txt'), thirdPartyLicenses(result.metafile));
  writeFileSync(join(stage, 'package.json'), `${JSON.stringify({
    name: 'fleet-agent', version, type: 'module',
    description: 'Edge model fleet agent: verifies and serves signed INT8 model bundles, takes OTA updates over MQTT',
    engines: { node: NODE_RANGE },
    bin: { 'fleet-agent': 'bin/fleet-agent.mjs' },
    files: ['bin', 'lib', 'agent.json.example', 'fleet-agent.service', 'THIRD_PARTY_LICENSES.txt'],
  }, null, 2)}\n`);

  execFileSync('npm', ['pack', '--silent', '--ignore-scripts', '--pack-destination', outDir], { cwd: stage, stdio: ['ignore', 'ignore', 'inherit'] });
  const tgz = join(outDir, `fleet-agent-${version}.tgz`);
  if (!existsSync(tgz)) throw new Error(`npm pack did not write ${tgz}`);
  const deb = buildDeb(stage, outDir, version);
  return { tgz, deb, stage, version };
}

/** The license text of every package the bundle took code from, and of onnxruntime-web (its WASM). */
function thirdPartyLicenses(meta: Metafile): string {
  const roots = new Set<string>([realpathSync(join(ROOT, 'node_modules', 'onnxruntime-web'))]);
  for (const input of Object.keys(meta.inputs)) {
    const m = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(resolve(ROOT, input));
    if (m) roots.add(realpathSync(m[1]));
  }
  const parts: string[] = [];
  for (const dir of [...roots].sort()) {
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name: string; version: string; license?: string };
    const file = readdirSync(dir).find((f) => /^(licen[cs]e|copying)/i.test(f));
    const text = file ? readFileSync(join(dir, file), 'utf8').trim() : `(no license file; package.json says ${pkg.license ?? 'nothing'})`;
    parts.push(`${pkg.name}@${pkg.version} (${pkg.license ?? 'see text'})\n\n${text}\n`);
  }
  return `fleet-agent bundles code from these packages:\n\n${parts.join(`\n${'-'.repeat(72)}\n\n`)}`;
}

function buildDeb(stage: string, outDir: string, version: string): string {
  const root = join(outDir, 'deb-root');
  const lib = join(root, 'usr', 'lib', 'fleet-agent');
  for (const d of ['bin', 'lib']) cpSync(join(stage, d), join(lib, d), { recursive: true });
  copyFileSync(join(stage, 'package.json'), join(lib, 'package.json'));
  mkdirSync(join(root, 'usr', 'bin'), { recursive: true });
  symlinkSync('../lib/fleet-agent/bin/fleet-agent.mjs', join(root, 'usr', 'bin', 'fleet-agent'));
  mkdirSync(join(root, 'usr', 'lib', 'systemd', 'system'), { recursive: true });
  copyFileSync(join(stage, 'fleet-agent.service'), join(root, 'usr', 'lib', 'systemd', 'system', 'fleet-agent.service'));
  const share = join(root, 'usr', 'share', 'fleet-agent');
  mkdirSync(share, { recursive: true });
  copyFileSync(join(stage, 'agent.json.example'), join(share, 'agent.json.example'));
  const doc = join(root, 'usr', 'share', 'doc', 'fleet-agent');
  mkdirSync(doc, { recursive: true });
  copyFileSync(join(stage, 'README.md'), join(doc, 'README.md'));
  copyFileSync(join(stage, 'THIRD_PARTY_LICENSES.txt'), join(doc, 'copyright'));

  const control = join(root, 'DEBIAN');
  mkdirSync(control);
  for (const s of ['postinst', 'prerm', 'postrm']) {
    copyFileSync(join(ROOT, 'packaging', 'deb', s), join(control, s));
    chmodSync(join(control, s), 0o755);
  }
  normaliseModes(root);
  writeFileSync(join(control, 'control'), [
    'Package: fleet-agent',
    `Version: ${version}`,
    'Architecture: all',
    'Maintainer: edge-fleet maintainers <fleet@localhost>',
    // Debian 12 ships Node 18: take Node 20.19+ from NodeSource or a newer release
    'Depends: nodejs (>= 20.19), passwd',
    'Section: net',
    'Priority: optional',
    `Installed-Size: ${Math.ceil(treeBytes(root, control) / 1024)}`,
    'Description: edge model fleet agent',
    ' Keeps one verified, health-checked ML model ready on the device, takes signed',
    ' model updates from the fleet server over MQTT and serves inference on localhost.',
    ' Runs as the fleet system user under systemd (fleet-agent.service).',
    '',
  ].join('\n'));
  const deb = join(outDir, `fleet-agent_${version}_all.deb`);
  execFileSync('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', root, deb], { stdio: ['ignore', 'ignore', 'inherit'] });
  return deb;
}

/** Files 0644, folders and executables 0755, whatever the checkout's umask was. */
function normaliseModes(dir: string): void {
  for (const name of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, name.name);
    if (name.isSymbolicLink()) continue;
    if (name.isDirectory()) { chmodSync(p, 0o755); normaliseModes(p); continue; }
    chmodSync(p, (statSync(p).mode & 0o111) !== 0 ? 0o755 : 0o644);
  }
}

function treeBytes(dir: string, skip: string): number {
  let total = 0;
  for (const name of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, name.name);
    if (p === skip || name.isSymbolicLink()) continue;
    total += name.isDirectory() ? treeBytes(p, skip) : statSync(p).size;
  }
  return total;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { out: { type: 'string' } } });
  const out = resolve(values.out ?? join(ROOT, 'build', 'package'));
  const p = await packageAgent(out);
  const size = (f: string) => `${(statSync(f).size / 1e6).toFixed(2)} MB`;
  console.log(`${relative(process.cwd(), p.tgz)}  ${size(p.tgz)}`);
  console.log(`${relative(process.cwd(), p.deb)}  ${size(p.deb)}`);
  console.log(`installed: ${(treeBytes(p.stage, '') / 1e6).toFixed(2)} MB in ${dirname(p.stage) === out ? 'fleet-agent/' : p.stage}`);
}
