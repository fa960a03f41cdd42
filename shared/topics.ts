// Topic names are functions, never strings scattered around. One device touches only its own four.
import type { z } from 'zod';
import { ID_PATTERN } from './ids.ts';
import { DesiredMessage, Presence, Status, Telemetry } from './messages.ts';

export const TOPIC_ROOT = 'fleet/v1';

export type TopicKind = 'desired' | 'status' | 'telemetry' | 'presence';

export const topics = {
  desired: (deviceId: string) => `${TOPIC_ROOT}/${deviceId}/desired`,
  status: (deviceId: string) => `${TOPIC_ROOT}/${deviceId}/status`,
  telemetry: (deviceId: string) => `${TOPIC_ROOT}/${deviceId}/telemetry`,
  presence: (deviceId: string) => `${TOPIC_ROOT}/${deviceId}/presence`,
  /** fleet-wide, retained, server to devices: the signed freshness statement (shared/freshness.ts) */
  freshness: () => `${TOPIC_ROOT}/freshness`,
  /** server-side wildcard subscriptions */
  all: (kind: TopicKind) => `${TOPIC_ROOT}/+/${kind}`,
} as const;

/** The schema of the payload on each kind of topic. */
export const topicSchemas = {
  desired: DesiredMessage,
  status: Status,
  telemetry: Telemetry,
  presence: Presence,
} satisfies Record<TopicKind, z.ZodType>;

/** Which side publishes on each kind. */
export const publishedBy: Record<TopicKind, 'server' | 'device'> = {
  desired: 'server', status: 'device', telemetry: 'device', presence: 'device',
};

export function parseTopic(topic: string): { deviceId: string; kind: TopicKind } | null {
  const parts = topic.split('/');
  if (parts.length !== 4 || `${parts[0]}/${parts[1]}` !== TOPIC_ROOT) return null;
  const kind = parts[3] as TopicKind;
  if (!Object.hasOwn(topicSchemas, kind)) return null;
  if (!ID_PATTERN.test(parts[2])) return null; // DeviceId's own pattern, without a zod parse per message (issue 13)
  return { deviceId: parts[2], kind };
}
