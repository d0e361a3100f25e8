/**
 * The one wiring point: registry → logger → metrics → proxy → router → servers.
 * Everything stateful is created here, per instance, so two apps in one
 * process share nothing.
 */
import type { Server } from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { createBearerCheck } from './http/bearer.js';
import { type Renderer, createRenderer } from './admin/exposition.js';
import type { ProxyConfig } from './config/config.js';
import { HEALTH_PATH, READY_PATH, createHealth } from './admin/health.js';
import { OptionNotAllowedError } from './errors.js';
import { createLogger } from './logger.js';
import { type MetricsRecorder, createMetrics } from './metrics/recorder.js';
import { withAccessLog } from './metrics/access-log.js';
import { createMetricsEndpoint, createRoutesEndpoint } from './admin/metrics-endpoint.js';
import { loadOpenApiTemplates } from './metrics/openapi.js';
import { nativeHistogramSettings } from './metrics/native-histogram.js';
import { createStatusRoutes } from './admin/status.js';
import { createExchangeSweep } from './proxy/exchange-sweep.js';
import { createHttpForwarder, upstreamBasePath } from './proxy/forwarder.js';
import { createUpstreamPool } from './proxy/upstream-pool.js';
import type { Handler } from './http/router.js';
import { createH2UpstreamPool } from './proxy/h2-upstream.js';
import { type ListeningAddress, createServers, listenAll, routesPath } from './http/servers.js';
import { type WebSocketForwarder, createWebSocketForwarder } from './proxy/websocket/forwarder.js';
import type { HttpForwarder } from './proxy/forwarder.js';
import type { Health } from './admin/health.js';
import { errorBody, sendJson } from './respond.js';

export interface AppDeps {
  readonly logger?: Logger;
  readonly registry?: Registry;
  /** Renders a scrape; in a cluster worker, the primary's sum over all workers. */
  readonly render?: Renderer;
}

export type { ListeningAddress } from './http/servers.js';
export { routesPath } from './http/servers.js';

export interface App {
  readonly registry: Registry;
  readonly server: Server;
  /** The admin listener (metrics, health), when --metrics-port is set. */
  readonly adminServer: Server | undefined;
  readonly logger: Logger;
  /** Binds the listeners and logs one `listening` line with the ports actually bound. */
  listen(): Promise<ListeningAddress>;
  /**
   * Graceful drain, as on SIGTERM: readiness 503 and `Connection: close` at once; keep serving for
   * the drain delay; stop accepting; let in-flight requests finish within the shutdown timeout;
   * close WebSockets with 1001; then close everything.
   */
  shutdown(): Promise<void>;
  /** Stops at once, giving in-flight requests up to `graceMs`; for tests and embedding. */
  close(graceMs?: number): Promise<void>;
}

const DEFAULT_CLOSE_GRACE_MS = 10_000;

const BEARER_CHALLENGE = { 'www-authenticate': 'Bearer realm="metrics"' };

function requireToken(check: (req: Parameters<Handler>[0]) => boolean, handler: Handler): Handler {
  return (req, res) => {
    if (check(req)) {
      handler(req, res);
      return;
    }
    sendJson(res, 401, errorBody('missing or wrong bearer token'), BEARER_CHALLENGE);
  };
}

function createRecorder(config: ProxyConfig, registry: Registry, logger: Logger): MetricsRecorder {
  const recorder = createMetrics(registry, {
    families: config.metricFamilies,
    bucketsMs: config.bucketsMs,
    durationBucketsSeconds: config.durationBucketsSeconds,
    apiPrefix: config.apiPrefix,
    routeTemplates: config.routes,
    openapiTemplates: config.openapi === undefined ? [] : loadOpenApiTemplates(config.openapi, config.apiPrefix),
    maxRoutes: config.maxRoutes,
    nativeHistograms: nativeHistogramSettings(config.nativeHistogramBucketFactor, config.nativeHistogramMaxBuckets),
    sloObjective: config.slo,
  });
  // --access-log decorates the recorder; when off, nothing is added to the hot path.
  return config.accessLog ? withAccessLog(recorder, logger) : recorder;
}

interface Forwarders {
  readonly http: HttpForwarder;
  readonly websocket: WebSocketForwarder;
  /** Releases the upstream connections and timers, once the servers are closed. */
  close(): Promise<void>;
}

/** Plain HTTP through undici's pool, gRPC (and with --upstream-protocol http2 everything) over HTTP/2; WebSocket handshakes through http-proxy-3. */
function createForwarders(config: ProxyConfig, metrics: MetricsRecorder, logger: Logger, isDraining: () => boolean): Forwarders {
  const onStrayError = (err: Error): void => logger.error({ err }, 'upstream connection error');
  const pool = createUpstreamPool({
    upstream: config.upstream,
    maxConnections: config.upstreamMaxConnections,
    keepAliveTimeoutMs: config.upstreamKeepAliveTimeoutMs,
    connectTimeoutMs: config.connectTimeoutMs,
    onStrayError,
    metrics,
  });
  const http2Pool = createH2UpstreamPool({
    upstream: config.upstream,
    connectTimeoutMs: config.connectTimeoutMs,
    idleTimeoutMs: config.upstreamKeepAliveTimeoutMs,
    onStrayError,
    metrics,
  });
  const sweep = createExchangeSweep({ responseMs: config.upstreamTimeoutMs, idleMs: config.idleTimeoutMs });
  const basePath = upstreamBasePath(config.upstream);
  const websocket = createWebSocketForwarder({
    upstream: config.upstream,
    timeouts: { connectMs: config.connectTimeoutMs, responseMs: config.upstreamTimeoutMs },
    idleTimeoutMs: config.wsIdleTimeoutMs,
    metrics,
    log: logger,
  });
  return {
    http: createHttpForwarder({
      pool, http2Pool, allOverHttp2: config.upstreamProtocol === 'http2', sweep, metrics, log: logger, isDraining, basePath,
    }),
    websocket,
    async close() {
      sweep.close();
      websocket.close();
      await Promise.all([pool.close(), http2Pool.close()]);
    },
  };
}

