// Freeze detection, the server's half (TUF timestamp role): every interval, sign a short-lived freshness
// statement with the director key and publish it, retained, on the fleet-wide freshness topic, with the
// current key set (devices pin only the root). One message for the whole fleet; the agent's watch
// (device-agent/freshness.ts) reports itself stale when none newer arrives for a while.
import { signDocument } from '../../shared/envelope.ts';
import type { FreshnessMessage, FreshnessStatement } from '../../shared/freshness.ts';
import { topics } from '../../shared/topics.ts';
import type { KeyStore } from '../keys/key-store.ts';
import type { FleetBus } from '../mqtt/broker.ts';

export interface FreshnessPublisherOptions { intervalMs: number; ttlSeconds: number; now?: () => number }

export class FreshnessPublisher {
  private timer: NodeJS.Timeout | null = null;
  private readonly now: () => number;
  /** issuedAt must grow even if two statements are signed within one millisecond */
  private lastIssued = 0;

  constructor(private readonly keys: Pick<KeyStore, 'hasKeyset' | 'keyset' | 'keysetEnvelope' | 'signerFor'>, private readonly bus: FleetBus, private readonly opts: FreshnessPublisherOptions) {
    this.now = opts.now ?? Date.now;
  }

  async start(): Promise<void> {
    await this.publishOnce();
    this.timer = setInterval(() => void this.publishOnce().catch(() => { /* next interval tries again */ }), this.opts.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Sign and publish one statement now; null when there is no key set yet (offline root not imported). */
  async publishOnce(): Promise<FreshnessStatement | null> {
    if (!this.keys.hasKeyset) return null;
    const issued = Math.max(this.now(), this.lastIssued + 1);
    this.lastIssued = issued;
    const statement: FreshnessStatement = {
      type: 'freshness', issuedAt: new Date(issued).toISOString(), expires: new Date(issued + this.opts.ttlSeconds * 1000).toISOString(),
      keysetVersion: this.keys.keyset.version,
    };
    const msg: FreshnessMessage = { keyset: this.keys.keysetEnvelope, statement: signDocument(statement, this.keys.signerFor('director')) };
    await this.bus.publish(topics.freshness(), JSON.stringify(msg), { qos: 1, retain: true });
    return statement;
  }
}
