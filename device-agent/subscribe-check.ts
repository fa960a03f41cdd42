// The agent's subscriptions, checked. A broker can answer a SUBSCRIBE with a refusal (SUBACK 0x80)
// while it is busy: a NATS cluster electing a new stream leader after a node died cannot create the
// consumer behind an MQTT subscription, and says so. mqtt.js reports that only to the callback; an
// agent that ignored it stayed connected with no desired-state subscription at all, and never heard of
// its next assignment (seen in test/e2e/nats-failover.test.ts: devices whose node was killed came back
// on another node, mqtt.js's own unchecked resubscription was refused, and the agent's was skipped). So a refused or failed subscription is
// tried again with backoff on the same connection, and after `attempts` the connection is dropped so
// the agent reconnects (to the next broker URL) and subscribes afresh.
import type { MqttClient } from 'mqtt';

export interface SubscribeCheckOptions {
  attempts?: number;
  delayMs?: number;
  onRefused?: (why: string, attempt: number) => void;
  /** requested QoS (default 1; agent config mqttSubscribeQos) */
  qos?: 0 | 1;
}

export function subscribeChecked(client: MqttClient, filters: string[], o: SubscribeCheckOptions = {}): void {
  const attempts = o.attempts ?? 5;
  const delayMs = o.delayMs ?? 1000;
  // The agent subscribes on every connect itself, checked. mqtt.js's own resubscription on reconnect is
  // unchecked, and while it is on, mqtt.js skips a SUBSCRIBE to a filter it already resubscribed (the
  // callback gets no grant at all): a refusal of its copy went unseen. Off, so this one is always sent.
  client.options.resubscribe = false;
  const stream = client.stream; // this connection only: a reconnect subscribes again by itself
  const attempt = (n: number) => {
    if (!client.connected || client.stream !== stream) return;
    client.subscribe(filters, { qos: o.qos ?? 1 }, (err, granted) => {
      const refused = err ? err.message : granted?.filter((g) => g.qos === 128).map((g) => g.topic).join(', ');
      if (!refused) return;
      o.onRefused?.(refused, n);
      if (client.stream !== stream) return;
      if (n >= attempts) client.stream.destroy(); // reconnect and start over
      else setTimeout(() => attempt(n + 1), delayMs * 2 ** (n - 1)).unref();
    });
  };
  attempt(1);
}