interface OwnRouteDeps {
  readonly registry: Registry;
  readonly metrics: MetricsRecorder;
  readonly logger: Logger;
  readonly health: Health;
  readonly openWebSockets: () => number;
  readonly render: AppDeps['render'];
}

/** The paths the proxy answers itself: metrics, routes, health, and the status page (paths already taken win). */
function createOwnRoutes(config: ProxyConfig, deps: OwnRouteDeps): Map<string, Handler> {
  const { registry, metrics, logger, health } = deps;
  const protect = (handler: Handler): Handler =>
    config.metricsToken === undefined ? handler : requireToken(createBearerCheck(config.metricsToken), handler);
  const ownRoutes = new Map<string, Handler>([
    [config.metricsPath, protect(createMetricsEndpoint(registry, metrics, logger, deps.render ?? createRenderer(registry, { classicBuckets: config.protobufClassicBuckets })))],
    [routesPath(config.metricsPath), protect(createRoutesEndpoint(metrics))],
    [HEALTH_PATH, (req, res) => health.serveLiveness(req, res)],
    [READY_PATH, (req, res) => health.serveReadiness(req, res)],
  ]);
  const statusRoutes = createStatusRoutes({
    registry, health, openWebSockets: deps.openWebSockets, upstream: config.upstream, log: logger, protect,
    apiPrefix: config.apiPrefix, metricsPath: config.metricsPath, adminListener: config.metricsPort !== undefined,
  });
  for (const [path, handler] of statusRoutes) if (!ownRoutes.has(path)) ownRoutes.set(path, handler);
  return ownRoutes;
}

/** Tools read the bound port from this line (--port 0), so it is written whatever the level, short of silent. */
function logListening(logger: Logger, config: ProxyConfig, bound: ListeningAddress): void {
  const level = logger.isLevelEnabled('info') ? 'info' : logger.level;
  if (level === 'silent') return;
  const { admin } = bound;
  logger[level as 'info'](
    {
      address: bound.address,
      port: bound.port,
      ...(admin === undefined ? {} : { metricsAddress: admin.address, metricsPort: admin.port }),
      upstream: config.upstream.href,
      apiPrefix: config.apiPrefix,
      metricsPath: config.metricsPath,
    },
    'listening',
  );
}

/**
 * A token file is read by resolveConfig, which puts the token itself in the Config. A config built by
 * hand (from JavaScript, where the type does not forbid it) that still names a file would otherwise
 * serve the metrics without authentication: refuse it.
 */
function refuseUnreadTokenFile(config: ProxyConfig): void {
  if ((config as { metricsTokenFile?: unknown }).metricsTokenFile === undefined) return;
  throw new OptionNotAllowedError('metricsTokenFile', 'read the token file with resolveConfig and pass its result (metricsToken) to buildApp');
}

export function buildApp(config: ProxyConfig, deps: AppDeps = {}): App {
  refuseUnreadTokenFile(config);
  const registry = deps.registry ?? new Registry();
  const logger = deps.logger ?? createLogger(config.logLevel);
  const metrics = createRecorder(config, registry, logger);
  const health = createHealth({ upstream: config.upstream, readyPath: config.readyPath, timeoutMs: config.connectTimeoutMs });
  const isDraining = (): boolean => health.draining;
  const forwarders = createForwarders(config, metrics, logger, isDraining);
  const openWebSockets = forwarders.websocket.openSessions;
  const ownRoutes = createOwnRoutes(config, { registry, metrics, logger, health, openWebSockets, render: deps.render });
  const servers = createServers(config, forwarders, ownRoutes, isDraining, logger);
  const server = servers.main.server;
  const adminServer = servers.admin?.server;

  async function closeAll(graceMs: number): Promise<void> {
    // Upgraded sockets keep server.close() waiting: the WebSocket drain ends them within the same grace.
    await Promise.all([servers.main.close(graceMs), forwarders.websocket.closeAll(graceMs)]);
    if (servers.admin !== undefined) await servers.admin.close(1_000);
    await forwarders.close();
  }

  return {
    registry,
    server,
    adminServer,
    logger,
    async listen() {
      const bound = await listenAll(config, servers);
      logListening(logger, config, bound);
      return bound;
    },
    async shutdown() {
      health.startDraining();
      logger.info({ drainDelayMs: config.drainDelayMs, shutdownTimeoutMs: config.shutdownTimeoutMs }, 'draining');
      if (config.drainDelayMs > 0) await delay(config.drainDelayMs);
      logger.info({ openWebSockets: openWebSockets() }, 'refusing new connections');
      await closeAll(config.shutdownTimeoutMs);
    },
    async close(graceMs = DEFAULT_CLOSE_GRACE_MS) {
      health.startDraining();
      await closeAll(graceMs);
    },
  };
}
