// fleetctl devices [list] | show | enroll | revoke. `devices enroll` is the first-device path: it makes
// a single-use enrollment token for the device and writes the agent config the device starts with
// (server URL, broker URL, the root public key it pins, the token); the agent enrolls itself on first
// start (docs/agent.md "Enrolling a device").
import { existsSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { z } from 'zod';
import { accessContract, DeviceParams, EnrollmentTokenRequest } from '../../shared/api/access.ts';
import { devicesContract } from '../../shared/api/devices.ts';
import { keysContract } from '../../shared/api/keys.ts';
import { systemContract } from '../../shared/api/system.ts';
import { parseAgentConfig } from '../../device-agent/config.ts';
import { CliError } from '../api-client.ts';
import type { Ctx } from '../context.ts';
import { parseArg, parseOptions } from '../options.ts';
import { emit, table } from '../output.ts';

type Run = (cmd: Command, fn: (ctx: Ctx, cmd: Command) => Promise<void>) => Promise<void>;

/** where the Debian package keeps the agent's state and reads its config */
const DEFAULT_DATA_DIR = '/var/lib/fleet-agent';
const DEVICE_CONFIG = '/etc/fleet-agent/agent.json';

const EnrollOptions = z.object({
  out: z.string().min(1).optional(),
  force: z.boolean().optional(),
  dataDir: z.string().min(1).default(DEFAULT_DATA_DIR),
  mqttUrl: z.string().regex(/^mqtts?:\/\//, 'give an mqtt:// or mqtts:// URL').optional(),
  hardware: z.string().min(1).max(64).optional(),
  tags: z.string().transform((s) => s.split(',').map((t) => t.trim()).filter(Boolean)).optional(),
  caFile: z.string().min(1).optional(),
  ttlSeconds: z.string().regex(/^\d+$/, 'expected a whole number').transform(Number).pipe(EnrollmentTokenRequest.shape.ttlSeconds.unwrap()).optional(),
});

/** The broker's URL as a device sees it: the server's host, the broker port it reports, mqtts:// when the server is https://. */
export function brokerUrlFor(serverUrl: string, mqttPort: number): string {
  const u = new URL(serverUrl);
  return `${u.protocol === 'https:' ? 'mqtts' : 'mqtt'}://${u.hostname}:${mqttPort}`; // (an IPv6 hostname keeps its brackets)
}

export function deviceCommands(program: Command, run: Run): void {
  const devices = program.command('devices').description('devices: list, show, enroll a new one, revoke one');

  devices.command('list', { isDefault: true }).description('list devices with their active and desired models')
    .option('--hardware <class>', 'only this hardware class')
    .action((o: { hardware?: string }, cmd: Command) => run(cmd, async (ctx) => {
      const body = await ctx.api.call(devicesContract.listDevices, { query: { hardware: o.hardware } });
      emit(ctx.io, body, () => (body.devices.length ? table([['DEVICE', 'HARDWARE', 'ONLINE', 'ACTIVE', 'LAST STATUS'],
        ...body.devices.map((d) => [d.deviceId, d.hardware, d.online ? 'yes' : 'no', d.active ? `${d.active.modelId} v${d.active.version}` : null,
          d.lastStatus ? `${d.lastStatus.state}${d.lastStatus.reason ? ` (${d.lastStatus.reason})` : ''}` : null])]) : ['no devices']));
    }));

  devices.command('show').description('one device: active and desired model, assignment, campaign, latest status events').argument('<deviceId>')
    .action((id: string, _o: unknown, cmd: Command) => run(cmd, async (ctx) => {
      const d = await ctx.api.call(devicesContract.getDevice, { params: { deviceId: parseArg(DeviceParams.shape.deviceId, id, 'deviceId') } });
      emit(ctx.io, d, () => [
        `${d.deviceId}  ${d.hardware ?? '-'}  ${d.online ? 'online' : 'offline'}  agent ${d.agentVersion ?? '-'}  last seen ${d.lastSeen}`,
        `active: ${d.active ? `${d.active.modelId} v${d.active.version}` : '-'}  desired: ${d.desired ? `${d.desired.manifestSha256.slice(0, 12)}… seq ${d.desired.seq}` : '-'}`,
        ...(d.campaign ? [`campaign ${d.campaign.campaignId} (${d.campaign.campaignStatus}): wave ${d.campaign.wave}, ${d.campaign.state}${d.campaign.reason ? ` (${d.campaign.reason})` : ''}`] : []),
        ...d.events.slice(0, 10).map((e) => `  ${e.ts}  ${e.state}${e.reason ? ` (${e.reason})` : ''}`),
      ]);
    }));

  devices.command('enroll').description('make a single-use enrollment token for a new device and write the agent config it starts with')
    .argument('<deviceId>')
    .option('--out <file>', `write the config here (mode 0600: it holds the token); without it the config is printed`)
    .option('--force', 'overwrite --out if it exists')
    .option('--data-dir <dir>', `the device's dataDir (default ${DEFAULT_DATA_DIR})`)
    .option('--mqtt-url <url>', "the broker as the device reaches it (default: this server's host and broker port)")
    .option('--hardware <class>', 'hardware class of the device')
    .option('--tags <a,b>', 'tags campaigns select by')
    .option('--ca-file <file>', "on the device: PEM of the CA it pins (https:// and mqtts:// only)")
    .option('--ttl-seconds <n>', 'the token expires after this (default 3600)')
    .action((id: string, raw: Record<string, unknown>, cmd: Command) => run(cmd, async (ctx) => {
      const deviceId = parseArg(DeviceParams.shape.deviceId, id, 'deviceId');
      const o = parseOptions(EnrollOptions, raw);
      if (o.out && existsSync(o.out) && !o.force) throw new CliError(`${o.out} exists: give --force to overwrite it`, 'FLEETCTL_ERR_USAGE');
      const keys = await ctx.api.call(keysContract.getKeys);
      const mqttUrl = o.mqttUrl ?? brokerUrlFor(ctx.api.base, (await ctx.api.call(systemContract.health)).mqttPort);
      // the token can enroll this device id (or one it prefixes) once
      const prefix = /^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/.test(deviceId) ? deviceId : undefined;
      const token = await ctx.api.call(accessContract.createEnrollmentToken, { body: { uses: 1, ...(o.ttlSeconds ? { ttlSeconds: o.ttlSeconds } : {}), ...(prefix ? { idPrefix: prefix } : {}) } });
      const config = {
        deviceId, ...(o.hardware ? { hardware: o.hardware } : {}), ...(o.tags?.length ? { tags: o.tags } : {}),
        dataDir: o.dataDir, mqttUrl, serverUrl: ctx.api.base, rootPublicKey: keys.root.publicKey,
        ...(o.caFile ? { caFile: o.caFile } : {}), enrollmentToken: token.token,
      };
      try {
        parseAgentConfig(config); // what the agent will accept, checked here rather than on the device
      } catch (err) {
        throw new CliError(`${(err as Error).message} (fix the option and run again; token ${token.tokenId} expires unused)`, 'FLEETCTL_ERR_USAGE');
      }
      const text = `${JSON.stringify(config, null, 2)}\n`;
      if (o.out) writeFileSync(o.out, text, { mode: 0o600 });
      const enrollCommand = `fleet-agent enroll --config ${DEVICE_CONFIG} --token ${token.token} --server ${ctx.api.base} --device-id ${deviceId} --mqtt-url ${mqttUrl} --root-public-key ${keys.root.publicKey}${o.dataDir !== DEFAULT_DATA_DIR ? ` --data-dir ${o.dataDir}` : ''}${o.caFile ? ` --ca-file ${o.caFile}` : ''}`;
      emit(ctx.io, { deviceId, config, out: o.out ?? null, enrollmentTokenId: token.tokenId, expiresAt: token.expiresAt, enrollCommand }, () => [
        ...(o.out ? [`wrote ${o.out}: agent config for ${deviceId} (mode 0600: it holds a single-use enrollment token, expires ${token.expiresAt})`] : text.trimEnd().split('\n')),
        `on the device: put it at ${DEVICE_CONFIG} and start fleet-agent; it makes its key pair and enrolls on first start`,
        `or enroll first, writing the config there: ${enrollCommand}`,
      ]);
    }));

  devices.command('revoke').description("revoke a device's credential: its session ends now and it cannot connect or download again").argument('<deviceId>')
    .action((id: string, _o: unknown, cmd: Command) => run(cmd, async (ctx) => {
      const r = await ctx.api.call(accessContract.revokeDevice, { params: { deviceId: parseArg(DeviceParams.shape.deviceId, id, 'deviceId') } });
      emit(ctx.io, r, () => [r.revoked
        ? `revoked ${r.deviceId}${r.disconnected ? ' (its MQTT session was ended)' : ''}; enroll it again to bring it back`
        : `${r.deviceId} had no credential to revoke${r.disconnected ? ' (its MQTT session was ended)' : ''}`]);
    }));
}
