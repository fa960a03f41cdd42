// The topic ACL of DESIGN.md as pure functions: a device publishes only on its own status, telemetry
// and presence topics and subscribes only to its own desired topic and the fleet-wide freshness topic.
// Wildcards and $SYS are refused.
import { parseTopic, publishedBy, topics } from '../../shared/topics.ts';

export type AclDecision = { ok: true } | { ok: false; reason: string };

export function mayPublish(clientId: string | null, topic: string, payloadBytes: number, maxPayloadBytes: number): AclDecision {
  if (topic.startsWith('$')) return { ok: false, reason: `publishing on ${topic} is reserved to the broker` };
  if (payloadBytes > maxPayloadBytes) return { ok: false, reason: `payload of ${payloadBytes} bytes is over the ${maxPayloadBytes}-byte limit` };
  return mayPublishOn(clientId, topic);
}

/**
 * The topic part of mayPublish: whether this client may publish on this topic at all, whatever the
 * payload. It depends on the two strings only, so a broker may remember it per client and topic
 * (server/mqtt/broker.ts does, for allowed topics); the payload size is checked on every message.
 */
export function mayPublishOn(clientId: string | null, topic: string): AclDecision {
  if (topic.startsWith('$')) return { ok: false, reason: `publishing on ${topic} is reserved to the broker` };
  const parsed = parseTopic(topic);
  if (!parsed) return { ok: false, reason: `${topic} is not a fleet topic` };
  if (publishedBy[parsed.kind] !== 'device') return { ok: false, reason: `devices may not publish on ${parsed.kind} topics` };
  // A restored will arrives without a client (aedes #767): only a presence will is acceptable then.
  if (clientId === null) return parsed.kind === 'presence' ? { ok: true } : { ok: false, reason: 'no client' };
  if (parsed.deviceId !== clientId) return { ok: false, reason: `${clientId} may not publish on ${parsed.deviceId}'s topics` };
  return { ok: true };
}

export function maySubscribe(clientId: string, topicFilter: string): AclDecision {
  if (topicFilter === topics.desired(clientId)) return { ok: true };
  // the fleet-wide freshness statement: the same signed bytes for every device, nothing per device in it
  if (topicFilter === topics.freshness()) return { ok: true };
  return { ok: false, reason: `${clientId} may subscribe only to ${topics.desired(clientId)}, not ${topicFilter}` };
}
