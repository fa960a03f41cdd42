// buildServer(config): the Fastify admin API, the embedded MQTT broker, SQLite and the key store,
// wired together. It never listens on HTTP itself (main.ts does); the broker's TCP port is open once
// this resolves, and app.close() closes everything it opened.
import Fastify, { type FastifyInstance } from 'fastify';
import { join, resolve } from 'node:path';
import { openDatabase, type Db } from './db/database.ts';
import { BlobStore } from './bundles/blob-store.ts';
import { parseServerConfig, type ServerConfig, type ServerConfigInput } from './config.ts';
import { AssignmentLoop } from './devices/assignment-loop.ts';
import { DeviceIngest } from './devices/device-ingest.ts';
import { Director } from './devices/director.ts';
import { DeltaStore } from './bundles/delta-store.ts';
import { FreshnessPublisher } from './devices/freshness-publisher.ts';
import { installErrorHandler } from './errors.ts';
import { apiAuth } from './auth/api-auth.ts';
import { ApiTokens } from './auth/api-tokens.ts';
import { DeviceCredentials } from './auth/device-credentials.ts';
import { writeAudit } from './audit/audit-log.ts';
import { accessRoutes } from './routes/access.ts';
import { auditRoutes } from './routes/audit.ts';
import { KeyStore } from './keys/key-store.ts';
import { loadTlsMaterial } from './tls.ts';
import { startEmbeddedBroker, type FleetBroker } from './mqtt/broker.ts';
import { startExternalBroker } from './mqtt/external-bus.ts';
import { DynsecControl } from './mqtt/dynsec.ts';
import { NatsUsersFile } from './mqtt/nats-auth.ts';
import { DesiredResync } from './devices/desired-resync.ts';
import { readFileSync } from 'node:fs';
import { bundleRoutes } from './routes/bundles.ts';
import { deviceRoutes } from './routes/devices.ts';
import { keyRoutes } from './routes/keys.ts';
import { uploadRoutes } from './routes/uploads.ts';
import { campaignRoutes } from './routes/campaigns.ts';
import { fleetShapeRoutes } from './routes/fleet-shape.ts';
import { tagPolicyRoutes } from './routes/tag-policies.ts';
import { webRoutes } from './routes/web.ts';
import { metricsRoutes } from './routes/metrics.ts';
import { telemetryRoutes } from './routes/telemetry.ts';
import { releaseRoutes } from './routes/releases.ts';
import { FleetMetrics } from './metrics/metrics.ts';
import { TelemetryRetention } from './telemetry/retention.ts';
import { contractRoute } from './routes/contract-route.ts';
import { recordRoutes } from './routes/route-list.ts';
import { systemContract } from '../shared/api/system.ts';
import { RolloutEngine } from './rollouts/engine.ts';

export interface Fleet {
  config: ServerConfig;
  db: Db;
  blobs: BlobStore;
  keys: KeyStore;
  broker: FleetBroker;
  director: Director;
  /** [#18] delta bundles: made when a bundle is pushed, offered by the director */
  deltas: DeltaStore;
  ingest: DeviceIngest;
  assignments: AssignmentLoop;
  rollouts: RolloutEngine;
  apiTokens: ApiTokens;
  credentials: DeviceCredentials;
  freshness: FreshnessPublisher;
  metrics: FleetMetrics;
  retention: TelemetryRetention;
}

declare module 'fastify' {
  interface FastifyInstance { fleet: Fleet }
}

