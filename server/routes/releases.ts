// Releases (issue 19); schemas in shared/api/releases.ts. A release is a named, versioned set of bundles
// (the first the primary), with an optional chain whose golden outputs the server computes by running the
// exact shipped artifacts (the same runChain the device uses). Assigning one signs one desired state per
// device naming every model (Director.assignSet): the device switches to all of them at once or to none.
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { releasesContract as c, type ReleaseView } from '../../shared/api/releases.ts';
import { ChainError, checkChain, runChain } from '../../shared/chain.ts';
import type { Chain, GoldenVector, Manifest, TensorDType } from '../../shared/messages.ts';
import { decodeTensor, encodeTensor, type TypedData } from '../../shared/tensor-codec.ts';
import { createSession, runSession, type Feeds } from '../../runtime/onnx-session.ts';
import { actorName, auditRequest } from '../audit/audit-log.ts';
import { ortMessage } from '../bundles/run-samples.ts';
import { AppError } from '../errors.ts';
import { assertAssignable } from '../keys/assignable.ts';
import { contractRoute } from './contract-route.ts';
import { assignTargets } from './devices.ts';

interface ReleaseRow { name: string; version: number; models_json: string; chain_json: string | null; created_by: string; created_at: string }
type ReleaseModel = { modelId: string; version: number; manifestSha256: string };

function view(r: ReleaseRow): ReleaseView {
  const chain = r.chain_json ? JSON.parse(r.chain_json) as Chain : null;
  return {
    name: r.name, version: r.version, models: JSON.parse(r.models_json) as ReleaseModel[],
    chain: chain ? { steps: chain.steps, goldenVectors: chain.golden?.vectors.length ?? 0 } : null,
    createdBy: r.created_by, createdAt: r.created_at,
  };
}

