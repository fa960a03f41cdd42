// Agent configuration: a JSON file and FLEET_AGENT_* environment variables, validated once and frozen.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { Base64, DeviceId } from '../shared/ids.ts';

export const AgentConfig = z.object({
  deviceId: DeviceId,
  hardware: z.string().min(1).max(64).default('generic'),
  tags: z.array(z.string().min(1).max(64)).max(32).default([]),
  dataDir: z.string().min(1),
  mqttUrl: z.string().regex(/^mqtts?:\/\/|^tcp:\/\//, 'mqttUrl must start with mqtt://, mqtts:// or tcp://'),
  serverUrl: z.string().url(),
  /** the fleet's root public key (base64, 32 bytes): the only key the device trusts on its own */
  rootPublicKey: Base64.refine((s) => Buffer.from(s, 'base64').length === 32, 'rootPublicKey must be a 32-byte Ed25519 key in base64'),
  telemetryWindowMs: z.number().int().min(100).default(60_000),
  reconnectMinMs: z.number().int().min(50).default(1000),
  reconnectMaxMs: z.number().int().min(100).default(30_000),
  keepaliveSeconds: z.number().int().min(1).max(3600).default(30),
  download: z.object({
    retries: z.number().int().min(0).max(100).default(5),
    backoffMs: z.number().int().min(1).default(500),
    timeoutMs: z.number().int().min(100).default(30_000),
  }).strict().default({ retries: 5, backoffMs: 500, timeoutMs: 30_000 }),
}).strict();
export type AgentConfig = Readonly<z.infer<typeof AgentConfig>>;
export type AgentConfigInput = z.input<typeof AgentConfig>;

export function parseAgentConfig(input: unknown): AgentConfig {
  const r = AgentConfig.safeParse(input);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new Error(`invalid agent config: ${i.path.join('.') || '(root)'}: ${i.message}`);
  }
  return Object.freeze(r.data);
}

const ENV: Record<string, keyof AgentConfigInput> = {
  FLEET_AGENT_DEVICE_ID: 'deviceId', FLEET_AGENT_HARDWARE: 'hardware', FLEET_AGENT_DATA_DIR: 'dataDir',
  FLEET_AGENT_MQTT_URL: 'mqttUrl', FLEET_AGENT_SERVER_URL: 'serverUrl', FLEET_AGENT_ROOT_PUBLIC_KEY: 'rootPublicKey',
};

export function loadAgentConfig(opts: { file?: string; env?: NodeJS.ProcessEnv }): AgentConfig {
  const fromFile = opts.file ? JSON.parse(readFileSync(opts.file, 'utf8')) : {};
  const fromEnv: Record<string, unknown> = {};
  for (const [k, key] of Object.entries(ENV)) if (opts.env?.[k]) fromEnv[key] = opts.env[k];
  if (opts.env?.FLEET_AGENT_TAGS) fromEnv.tags = opts.env.FLEET_AGENT_TAGS.split(',').map((s) => s.trim()).filter(Boolean);
  return parseAgentConfig({ ...fromFile, ...fromEnv });
}
