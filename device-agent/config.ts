// Agent configuration: a JSON file and FLEET_AGENT_* environment variables, validated once and frozen.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { Base64, DeviceId } from '../shared/ids.ts';

/** the broker URLs in an mqttUrl (one, or several separated by commas) */
export function brokerUrls(mqttUrl: string): string[] {
  return mqttUrl.split(',').map((u) => u.trim()).filter(Boolean);
}

export const AgentConfig = z.object({
  deviceId: DeviceId,
  hardware: z.string().min(1).max(64).default('generic'),
  tags: z.array(z.string().min(1).max(64)).max(32).default([]),
  dataDir: z.string().min(1),
  /**
   * The broker, or several separated by commas (a cluster's nodes, or a primary and a standby): the
   * agent connects to the first and, each time the connection is lost or refused, tries the next one
   * in turn (bounded-mqtt.ts), with its usual backoff between attempts.
   */
  mqttUrl: z.string().max(4096).refine((s) => brokerUrls(s).length > 0 && brokerUrls(s).length <= 16 && brokerUrls(s).every((u) => /^(mqtts?|tcp):\/\/[^\s,]+$/.test(u)),
    'mqttUrl must be one URL starting with mqtt://, mqtts:// or tcp://, or up to 16 of them separated by commas'),
  serverUrl: z.string().url(),
  /**
   * PEM CA certificate(s) the device pins for TLS: with mqtts:// the broker's certificate, with https://
   * the artifact server's, must chain to it (and name the host); nothing else is trusted. Without it,
   * mqtts:// and https:// use Node's default trust store (docs/agent.md).
   */
  caFile: z.string().min(1).optional(),
  /**
   * Enrollment on first start: with this (an enrollment token from an admin) and no enrollment on record
   * (<dataDir>/enrolled.json), the agent makes its Ed25519 key pair (<dataDir>/device-key.pem, 0600) and
   * registers the public key (POST /v1/enroll) before it connects. Remove it from the config afterwards.
   */
  enrollmentToken: z.string().min(1).max(256).optional(),
  /** lifetime of the tokens the agent signs with its key (the server caps it: deviceTokenMaxLifetimeSeconds, 600) */
  deviceTokenLifetimeSeconds: z.number().int().min(10).max(3600).default(300),
  /** legacy bearer secret (POST /v1/enroll with deviceIds): MQTT password and download bearer. With it the key pair is not used */
  deviceSecret: z.string().min(16).max(256).optional(),
  /** the fleet's root public key (base64, 32 bytes): the only key the device trusts on its own */
  rootPublicKey: Base64.refine((s) => Buffer.from(s, 'base64').length === 32, 'rootPublicKey must be a 32-byte Ed25519 key in base64'),
  telemetryWindowMs: z.number().int().min(100).default(60_000),
  reconnectMinMs: z.number().int().min(50).default(1000),
  reconnectMaxMs: z.number().int().min(100).default(30_000),
  keepaliveSeconds: z.number().int().min(1).max(3600).default(30),
  /**
   * QoS of the agent's subscriptions (desired state, freshness). 1 (default) or 0. The agent's session is
   * clean and the desired state retained, so QoS 0 loses nothing a reconnect does not bring back; on a
   * NATS cluster every QoS 1 subscription is a JetStream consumer, a QoS 0 one is a plain subscription
   * (docs/brokers.md: use 0 there).
   */
  mqttSubscribeQos: z.union([z.literal(0), z.literal(1)]).default(1),
  /** an incoming MQTT packet whose header announces more (Remaining Length) cuts the connection before it is buffered; desired states are under 256 KiB */
  maxIncomingPacketBytes: z.number().int().min(1024).max(268_435_455).default(1024 * 1024),
  /** freeze detection: stale when no newer signed freshness statement was accepted for this long (or the last one expired) */
  freshnessMaxAgeSeconds: z.number().min(1).default(900),
  /** probation after a switch: it ends after this many inferences on the new model or this many seconds, whichever first (0 = no limit of that kind; both 0 = no probation) */
  probationInferences: z.number().int().min(0).default(100),
  probationSeconds: z.number().min(0).default(600),
  /** errors / inferences during probation above this revert to the previous slot */
  probationMaxErrorRate: z.number().min(0).max(1).default(0.05),
  /** p95 latency limit during probation; without it, probationLatencyFactor x the manifest's health-check latency budget */
  probationMaxLatencyMs: z.number().positive().optional(),
  probationLatencyFactor: z.number().positive().default(1),
  /** telemetry windows kept on disk while offline; the oldest are dropped beyond this */
  telemetryOutboxMax: z.number().int().min(1).max(1_000_000).default(1000),
  /** localhost inference endpoint (POST /v1/infer, GET /v1/status); absent = off, 0 = any free port */
  httpPort: z.number().int().min(0).max(65535).optional(),
  /** the device's time zone (IANA name) for maintenance windows (shared/update-policy.ts); default: the system's */
  timeZone: z.string().min(1).max(64).refine((tz) => { try { new Intl.DateTimeFormat('en-US', { timeZone: tz }); return true; } catch { return false; } }, 'timeZone must be an IANA time zone name such as Europe/Berlin')
    .default(() => Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC'),
  /** how often an update waiting for its window or conditions looks again (it also looks at once when the device reports a change) */
  conditionPollSeconds: z.number().min(0.01).max(3600).default(60),
  download: z.object({
    retries: z.number().int().min(0).max(100).default(5),
    backoffMs: z.number().int().min(1).default(500),
    /** the longest wait between two attempts (exponential backoff from backoffMs, with jitter) */
    backoffMaxMs: z.number().int().min(1).default(30_000),
    timeoutMs: z.number().int().min(100).default(30_000),
  }).strict().default({ retries: 5, backoffMs: 500, backoffMaxMs: 30_000, timeoutMs: 30_000 }),
  /**
   * Shadow mode (device-agent/shadow.ts, docs/agent.md): maxRssBytes is the memory ceiling: a candidate
   * whose load would take the agent's resident memory over it is refused (SHADOW_MEMORY); queue is how
   * many sampled inputs may wait for the runtime to be idle, maxWaitMs how long one may wait (then dropped);
   * thread runs the candidate in its own worker thread with its own onnxruntime-web instance (off the
   * caller's WASM queue; false: in the caller's runtime, only when it is idle).
   */
  shadow: z.object({
    maxRssBytes: z.number().int().positive().optional(),
    queue: z.number().int().min(1).max(64).default(4),
    maxWaitMs: z.number().int().min(1).max(60_000).default(1000),
    thread: z.boolean().default(true),
  }).strict().default({ queue: 4, maxWaitMs: 1000, thread: true }),
  /** fetching a damaged slot again after the start (each attempt is a whole download with its own retries) */
  repair: z.object({
    attempts: z.number().int().min(1).max(100).default(5),
    backoffMs: z.number().int().min(1).default(5_000),
    backoffMaxMs: z.number().int().min(1).default(300_000),
  }).strict().default({ attempts: 5, backoffMs: 5_000, backoffMaxMs: 300_000 }),
}).strict();
export type AgentConfig = Readonly<z.infer<typeof AgentConfig>>;
export type AgentConfigInput = z.input<typeof AgentConfig>;

export function parseAgentConfig(input: unknown): AgentConfig {
  const r = AgentConfig.safeParse(input);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new Error(`invalid agent config: ${i.path.join('.') || '(root)'}: ${i.message}`);
  }
  // a device that pins a CA asked for TLS: a plain URL would send its credential in clear text
  if (r.data.caFile && !brokerUrls(r.data.mqttUrl).every((u) => /^mqtts:\/\//.test(u))) throw new Error(`invalid agent config: mqttUrl: caFile is set, so the broker must be mqtts:// (got ${r.data.mqttUrl})`);
  if (r.data.caFile && !r.data.serverUrl.startsWith('https://')) throw new Error(`invalid agent config: serverUrl: caFile is set, so the server must be https:// (got ${r.data.serverUrl})`);
  return Object.freeze(r.data);
}

const ENV: Record<string, keyof AgentConfigInput> = {
  FLEET_AGENT_DEVICE_ID: 'deviceId', FLEET_AGENT_HARDWARE: 'hardware', FLEET_AGENT_DATA_DIR: 'dataDir',
  FLEET_AGENT_MQTT_URL: 'mqttUrl', FLEET_AGENT_SERVER_URL: 'serverUrl', FLEET_AGENT_ROOT_PUBLIC_KEY: 'rootPublicKey',
  FLEET_AGENT_DEVICE_SECRET: 'deviceSecret', FLEET_AGENT_ENROLLMENT_TOKEN: 'enrollmentToken', FLEET_AGENT_CA_FILE: 'caFile',
  FLEET_AGENT_TIME_ZONE: 'timeZone',
};
const NUMERIC_ENV: Record<string, keyof AgentConfigInput> = {
  FLEET_AGENT_HTTP_PORT: 'httpPort', FLEET_AGENT_TELEMETRY_WINDOW_MS: 'telemetryWindowMs',
  FLEET_AGENT_PROBATION_INFERENCES: 'probationInferences', FLEET_AGENT_PROBATION_SECONDS: 'probationSeconds',
  FLEET_AGENT_MAX_INCOMING_PACKET_BYTES: 'maxIncomingPacketBytes', FLEET_AGENT_FRESHNESS_MAX_AGE_SECONDS: 'freshnessMaxAgeSeconds',
  FLEET_AGENT_MQTT_SUBSCRIBE_QOS: 'mqttSubscribeQos',
};

/** Every environment variable the agent reads, and the field it sets (docs/agent.md lists them: test/unit/config-docs.test.ts). */
export const AGENT_ENV_VARS: Readonly<Record<string, keyof AgentConfigInput | 'config file'>> = { FLEET_AGENT_CONFIG: 'config file', ...ENV, ...NUMERIC_ENV, FLEET_AGENT_TAGS: 'tags' };

export function loadAgentConfig(opts: { file?: string; env?: NodeJS.ProcessEnv }): AgentConfig {
  const fromFile = opts.file ? JSON.parse(readFileSync(opts.file, 'utf8')) : {};
  const fromEnv: Record<string, unknown> = {};
  for (const [k, key] of Object.entries(ENV)) if (opts.env?.[k]) fromEnv[key] = opts.env[k];
  for (const [k, key] of Object.entries(NUMERIC_ENV)) if (opts.env?.[k]) fromEnv[key] = Number(opts.env[k]);
  if (opts.env?.FLEET_AGENT_TAGS) fromEnv.tags = opts.env.FLEET_AGENT_TAGS.split(',').map((s) => s.trim()).filter(Boolean);
  return parseAgentConfig({ ...fromFile, ...fromEnv });
}