export async function releaseRoutes(app: FastifyInstance): Promise<void> {
  const { db, director, keys, blobs } = app.fleet;

  /** The chain's golden vectors: its samples through sessions on the exact artifacts the devices get. */
  async function chainGolden(steps: Chain['steps'], models: { modelId: string; manifest: Manifest }[], samples: { inputs: GoldenVector['inputs'] }[], atol: number, rtol: number): Promise<Chain> {
    const sessions = new Map<string, Awaited<ReturnType<typeof createSession>>>();
    try {
      for (const m of models) {
        if (!steps.some((s) => s.modelId === m.modelId)) continue;
        const bytes = readFileSync(blobs.pathOf(m.manifest.artifact.sha256));
        try {
          sessions.set(m.modelId, await createSession(bytes, { config: m.manifest.quantization.sessionConfig }));
        } catch (err) {
          throw new AppError('FLEET_ERR_MODEL_RUN_FAILED', `chain: ${m.modelId} did not load: ${ortMessage(err)}`, 422);
        }
      }
      const vectors: GoldenVector[] = [];
      for (const [i, s] of samples.entries()) {
        const feeds: Feeds = {};
        for (const [name, t] of Object.entries(s.inputs)) {
          const d = decodeTensor(t);
          feeds[name] = { data: d.data, dims: d.dims, type: d.dtype };
        }
        let out;
        try {
          out = await runChain({ steps }, feeds, (id, f) => runSession(sessions.get(id)!, f as Feeds));
        } catch (err) {
          if (err instanceof ChainError) throw new AppError('FLEET_ERR_VALIDATION', `body.chain: sample ${i}: ${err.message}`, 400);
          throw new AppError('FLEET_ERR_MODEL_RUN_FAILED', `chain sample ${i}: ${ortMessage(err)}`, 422);
        }
        const outputs = Object.fromEntries(Object.entries(out).map(([name, t]) => [name, encodeTensor(t.type as TensorDType, t.dims, t.data as TypedData)]));
        vectors.push({ inputs: s.inputs, outputs });
      }
      return { steps, golden: { vectors, atol, rtol } };
    } finally {
      for (const s of sessions.values()) await s.release();
    }
  }

  const rowOf = (name: string, version?: number) => (version
    ? db.prepare('SELECT * FROM releases WHERE name = ? AND version = ?').get(name, version)
    : db.prepare('SELECT * FROM releases WHERE name = ? ORDER BY version DESC LIMIT 1').get(name)) as ReleaseRow | undefined;

  contractRoute(app, c.createRelease, async ({ body }, req, reply) => {
    const models = body.models.map((m) => {
      const row = (m.version
        ? db.prepare('SELECT manifest_sha256, version FROM bundles WHERE model_id = ? AND version = ?').get(m.modelId, m.version)
        : db.prepare('SELECT manifest_sha256, version FROM bundles WHERE model_id = ? ORDER BY version DESC LIMIT 1').get(m.modelId)) as { manifest_sha256: string; version: number } | undefined;
      if (!row) throw new AppError('FLEET_ERR_BUNDLE_NOT_FOUND', `no bundle of ${m.modelId}${m.version ? ` v${m.version}` : ''}`, 404);
      const bundle = director.bundleEnvelope(row.manifest_sha256);
      assertAssignable(keys, row.manifest_sha256, bundle);
      return { modelId: m.modelId, version: row.version, manifestSha256: row.manifest_sha256, manifest: bundle.manifest };
    });
    let chain: Chain | null = null;
    if (body.chain) {
      try {
        checkChain({ steps: body.chain.steps }, models.map((m) => m.modelId));
      } catch (err) {
        throw new AppError('FLEET_ERR_VALIDATION', `body.chain: ${(err as Error).message}`, 400);
      }
      chain = body.chain.samples
        ? await chainGolden(body.chain.steps, models, body.chain.samples, body.chain.atol, body.chain.rtol)
        : { steps: body.chain.steps };
    }
    const list = models.map(({ modelId, version, manifestSha256 }) => ({ modelId, version, manifestSha256 }));
    const now = new Date().toISOString();
    const actor = actorName(req);
    const row = db.transaction(() => {
      const last = db.prepare('SELECT MAX(version) AS v FROM releases WHERE name = ?').get(body.name) as { v: number | null };
      const version = (last.v ?? 0) + 1;
      db.prepare('INSERT INTO releases (name, version, models_json, chain_json, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?)')
        .run(body.name, version, JSON.stringify(list), chain ? JSON.stringify(chain) : null, actor, now);
      return rowOf(body.name, version)!;
    })();
    auditRequest(req, 'releases.create', `${row.name}:${row.version}`, { models: list, chain: chain ? { steps: chain.steps.length, goldenVectors: chain.golden?.vectors.length ?? 0 } : null });
    reply.status(201);
    return view(row);
  });

  contractRoute(app, c.listReleases, async () => ({
    releases: (db.prepare('SELECT * FROM releases ORDER BY name, version').all() as ReleaseRow[]).map(view),
  }));

  contractRoute(app, c.getRelease, async ({ params: { name } }) => {
    const rows = db.prepare('SELECT * FROM releases WHERE name = ? ORDER BY version DESC').all(name) as ReleaseRow[];
    if (!rows.length) throw new AppError('FLEET_ERR_RELEASE_NOT_FOUND', `no release ${name}`, 404);
    return { name, versions: rows.map(view) };
  });

  contractRoute(app, c.assignRelease, async ({ params: { name }, body }, req, reply) => {
    const row = rowOf(name, body.version);
    if (!row) throw new AppError('FLEET_ERR_RELEASE_NOT_FOUND', `no release ${name}${body.version ? ` v${body.version}` : ''}`, 404);
    const models = JSON.parse(row.models_json) as ReleaseModel[];
    for (const m of models) assertAssignable(keys, m.manifestSha256, director.bundleEnvelope(m.manifestSha256));
    const chain = row.chain_json ? JSON.parse(row.chain_json) as Chain : undefined;
    const assigned = await director.assignSet(models.map((m) => m.manifestSha256), assignTargets(db, body), { name: row.name, version: row.version }, undefined, chain);
    auditRequest(req, 'releases.assign', `${row.name}:${row.version}`, {
      count: assigned.length, ...(body.all ? { all: true, hardware: body.hardware ?? null } : {}), deviceIds: assigned.slice(0, 100).map((a) => a.deviceId),
    });
    reply.status(202);
    return { release: { name: row.name, version: row.version }, assigned: assigned.length, devices: assigned };
  });
}
