// How the agent says what it is doing. Progress (downloading, verifying, health_check, the hello on
// connect) is sent if connected and never kept. Outcomes are numbered and queued in the state record
// (status-outbox.ts) by queue(); the caller's next state write makes them durable together with the
// change they report, then announce() tells local listeners and sends; each leaves the record on its
// PUBACK, and flush() sends what is left after a (re)connect.
import type { MqttClient } from 'mqtt';
import type { ActiveModel, Status, UpdateState } from '../shared/messages.ts';
import { topics } from '../shared/topics.ts';
import { AGENT_VERSION } from '../shared/version.ts';
import type { AgentState } from './state-store.ts';
import { ackStatus, enqueueStatus } from './status-outbox.ts';

export interface ReporterHost {
  deviceId: string;
  now(): number;
  state(): AgentState;
  /** write the state record (fsync = false where a lost write only means a resend) */
  save(fsync: boolean): void;
  client(): MqttClient | null;
  /** connection generation: a status published on an earlier connection is sent again */
  generation(): number;
  /** the model answering calls right now */
  active(): ActiveModel | null;
  log(event: string, fields: Record<string, unknown>): void;
  emit(status: Status): void;
}

export class StatusReporter {
  last: Status | null = null;
  /** status seq -> connection generation it was published on */
  private readonly inflight = new Map<number, number>();

  constructor(private readonly host: ReporterHost) {}

  private make(state: UpdateState, extra: Partial<Status>, active: ActiveModel | null): Status {
    const status: Status = { deviceId: this.host.deviceId, ts: new Date(this.host.now()).toISOString(), state, active, agentVersion: AGENT_VERSION, ...extra };
    if (status.detail) status.detail = status.detail.slice(0, 1000);
    return status;
  }

  /** Progress: sent if connected, never kept. */
  progress(state: UpdateState, extra: Partial<Status>): void {
    const status = this.make(state, extra, this.host.active());
    this.host.client()?.publish(topics.status(this.host.deviceId), JSON.stringify(status), { qos: 1 });
    this.announce(status);
  }

  /**
   * An outcome, queued in the state record in memory: the caller's next save makes it durable with the
   * change it reports; then announce() it. `active` is what the record names, i.e. what the device
   * runs once that write is done.
   */
  queue(state: UpdateState, extra: Partial<Status>): Status {
    const s = this.host.state();
    const r = s.active ? s.slots[s.active] : null;
    const set = r?.extra ? { activeSet: [r, ...r.extra].map((m) => ({ modelId: m.modelId, version: m.version, manifestSha256: m.manifestSha256 })), ...(r.release ? { release: r.release } : {}) } : {};
    return enqueueStatus(s, this.make(state, { ...set, ...extra }, r ? { modelId: r.modelId, version: r.version, manifestSha256: r.manifestSha256 } : null));
  }

  /** Queue, write the record, announce: for outcomes whose only change is the report itself. */
  durable(state: UpdateState, extra: Partial<Status>): void {
    const status = this.queue(state, extra);
    this.host.save(true);
    this.announce(status);
  }

  /** Tell local listeners; an outcome also sends whatever is still queued. */
  announce(status: Status): void {
    this.last = status;
    this.host.log('status', { deviceId: this.host.deviceId, state: status.state, reason: status.reason, detail: status.detail, seq: status.seq });
    if (status.seq !== undefined) this.flush();
    this.host.emit(status);
  }

  /** Queued outcomes not already sent on this connection; each leaves the record on its PUBACK. */
  flush(): void {
    const client = this.host.client();
    if (!client?.connected) return;
    const generation = this.host.generation();
    for (const s of this.host.state().outbox) {
      const seq = s.seq!;
      if (this.inflight.get(seq) === generation) continue;
      this.inflight.set(seq, generation);
      client.publish(topics.status(this.host.deviceId), JSON.stringify(s), { qos: 1 }, (err) => {
        if (this.inflight.get(seq) === generation) this.inflight.delete(seq);
        // no folder fsync: losing this write to a power cut only means one more resend, which the server ignores
        if (!err && ackStatus(this.host.state(), seq)) this.host.save(false);
      });
    }
  }
}
