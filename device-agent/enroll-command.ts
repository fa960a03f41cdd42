// `fleet-agent enroll`: make the device's key pair and register its public key with an enrollment token.
//   fleet-agent enroll --config /etc/fleet-agent/agent.json --token fleet_et_...
//     the config exists: enroll the device it names (--server overrides its serverUrl for this call)
//   fleet-agent enroll --config /etc/fleet-agent/agent.json --token fleet_et_... --server URL
//       --device-id ID --mqtt-url URL --root-public-key KEY [--data-dir DIR] [--ca-file FILE]
//     no config yet: enroll, then write the config from these (only after the server accepted the key)
import { chmodSync, chownSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadAgentConfig, parseAgentConfig, type AgentConfig } from './config.ts';
import { writeFileDurable } from './durable-file.ts';
import { DEVICE_KEY_FILE, ENROLLED_FILE, enrollDevice } from './identity.ts';
import { pinnedFetch, readCaFile } from './pinned-fetch.ts';

export interface EnrollArgs {
  config?: string; token?: string; server?: string;
  'device-id'?: string; 'mqtt-url'?: string; 'root-public-key'?: string; 'data-dir'?: string; 'ca-file'?: string;
}
export const ENROLL_OPTIONS = {
  token: { type: 'string' }, server: { type: 'string' }, 'device-id': { type: 'string' }, 'mqtt-url': { type: 'string' },
  'root-public-key': { type: 'string' }, 'data-dir': { type: 'string' }, 'ca-file': { type: 'string' },
} as const;
/** where the Debian package keeps the agent's state */
export const DEFAULT_DATA_DIR = '/var/lib/fleet-agent';
const NEW_CONFIG_OPTIONS = ['device-id', 'mqtt-url', 'root-public-key', 'data-dir', 'ca-file'] as const;

/** Returns the exit status: 0 enrolled, 1 refused or failed, 2 a usage error. Prints one line either way. */
export async function enrollCommand(a: EnrollArgs, env: NodeJS.ProcessEnv): Promise<number> {
  const file = a.config ?? env.FLEET_AGENT_CONFIG;
  const writeConfig = !!file && !existsSync(file);
  const given = NEW_CONFIG_OPTIONS.filter((k) => a[k] !== undefined);
  let config: AgentConfig;
  try {
    if (writeConfig) {
      const missing = (['server', 'device-id', 'mqtt-url', 'root-public-key'] as const).filter((k) => !a[k]);
      if (missing.length) return usage(`${file} does not exist: to write it, give ${missing.map((k) => `--${k}`).join(', ')}`);
      config = parseAgentConfig({
        deviceId: a['device-id'], dataDir: a['data-dir'] ?? DEFAULT_DATA_DIR, mqttUrl: a['mqtt-url'], serverUrl: a.server,
        rootPublicKey: a['root-public-key'], ...(a['ca-file'] ? { caFile: a['ca-file'] } : {}),
      });
    } else {
      if (given.length) return usage(`${file ?? 'the configuration'} exists already: edit it instead of giving ${given.map((k) => `--${k}`).join(', ')}`);
      config = loadAgentConfig({ file, env });
    }
  } catch (err) {
    return usage((err as Error).message);
  }
  const enrollmentToken = a.token ?? config.enrollmentToken;
  if (!enrollmentToken) return usage('give the enrollment token with --token (or enrollmentToken in the config)');
  try {
    // with a pinned CA, enrollment trusts only it, as downloads do
    const fetchFn = config.caFile ? pinnedFetch(readCaFile(config.caFile)) : undefined;
    const { publicKey } = await enrollDevice({ serverUrl: a.server ?? config.serverUrl, deviceId: config.deviceId, dataDir: config.dataDir, enrollmentToken, fetch: fetchFn });
    if (writeConfig) {
      const { deviceId, dataDir, mqttUrl, serverUrl, rootPublicKey, caFile } = config;
      writeFileDurable(file!, `${JSON.stringify({ deviceId, dataDir, mqttUrl, serverUrl, rootPublicKey, ...(caFile ? { caFile } : {}) }, null, 2)}\n`);
    }
    if (process.getuid?.() === 0) {
      // run as root (the package's folders: /etc/fleet-agent root:fleet, /var/lib/fleet-agent fleet:fleet):
      // the key files take the data folder's owner, so the agent's user reads them; the config stays
      // root's, readable by that group (the agent must not be able to change its own root key)
      const owner = statSync(config.dataDir);
      for (const f of [DEVICE_KEY_FILE, ENROLLED_FILE]) chownSync(join(config.dataDir, f), owner.uid, owner.gid);
      if (writeConfig) { chownSync(file!, 0, owner.gid); chmodSync(file!, 0o640); }
    }
    console.log(JSON.stringify({ event: 'enrolled', deviceId: config.deviceId, publicKey, ...(writeConfig ? { configWritten: file } : {}) }));
    return 0;
  } catch (err) {
    console.error(`fleet-agent enroll: ${(err as Error).message}`);
    return 1;
  }
}

function usage(message: string): number {
  console.error(`fleet-agent enroll: ${message}`);
  return 2;
}
