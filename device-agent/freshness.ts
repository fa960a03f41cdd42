// Freeze detection, the device's half: accept the server's signed freshness statements (fleet-wide,
// retained topic) and notice when none newer has been accepted for freshnessMaxAgeSeconds, or the last
// one expired. A frozen device (someone withholds the server's messages, so it never hears of a newer
// model or a revocation) then says so: in its presence (the server's device view shows it) and in the
// local GET /v1/status. Verification is shared/freshness.ts; this file keeps time and reports changes.
import { FreshnessMessage, freshUntil, verifyFreshness, type FreshnessView } from '../shared/freshness.ts';
import { UpdateRefused } from '../shared/reason-codes.ts';
import type { SignatureCache, TrustState } from '../shared/verify-desired.ts';

export interface FreshnessWatchOptions {
  maxAgeMs: number;
  now: () => number;
  trust: () => TrustState;
  /** called when the device turns stale or fresh again */
  onChange: (view: FreshnessView) => void;
  log: (event: string, fields: Record<string, unknown>) => void;
  cache?: SignatureCache;
  /** how often staleness is re-judged (real time; the clock itself is `now`) */
  checkEveryMs?: number;
}

export class FreshnessWatch {
  private startedAt = 0;
  private last: { acceptedAt: number; issuedAt: number; expires: number } | null = null;
  private stale = false;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly opts: FreshnessWatchOptions) {}

  start(): void {
    this.startedAt = this.opts.now();
    this.timer = setInterval(() => this.check(), this.opts.checkEveryMs ?? Math.min(5000, Math.max(100, this.opts.maxAgeMs / 10)));
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** A message on the freshness topic; returns whether it was accepted. Refusals are logged, never thrown. */
  onMessage(payload: Buffer): boolean {
    try {
      const msg = FreshnessMessage.parse(JSON.parse(payload.toString('utf8')));
      const s = verifyFreshness(msg, this.opts.trust(), this.opts.now(), this.last?.issuedAt ?? 0, this.opts.cache);
      this.last = { acceptedAt: this.opts.now(), issuedAt: Date.parse(s.issuedAt), expires: Date.parse(s.expires) };
      this.check();
      return true;
    } catch (err) {
      this.opts.log('freshness_refused', { reason: err instanceof UpdateRefused ? err.reason : 'MALFORMED', err: (err as Error).message.slice(0, 200) });
      return false;
    }
  }

  view(): FreshnessView {
    const until = freshUntil(this.last, this.startedAt, this.opts.maxAgeMs);
    return { stale: this.opts.now() >= until, freshUntil: this.last ? new Date(until).toISOString() : null };
  }

  private check(): void {
    const v = this.view();
    if (v.stale === this.stale) return;
    this.stale = v.stale;
    this.opts.log(v.stale ? 'freshness_stale' : 'freshness_restored', { freshUntil: v.freshUntil });
    this.opts.onChange(v);
  }
}
