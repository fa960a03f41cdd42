import { benchRevert } from '/work/wt-stats/bench/rollout.ts';
const t0 = Date.now();
const r = await benchRevert();
console.log(JSON.stringify({ ...r, wallSeconds: (Date.now() - t0) / 1000 }, null, 2));
process.exit(0);
