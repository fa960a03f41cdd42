// Inference for device code in other languages: a small HTTP endpoint on loopback only.
// POST /v1/infer {"inputs": {"name": {"dims": [1, 784], "data": [...], "type": "float32"}}}
// POST /v1/models/<modelId>/infer (same body): one model of a device that runs several (404 UNKNOWN_MODEL if it runs no such model)
// POST /v1/chain/infer (same body): the active release's chain in one call (404 UNKNOWN_MODEL if it has none)
// GET  /v1/status -> the active model (the primary), every model it runs (`models`), the release, the last
//      update status and freshness (stale: no fresh signed statement lately).
// POST /v1/busy {"busy": true} -> an update whose policy says notBusy does not switch until busy is false again
// POST /v1/conditions {"onCharger": false, "batteryPercent": 40, "metered": true} -> what download conditions are judged by
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { UnknownModel, type FleetAgent } from './agent.ts';
import { InputMismatch } from './input-check.ts';
import { ChainError } from '../shared/chain.ts';

const InferBody = z.object({
  inputs: z.record(z.string().max(256), z.object({
    dims: z.array(z.number().int().nonnegative()).max(8),
    data: z.array(z.number()).max(16 * 1024 * 1024),
    type: z.enum(['float32', 'int32', 'int64', 'bool']).default('float32'),
  }).strict()),
}).strict();

const BusyBody = z.object({ busy: z.boolean() }).strict();
const ConditionsBody = z.object({
  onCharger: z.boolean().nullable().optional(),
  batteryPercent: z.number().min(0).max(100).nullable().optional(),
  metered: z.boolean().nullable().optional(),
}).strict();

const MAX_BODY = 64 * 1024 * 1024;

export async function startLocalHttp(agent: FleetAgent, port: number, host = '127.0.0.1'): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method === 'GET' && req.url === '/v1/status') {
      return send(200, { deviceId: agent.deviceId, active: agent.active, models: agent.activeSet, release: agent.release, lastStatus: agent.lastStatus, freshness: agent.freshness?.view() ?? null });
    }
    const named = req.url?.match(/^\/v1\/models\/([^/?#]+)\/infer$/);
    const chain = req.url === '/v1/chain/infer';
    const route = req.method === 'POST' && ['/v1/infer', '/v1/busy', '/v1/conditions'].includes(req.url ?? '') ? req.url : null;
    if (req.method !== 'POST' || (!route && !named && !chain)) return send(404, { error: 'NOT_FOUND', message: 'POST /v1/infer, /v1/models/<modelId>/infer, /v1/chain/infer, /v1/busy or /v1/conditions, or GET /v1/status' });
    let modelId: string | null = null;
    try {
      modelId = named ? decodeURIComponent(named[1]) : null;
    } catch {
      return send(400, { error: 'BAD_REQUEST', message: 'the model id in the path is not valid percent-encoding' });
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) { send(413, { error: 'TOO_LARGE', message: `body over ${MAX_BODY} bytes` }); req.destroy(); return; }
      chunks.push(c);
    });
    req.on('end', async () => {
      if (res.writableEnded) return;
      let body;
      try {
        const json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        if (route === '/v1/busy') {
          agent.gate.setBusy(BusyBody.parse(json).busy);
          return send(200, { busy: agent.gate.isBusy });
        }
        if (route === '/v1/conditions') {
          agent.gate.setConditions(ConditionsBody.parse(json));
          return send(200, agent.gate.conditions());
        }
        body = InferBody.parse(json);
      } catch (err) {
        const msg = err instanceof z.ZodError ? err.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') : 'body is not JSON';
        return send(400, { error: 'BAD_REQUEST', message: msg });
      }
      try {
        const out = chain ? await agent.inferChain(body.inputs) : modelId === null ? await agent.infer(body.inputs) : await agent.infer(modelId, body.inputs);
        const outputs = Object.fromEntries(Object.entries(out).map(([k, v]) => [k, { dims: v.dims, type: v.type, data: Array.from(v.data as ArrayLike<number>, Number) }]));
        if (chain) return send(200, { models: agent.activeSet, release: agent.release, outputs });
        const model = modelId === null ? agent.active : agent.activeSet.find((m) => m.modelId === modelId) ?? null;
        send(200, { model, outputs });
      } catch (err) {
        if (err instanceof InputMismatch) return send(400, { error: err.code, kind: err.kind, message: err.message });
        if (err instanceof UnknownModel) return send(404, { error: err.code, message: chain ? 'the active set has no chain' : err.message });
        if (err instanceof ChainError) return send(400, { error: err.code, message: err.message });
        send(503, { error: 'INFERENCE_FAILED', message: (err as Error).message });
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return { server, port: (server.address() as AddressInfo).port, close: () => new Promise((r) => server.close(() => r())) };
}
