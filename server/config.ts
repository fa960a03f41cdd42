// Server configuration: defaults, then a JSON file, then FLEET_* environment variables, then explicit
// overrides; validated once and frozen. Nothing else in the server reads process.env.
import { readFileSync } from 'node:fs';
import { z } from 'zod';

const Limit = z.object({ perSecond: z.number().positive(), burst: z.number().int().positive() }).strict();
const Flag = z.union([z.boolean(), z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1')]);

export const ServerConfig = z.object({
  dataDir: z.string().min(1).default('./data'),
  httpHost: z.string().default('127.0.0.1'),
  httpPort: z.coerce.number().int().min(0).max(65535).default(8080),
  mqttHost: z.string().default('127.0.0.1'),
  mqttPort: z.coerce.number().int().min(0).max(65535).default(1883),
  /**
   * TLS (docs/security.md): a PEM certificate and its PEM private key. With both, the API serves HTTPS
   * and the embedded broker MQTTS on httpPort and mqttPort, and nothing listens in plain text. Without
   * them, both are plain (development). tlsCaFile: PEM intermediate certificates sent after the server's
   * own (the chain up to, not including, the root devices pin).
   */
  tlsCertFile: z.string().min(1).optional(),
  tlsKeyFile: z.string().min(1).optional(),
  tlsCaFile: z.string().min(1).optional(),
  /** the URL devices use to reach this server's HTTP API (defaults to the listening address) */
  publicUrl: z.string().url().optional(),
  maxModelBytes: z.coerce.number().int().positive().default(64 * 1024 * 1024),
  maxMqttPayloadBytes: z.coerce.number().int().positive().default(256 * 1024),
  desiredTtlSeconds: z.coerce.number().int().positive().default(7 * 24 * 3600),
  manifestTtlDays: z.coerce.number().int().positive().default(365),
  keysetTtlDays: z.coerce.number().int().positive().default(365),
  /**
   * Offline root: the fleet's root public key (base64, 32 bytes). When set and <dataDir>/keys/root.key
   * is absent, the server never holds the root; key sets are signed on the operator's machine and
   * imported (POST /v1/keys/keyset). When root.key is present it must match this key.
   */
  rootPublicKey: z.string().regex(/^[A-Za-z0-9+/]{43}=$/, 'rootPublicKey must be a 32-byte Ed25519 key in base64').optional(),
  /** freeze detection: a signed freshness statement is published this often (0 = never) and is valid this long */
  freshnessIntervalSeconds: z.coerce.number().min(0).default(60),
  freshnessTtlSeconds: z.coerce.number().int().positive().default(300),
  /** how often the rollout engine looks at running campaigns */
  rolloutTickMs: z.coerce.number().int().min(10).default(1000),
  /**
   * The operator's first admin token (fleet_at_...; FLEET_BOOTSTRAP_TOKEN). Stored hashed at start if
   * not known yet. Without it, a server whose store has no token makes one and prints it once (main.ts).
   */
  bootstrapAdminToken: z.string().min(1).max(128).optional(),
  /**
   * Development only, like mosquitto's allow_anonymous: devices that never held a credential may connect
   * without one (an enrolled or revoked device must always present its own), and blobs assigned to such
   * devices may be fetched without one.
   */
  allowUnenrolledDevices: Flag.default(false),
  /** device tokens (key-pair identity): the longest lifetime a device may give one, and how far its clock may be off */
  deviceTokenMaxLifetimeSeconds: z.coerce.number().int().min(10).max(3600).default(600),
  deviceTokenClockSkewSeconds: z.coerce.number().int().min(0).max(3600).default(60),
  /** admin API: per token (or per address for anonymous callers) */
  apiRateLimit: Limit.default({ perSecond: 100, burst: 1000 }),
  /** failed authentications per address (slows token guessing) */
  authFailureRateLimit: Limit.default({ perSecond: 5, burst: 50 }),
  /** MQTT publishes per device; a device over it is disconnected */
  mqttRateLimit: Limit.default({ perSecond: 100, burst: 2000 }),
  /** JSON bodies (uploads and bundle requests have their own maxModelBytes) */
  maxBodyBytes: z.coerce.number().int().positive().default(1024 * 1024),
  /**
   * Telemetry retention (docs/observability.md): raw windows by when they arrived, minute and hour
   * rollups by their bucket. Raw windows of the models an unfinished campaign judges are kept whatever
   * their age. The pruner runs every telemetryPruneIntervalSeconds (0 = never) and deletes at most
   * telemetryPruneMaxRows rows per table per run.
   */
  telemetryRawRetentionHours: z.coerce.number().positive().default(24),
  telemetryMinuteRetentionDays: z.coerce.number().positive().default(14),
  /** fleet-wide hour rollups (per model version and hardware class: a few rows an hour) */
  telemetryHourRetentionDays: z.coerce.number().positive().default(400),
  /** per-device hour rollups (one row per device per hour: the largest table) */
  telemetryDeviceHourRetentionDays: z.coerce.number().positive().default(90),
  telemetryPruneIntervalSeconds: z.coerce.number().min(0).default(60),
  telemetryPruneMaxRows: z.coerce.number().int().positive().default(50_000),
  /** where telemetry windows are written: 'thread' (a worker thread with its own SQLite connection) or 'main' (the broker's thread, as before issue 13) */
  telemetryWriter: z.enum(['thread', 'main']).default('thread'),
  /** GET /metrics (Prometheus): 'viewer' needs a viewer token (the default), 'public' needs none */
  metricsAccess: z.enum(['viewer', 'public']).default('viewer'),
  /**
   * Where devices connect (docs/brokers.md). 'embedded' (the default): the server's own aedes broker on
   * mqttHost:mqttPort. 'external': a broker the server did not start (mosquitto, a NATS cluster's MQTT
   * listener, ...); the server is one privileged client of it, at brokerUrls (comma-separated or a
   * list: tried in turn), as brokerUsername/brokerPassword with the fixed client id brokerClientId (its
   * persistent session), over mqtts:// pinned to brokerCaFile when given.
   */
  brokerMode: z.enum(['embedded', 'external']).default('embedded'),
  brokerUrls: z.union([z.string(), z.array(z.string())]).optional()
    .transform((v) => (v === undefined ? [] : (Array.isArray(v) ? v : v.split(',')).map((u) => u.trim()).filter(Boolean)))
    .pipe(z.array(z.string().regex(/^(mqtts?|tcp|ssl):\/\/[^\s]+$/, 'each broker URL starts with mqtt://, mqtts://, tcp:// or ssl://')).max(16)),
  brokerUsername: z.string().min(1).max(256).optional(),
  brokerPassword: z.string().min(1).max(1024).optional(),
  brokerClientId: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'brokerClientId is 1-64 characters of A-Z a-z 0-9 . _ -').default('fleet-server'),
  brokerCaFile: z.string().min(1).optional(),
  /**
   * Who keeps the external broker's device credentials and topic ACL in step with the server's:
   * 'dynsec' (mosquitto's dynamic security plugin, driven live over $CONTROL; brokerUsername must be its
   * admin), or 'none' (the broker's own configuration or plugin does it: docs/brokers.md).
   */
  brokerDeviceAuth: z.enum(['dynsec', 'nats', 'none']).default('none'),
  /**
   * brokerDeviceAuth 'dynsec': how long mosquitto may take to answer one control message (a bounded chunk
   * of a batch); past it the message is sent once more, then the change fails with 503 naming what was not
   * applied (ms)
   */
  brokerControlTimeoutMs: z.coerce.number().int().min(100).max(600_000).default(10_000),
  /** external broker: how often desired states that online devices have not acted on are published again (server/devices/desired-resync.ts; 0 = never) */
  brokerResyncSeconds: z.coerce.number().min(0).default(15),
  /**
   * external broker: connections the server publishes desired states over (1 = its one session). A NATS
   * cluster stores each retained publish in JetStream before it reads the connection's next packet, so one
   * connection carries one desired state at a time (~20 ms each here); several carry them side by side.
   * Each device's topic always goes over the same connection, so its desired states stay in order.
   */
  brokerPublishConnections: z.coerce.number().int().min(1).max(64).default(1),
  /**
   * brokerDeviceAuth 'nats': the NATS config include the server writes (an authorization block: its own
   * user and one per device) and the pid files of the nodes it signals to reload it (same machine).
   */
  natsUsersFile: z.string().min(1).optional(),
  natsPidFiles: z.union([z.string(), z.array(z.string())]).optional()
    .transform((v) => (v === undefined ? [] : (Array.isArray(v) ? v : v.split(',')).map((u) => u.trim()).filter(Boolean))),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('warn'),
  /**
   * Delta bundles (docs/agent.md): a device that runs artifact A and is assigned B is offered a delta
   * A -> B only if it is smaller than this fraction of B (0 = never offer deltas).
   */
  deltaMaxFraction: z.coerce.number().min(0).max(1).default(0.5),
}).strict();
export type ServerConfig = Readonly<z.infer<typeof ServerConfig>>;
export type ServerConfigInput = z.input<typeof ServerConfig>;

const ENV_KEYS: Record<string, keyof ServerConfigInput> = {
  FLEET_DATA_DIR: 'dataDir', FLEET_HTTP_HOST: 'httpHost', FLEET_HTTP_PORT: 'httpPort',
  FLEET_MQTT_HOST: 'mqttHost', FLEET_MQTT_PORT: 'mqttPort', FLEET_PUBLIC_URL: 'publicUrl',
  FLEET_MAX_MODEL_BYTES: 'maxModelBytes', FLEET_LOG_LEVEL: 'logLevel', FLEET_ROOT_PUBLIC_KEY: 'rootPublicKey',
  FLEET_BOOTSTRAP_TOKEN: 'bootstrapAdminToken', FLEET_ALLOW_UNENROLLED_DEVICES: 'allowUnenrolledDevices',
  FLEET_DEVICE_TOKEN_MAX_LIFETIME_SECONDS: 'deviceTokenMaxLifetimeSeconds', FLEET_DEVICE_TOKEN_CLOCK_SKEW_SECONDS: 'deviceTokenClockSkewSeconds',
  FLEET_TELEMETRY_RAW_RETENTION_HOURS: 'telemetryRawRetentionHours', FLEET_TELEMETRY_MINUTE_RETENTION_DAYS: 'telemetryMinuteRetentionDays',
  FLEET_TELEMETRY_HOUR_RETENTION_DAYS: 'telemetryHourRetentionDays', FLEET_TELEMETRY_DEVICE_HOUR_RETENTION_DAYS: 'telemetryDeviceHourRetentionDays', FLEET_METRICS_ACCESS: 'metricsAccess',
  FLEET_TLS_CERT_FILE: 'tlsCertFile', FLEET_TLS_KEY_FILE: 'tlsKeyFile', FLEET_TLS_CA_FILE: 'tlsCaFile',
  FLEET_DELTA_MAX_FRACTION: 'deltaMaxFraction',
  FLEET_BROKER_MODE: 'brokerMode', FLEET_BROKER_URLS: 'brokerUrls', FLEET_BROKER_USERNAME: 'brokerUsername', FLEET_BROKER_PASSWORD: 'brokerPassword',
  FLEET_BROKER_CLIENT_ID: 'brokerClientId', FLEET_BROKER_CA_FILE: 'brokerCaFile', FLEET_BROKER_DEVICE_AUTH: 'brokerDeviceAuth', FLEET_BROKER_CONTROL_TIMEOUT_MS: 'brokerControlTimeoutMs', FLEET_BROKER_PUBLISH_CONNECTIONS: 'brokerPublishConnections',
  FLEET_NATS_USERS_FILE: 'natsUsersFile', FLEET_NATS_PID_FILES: 'natsPidFiles',
};

/** Every environment variable the server reads, and the field it sets (README lists them: test/unit/config-docs.test.ts). */
export const SERVER_ENV_VARS: Readonly<Record<string, keyof ServerConfigInput>> = ENV_KEYS;

export function loadServerConfig(opts: { file?: string; env?: NodeJS.ProcessEnv; overrides?: ServerConfigInput } = {}): ServerConfig {
  const fromFile = opts.file ? JSON.parse(readFileSync(opts.file, 'utf8')) : {};
  const fromEnv: Record<string, string> = {};
  for (const [envKey, key] of Object.entries(ENV_KEYS)) {
    const v = opts.env?.[envKey];
    if (v !== undefined && v !== '') fromEnv[key] = v;
  }
  return parseServerConfig({ ...fromFile, ...fromEnv, ...opts.overrides });
}

export function parseServerConfig(input: ServerConfigInput): ServerConfig {
  const parsed = ServerConfig.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`invalid server config: ${issue.path.join('.')}: ${issue.message}`);
  }
  const { tlsCertFile, tlsKeyFile, tlsCaFile } = parsed.data;
  if (!tlsCertFile !== !tlsKeyFile) throw new Error('invalid server config: TLS needs both tlsCertFile and tlsKeyFile (FLEET_TLS_CERT_FILE, FLEET_TLS_KEY_FILE), or neither');
  if (tlsCaFile && !tlsCertFile) throw new Error('invalid server config: tlsCaFile (FLEET_TLS_CA_FILE) is the chain of a certificate: give tlsCertFile and tlsKeyFile too');
  const b = parsed.data;
  if (b.brokerMode === 'external' && b.brokerUrls.length === 0) throw new Error('invalid server config: brokerMode external needs brokerUrls (FLEET_BROKER_URLS), e.g. mqtt://broker.example:1883');
  if (b.brokerMode === 'embedded' && (b.brokerUrls.length > 0 || b.brokerDeviceAuth !== 'none')) throw new Error('invalid server config: brokerUrls and brokerDeviceAuth are for brokerMode external (FLEET_BROKER_MODE=external)');
  if (b.brokerDeviceAuth === 'dynsec' && !b.brokerUsername) throw new Error('invalid server config: brokerDeviceAuth dynsec needs brokerUsername and brokerPassword: the dynamic security admin (mosquitto_ctrl dynsec init)');
  if (b.brokerDeviceAuth === 'nats' && (!b.natsUsersFile || b.natsPidFiles.length === 0 || !b.brokerUsername || !b.brokerPassword)) {
    throw new Error('invalid server config: brokerDeviceAuth nats needs natsUsersFile, natsPidFiles (FLEET_NATS_USERS_FILE, FLEET_NATS_PID_FILES), brokerUsername and brokerPassword');
  }
  return Object.freeze(parsed.data);
}
