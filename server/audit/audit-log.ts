// The append-only audit log: every change to the fleet (who, what, when, from where). One writer for
// the whole server; SQLite triggers (migration 3) refuse UPDATE and DELETE on the table.
import type { FastifyRequest } from 'fastify';
import type { Db } from '../db/database.ts';

export interface AuditEntry {
  actor: string;
  action: string;
  target?: string | null;
  detail?: unknown;
  source?: string | null;
}

export interface AuditRow { id: number; ts: string; actor: string; action: string; target: string | null; detail: unknown; source: string | null }

export function writeAudit(db: Db, e: AuditEntry, now = new Date()): number {
  const r = db.prepare('INSERT INTO audit_log (ts, actor, action, target, detail_json, source) VALUES (?, ?, ?, ?, ?, ?)')
    .run(now.toISOString(), e.actor, e.action, e.target ?? null, e.detail === undefined ? null : JSON.stringify(e.detail), e.source ?? null);
  return Number(r.lastInsertRowid);
}

/** Who made a request: the authenticated principal (set by the auth hook), else 'anonymous'. */
export function actorName(req: FastifyRequest): string {
  const p = req.principal;
  if (!p) return 'anonymous';
  return p.kind === 'device' ? `device:${p.deviceId}` : p.name;
}

/** Audit a change made through the API: actor from the principal, source = the caller's address. */
export function auditRequest(req: FastifyRequest, action: string, target: string | null, detail?: unknown): void {
  writeAudit(req.server.fleet.db, { actor: actorName(req), action, target, detail, source: req.ip });
}

export interface AuditQuery { afterId?: number; action?: string; actor?: string; target?: string; limit: number }

export function readAudit(db: Db, q: AuditQuery): AuditRow[] {
  const where: string[] = [];
  const args: unknown[] = [];
  if (q.afterId !== undefined) { where.push('id > ?'); args.push(q.afterId); }
  if (q.action) {
    // 'keys.' matches every keys.* action
    if (q.action.endsWith('.')) { where.push('substr(action, 1, ?) = ?'); args.push(q.action.length, q.action); } else { where.push('action = ?'); args.push(q.action); }
  }
  if (q.actor) { where.push('actor = ?'); args.push(q.actor); }
  if (q.target) { where.push('target = ?'); args.push(q.target); }
  const sql = `SELECT id, ts, actor, action, target, detail_json, source FROM audit_log ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id ${q.afterId !== undefined ? 'ASC' : 'DESC'} LIMIT ?`;
  const rows = db.prepare(sql).all(...args, q.limit) as { id: number; ts: string; actor: string; action: string; target: string | null; detail_json: string | null; source: string | null }[];
  return rows.map((r) => ({ id: r.id, ts: r.ts, actor: r.actor, action: r.action, target: r.target, detail: r.detail_json ? JSON.parse(r.detail_json) : null, source: r.source }));
}