export async function buildServer(input: ServerConfigInput | ServerConfig = {}): Promise<FastifyInstance> {
  const config = Object.isFrozen(input) ? (input as ServerConfig) : parseServerConfig(input);
  // read and checked before anything opens: a bad certificate is a start-up error naming its file
  const tls = loadTlsMaterial(config);
  const app = Fastify({
    logger: { level: config.logLevel }, bodyLimit: config.maxBodyBytes,
    ...(tls ? { https: { key: tls.key, cert: tls.cert, minVersion: 'TLSv1.2' as const } } : {}),
  }) as unknown as FastifyInstance;
  recordRoutes(app);
  installErrorHandler(app);
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer', bodyLimit: config.maxModelBytes }, (_req, body, done) => done(null, body));

  const dataDir = resolve(config.dataDir);
  const db = openDatabase(join(dataDir, 'fleet.db'));
  const blobs = new BlobStore(join(dataDir, 'blobs'));
  const keys = new KeyStore(join(dataDir, 'keys'), db, config.keysetTtlDays, { rootPublicKey: config.rootPublicKey });
  keys.init();
  const apiTokens = new ApiTokens(db);
  const credentials = new DeviceCredentials(db, undefined, { maxLifetimeSeconds: config.deviceTokenMaxLifetimeSeconds, clockSkewSeconds: config.deviceTokenClockSkewSeconds });
  if (config.bootstrapAdminToken && apiTokens.bootstrap(config.bootstrapAdminToken)) {
    writeAudit(db, { actor: 'server', action: 'tokens.bootstrap', target: 'bootstrap-admin', detail: { role: 'admin' }, source: 'config' });
  }
  if (config.allowUnenrolledDevices) app.log.warn({ event: 'insecure_config' }, 'allowUnenrolledDevices is on: devices without a credential may connect (development only)');
  // NATS: the users file is written (and every node reloaded) before the server connects as one of its users
  const natsUsers = config.brokerDeviceAuth === 'nats'
    ? new NatsUsersFile({ usersFile: config.natsUsersFile!, pidFiles: config.natsPidFiles, serverUser: config.brokerUsername!, serverPassword: config.brokerPassword!, log: app.log })
    : null;
  await natsUsers?.init((ids) => credentials.withActiveSecret(ids));
  // the director exists before the broker (an external broker that lost our session gets every desired state again)
  let director: Director | null = null;
  const broker: FleetBroker = config.brokerMode === 'embedded'
    ? await startEmbeddedBroker({
      host: config.mqttHost, port: config.mqttPort, maxPayloadBytes: config.maxMqttPayloadBytes, log: app.log,
      credentials, allowUnenrolled: config.allowUnenrolledDevices, rateLimit: config.mqttRateLimit,
      ...(tls ? { tls: { key: tls.key, cert: tls.cert } } : {}),
    })
    : await startExternalBroker({
      urls: config.brokerUrls, username: config.brokerUsername, password: config.brokerPassword, clientId: config.brokerClientId,
      ...(config.brokerCaFile ? { ca: readFileSync(config.brokerCaFile, 'utf8') } : {}),
      log: app.log, maxPayloadBytes: config.maxMqttPayloadBytes, onSessionLost: async () => { await director?.republishAll(); },
      publishConnections: config.brokerPublishConnections,
    }, config.brokerDeviceAuth === 'dynsec' ? (client) => new DynsecControl(client, app.log, { timeoutMs: config.brokerControlTimeoutMs }) : natsUsers ? () => natsUsers : undefined);
  if (broker.deviceAccess instanceof DynsecControl) await broker.deviceAccess.init(config.brokerUsername!, (ids) => credentials.withActiveSecret(ids));
  const deltas = new DeltaStore(db, blobs, config.deltaMaxFraction, (msg) => app.log.warn({ event: 'delta_failed' }, msg));
  director = new Director(db, keys, broker, config.desiredTtlSeconds, deltas);
  const ingest = new DeviceIngest(db, app.log, { telemetryWriter: config.telemetryWriter });
  await ingest.start(broker);
  await director.republishAll();
  const resync = broker.kind === 'external' ? new DesiredResync(db, broker, app.log) : null;
  resync?.start(config.brokerResyncSeconds * 1000);
  const assignments = new AssignmentLoop(db, director, app.log);
  assignments.start(ingest);
  const rollouts = new RolloutEngine({ db, director, ingest, keys, log: app.log, manifestTtlDays: config.manifestTtlDays, tickMs: config.rolloutTickMs });
  rollouts.start();
  const freshness = new FreshnessPublisher(keys, broker, { intervalMs: config.freshnessIntervalSeconds * 1000, ttlSeconds: config.freshnessTtlSeconds });
  if (config.freshnessIntervalSeconds > 0) await freshness.start();

  const metrics = new FleetMetrics({ db, broker, ingest });
  metrics.instrument(app);
  const retention = new TelemetryRetention(db, {
    rawHours: config.telemetryRawRetentionHours, minuteDays: config.telemetryMinuteRetentionDays,
    hourDays: config.telemetryHourRetentionDays, deviceHourDays: config.telemetryDeviceHourRetentionDays, maxRowsPerTick: config.telemetryPruneMaxRows,
  });
  retention.start(config.telemetryPruneIntervalSeconds * 1000);

  app.decorate('fleet', { config, db, blobs, keys, broker, director, deltas, ingest, assignments, rollouts, apiTokens, credentials, freshness, metrics, retention });
  app.addHook('onClose', async () => {
    retention.stop();
    resync?.stop();
    metrics.stop();
    freshness.stop();
    assignments.stop();
    await rollouts.stop();
    await broker.close();
    await ingest.stop();
    await deltas.close();
    db.close();
  });

  await apiAuth(app); // on the root instance: the hook covers every route, including 404s
  contractRoute(app, systemContract.health, async () => ({ ok: true as const, mqttPort: broker.port, devicesConnected: broker.connectedClients() }));
  await app.register(uploadRoutes);
  await app.register(bundleRoutes);
  await app.register(deviceRoutes);
  await app.register(keyRoutes);
  await app.register(campaignRoutes);
  await app.register(fleetShapeRoutes);
  await app.register(tagPolicyRoutes);
  await app.register(webRoutes);
  await app.register(accessRoutes);
  await app.register(auditRoutes);
  await app.register(telemetryRoutes);
  await app.register(metricsRoutes);
  await app.register(releaseRoutes);
  return app;
}
