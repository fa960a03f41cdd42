// npm run build: the server and the operator CLI for production, compiled by tsc into dist/
// (tsconfig.build.json), with the web console's static files beside the routes that read them.
//   node dist/server/main.js [--config FILE]     node dist/cli/fleetctl.js ...
// Dependencies stay in node_modules (`npm ci --omit=dev`); tsx is not needed to run dist/.
import { execFileSync } from 'node:child_process';
import { cpSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
// --out DIR builds elsewhere (tests); dist/ then needs a node_modules beside it or above it
const DIST = resolve(parseArgs({ options: { out: { type: 'string' } } }).values.out ?? join(ROOT, 'dist'));

rmSync(DIST, { recursive: true, force: true });
execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', DIST], { stdio: 'inherit' });
// server/routes/web.ts reads ../web/ (the fleet page and the API reference page) relative to itself
cpSync(join(ROOT, 'server', 'web'), join(DIST, 'server', 'web'), { recursive: true });
// the shadow candidate's thread is plain JavaScript that tsc does not compile (device-agent/shadow-worker.ts)
cpSync(join(ROOT, 'device-agent', 'shadow-thread.mjs'), join(DIST, 'device-agent', 'shadow-thread.mjs'));
console.log(`built ${DIST}: node dist/server/main.js`);
