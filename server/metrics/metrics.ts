// Prometheus metrics (prom-client), one registry per server (tests run several servers in a process).
// Counters are fed by events as they happen (stored telemetry windows, device outcomes, HTTP
// responses); gauges are read from SQLite and the broker when /metrics is scraped. The names are the
// ones docs/grafana-dashboard.json queries; docs/observability.md lists them.
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Status, Telemetry } from '../../shared/messages.ts';
import type { Db } from '../db/database.ts';
import type { DeviceIngest } from '../devices/device-ingest.ts';
import type { FleetBroker } from '../mqtt/broker.ts';
import { quantile, merge, type LatencyHistogram } from '../telemetry/latency-histogram.ts';

const CAMPAIGN_STATES = ['running', 'paused', 'halted', 'reverting', 'reverted', 'completed', 'aborted'];
/** the fleet inference gauges cover this much recent telemetry (minute rollups) */
export const RECENT_WINDOW_S = 300;

export interface MetricsDeps { db: Db; broker: FleetBroker; ingest: DeviceIngest; now?: () => number }

export class FleetMetrics {
  readonly registry = new Registry();
  private readonly http: Histogram<'method' | 'route' | 'status_code'>;
  private unsubscribe: (() => void) | null = null;

  constructor(private readonly deps: MetricsDeps) {
    const r = this.registry;
    const { db, broker, ingest } = deps;
    const now = deps.now ?? Date.now;
    collectDefaultMetrics({ register: r, prefix: 'fleet_server_' });

    new Gauge({
      name: 'fleet_devices_online', help: 'Devices connected now, by hardware class', labelNames: ['hardware'], registers: [r],
      collect() {
        this.reset();
        for (const row of db.prepare(`SELECT COALESCE(hardware, 'unknown') AS hw, SUM(online) AS online FROM devices GROUP BY hw`).all() as { hw: string; online: number }[]) {
          this.set({ hardware: row.hw }, row.online);
        }
      },
    });
    new Gauge({
      name: 'fleet_devices_known', help: 'Devices the server knows, by hardware class', labelNames: ['hardware'], registers: [r],
      collect() {
        this.reset();
        for (const row of db.prepare(`SELECT COALESCE(hardware, 'unknown') AS hw, COUNT(*) AS n FROM devices GROUP BY hw`).all() as { hw: string; n: number }[]) {
          this.set({ hardware: row.hw }, row.n);
        }
      },
    });
    new Gauge({
      name: 'fleet_campaigns', help: 'Campaigns by state', labelNames: ['state'], registers: [r],
      collect() {
        const n = new Map((db.prepare('SELECT status, COUNT(*) AS n FROM campaigns GROUP BY status').all() as { status: string; n: number }[]).map((x) => [x.status, x.n]));
        for (const s of CAMPAIGN_STATES) this.set({ state: s }, n.get(s) ?? 0);
      },
    });
    new Gauge({
      name: 'fleet_mqtt_connections', help: 'MQTT clients connected to the embedded broker', registers: [r],
      collect() { this.set(broker.connectedClients()); },
    });

    const installs = new Counter({ name: 'fleet_installs_total', help: 'Models a device reported active after an update', labelNames: ['model_id', 'version'], registers: [r] });
    const refusals = new Counter({ name: 'fleet_refusals_total', help: 'Updates a device refused, failed or reverted, by reason code', labelNames: ['state', 'reason'], registers: [r] });
    const windows = new Counter({ name: 'fleet_telemetry_windows_total', help: 'Telemetry windows stored (resends not counted)', registers: [r] });
    const lag = new Histogram({
      name: 'fleet_telemetry_ingest_lag_seconds', help: 'From the end of a telemetry window (device clock) to when the server stored it',
      buckets: [0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600], registers: [r],
    });
    const inferences = new Counter({ name: 'fleet_inferences_total', help: 'Inferences reported by devices, by model version', labelNames: ['model_id', 'version'], registers: [r] });
    const inferenceErrors = new Counter({ name: 'fleet_inference_errors_total', help: 'Failed inferences reported by devices, by model version', labelNames: ['model_id', 'version'], registers: [r] });
    this.http = new Histogram({
      name: 'fleet_http_request_duration_seconds', help: 'Admin API response time, by route pattern',
      labelNames: ['method', 'route', 'status_code'], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [r],
    });

    const recent = () => {
      const since = Math.floor(now() / 1000) - RECENT_WINDOW_S;
      const rows = db.prepare('SELECT model_id, version, count, errors, max_ms, latency_json FROM telemetry_minute WHERE bucket_start >= ?').all(since) as
        { model_id: string; version: number; count: number; errors: number; max_ms: number | null; latency_json: string }[];
      const per = new Map<string, { modelId: string; version: number; count: number; errors: number; max: number; h: LatencyHistogram }>();
      for (const row of rows) {
        const k = `${row.model_id}@${row.version}`;
        const p = per.get(k) ?? { modelId: row.model_id, version: row.version, count: 0, errors: 0, max: 0, h: {} };
        p.count += row.count; p.errors += row.errors; p.max = Math.max(p.max, row.max_ms ?? 0);
        merge(p.h, JSON.parse(row.latency_json));
        per.set(k, p);
      }
      return [...per.values()];
    };
    new Gauge({
      name: 'fleet_inference_latency_ms', help: `Fleet inference latency by model version over the last ${RECENT_WINDOW_S} s (merged histograms; docs/observability.md)`,
      labelNames: ['model_id', 'version', 'quantile'], registers: [r],
      collect() {
        this.reset();
        for (const p of recent()) {
          for (const q of [0.5, 0.95, 0.99]) {
            const v = quantile(p.h, q, p.max);
            if (v !== null) this.set({ model_id: p.modelId, version: String(p.version), quantile: String(q) }, v);
          }
        }
      },
    });
    new Gauge({
      name: 'fleet_inference_error_ratio', help: `Failed / all inferences by model version over the last ${RECENT_WINDOW_S} s`,
      labelNames: ['model_id', 'version'], registers: [r],
      collect() {
        this.reset();
        for (const p of recent()) if (p.count > 0) this.set({ model_id: p.modelId, version: String(p.version) }, p.errors / p.count);
      },
    });

    ingest.telemetry.onStored = (t: Telemetry, storedAt: number) => {
      windows.inc();
      const end = Date.parse(t.windowEnd);
      if (Number.isFinite(end)) lag.observe(Math.max(0, (storedAt - end) / 1000));
      if (t.active) {
        const labels = { model_id: t.active.modelId, version: String(t.active.version) };
        if (t.count) inferences.inc(labels, t.count);
        if (t.errors) inferenceErrors.inc(labels, t.errors);
      }
    };
    this.unsubscribe = ingest.onMessage((kind, _deviceId, msg) => {
      if (kind !== 'status') return;
      const s = msg as Status;
      if (s.state === 'active' && s.active) installs.inc({ model_id: s.active.modelId, version: String(s.active.version) });
      else if (s.state === 'rejected' || s.state === 'failed' || s.state === 'reverted') refusals.inc({ state: s.state, reason: s.reason ?? 'none' });
    });
  }

  /** Time every response of `app` (route pattern, not the URL: ids would make a series per device). */
  instrument(app: FastifyInstance): void {
    app.addHook('onResponse', async (req, reply) => {
      this.http.observe({ method: req.method, route: req.routeOptions.url ?? 'unmatched', status_code: String(reply.statusCode) }, reply.elapsedTime / 1000);
    });
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.deps.ingest.telemetry.onStored = null;
  }
}
