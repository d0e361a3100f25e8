/**
 * The one wiring point: registry → logger → metrics → proxy → router → servers.
 * Everything stateful is created here, per instance, so two apps in one
 * process share nothing.
 */
import { Agent as HttpAgent, type Server } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { isIP } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { createProxyServer } from 'http-proxy-3';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { createBearerCheck } from './http/bearer.js';
import type { Rendered } from './admin/exposition.js';
import type { ProxyConfig } from './config/config.js';
import { HEALTH_PATH, READY_PATH, createHealth } from './admin/health.js';
import { createLogger } from './logger.js';
import { createMetrics } from './metrics/recorder.js';
import { withAccessLog } from './metrics/access-log.js';
import { createMetricsEndpoint, createRoutesEndpoint } from './admin/metrics-endpoint.js';
import { loadOpenApiTemplates } from './metrics/openapi.js';
import { createPathClassifier } from './http/paths.js';
import { createStatusRoutes } from './admin/status.js';
import { createExchangeSweep } from './proxy/exchange-sweep.js';
import { createHttpForwarder, upstreamBasePath } from './proxy/forwarder.js';
import { createUpstreamPool } from './proxy/upstream-pool.js';
import {
  type Handler,
  createAdminListener,
  createRequestListener,
  createUpgradeListener,
  refuseUpgrade,
} from './http/router.js';
import { clientIdleMs, closeServer, createHttpServer, listen } from './http/server.js';
import { createTimeoutGuard } from './proxy/websocket/handshake-timeouts.js';
import { createWebSocketForwarder } from './proxy/websocket/forwarder.js';

export interface AppDeps {
  readonly logger?: Logger;
  readonly registry?: Registry;
  /** Renders a scrape; in a cluster worker, the primary's sum over all workers. */
  readonly render?: (openMetrics: boolean) => Promise<Rendered>;
}

export interface ListeningAddress {
  readonly address: string;
  readonly port: number;
  /** The admin listener, when --metrics-port is set. */
  readonly admin?: { readonly address: string; readonly port: number };
}

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

/** WebSocket handshakes' idle upstream sockets (a refused handshake's) close before Node's 5 s keep-alive timeout. */
const UPSTREAM_IDLE_SOCKET_MS = 4_000;
const DEFAULT_CLOSE_GRACE_MS = 10_000;

/** The agent of http-proxy-3, which makes the WebSocket handshakes (plain HTTP goes through undici's pool). */
function createUpstreamAgent(upstream: URL): HttpAgent {
  const options = { keepAlive: true, maxFreeSockets: 256, scheduling: 'lifo' as const, timeout: UPSTREAM_IDLE_SOCKET_MS };
  if (upstream.protocol !== 'https:') return new HttpAgent(options);
  // SNI and certificate checks use the upstream's name, not the Host header the client sent.
  const hostname = upstream.hostname.replace(/^\[|\]$/g, '');
  return new HttpsAgent({ ...options, servername: isIP(hostname) === 0 ? hostname : '' });
}

/** The routes debug endpoint sits next to the metrics path: `/metrics` → `/metrics/routes`. */
export function routesPath(metricsPath: string): string {
  return metricsPath === '/' ? '/routes' : `${metricsPath}/routes`;
}

function requireToken(check: (req: Parameters<Handler>[0]) => boolean, handler: Handler): Handler {
  return (req, res) => {
    if (check(req)) {
      handler(req, res);
      return;
    }
    res.writeHead(401, {
      'www-authenticate': 'Bearer realm="metrics"',
      'content-type': 'application/json; charset=utf-8',
    });
    res.end(JSON.stringify({ ok: false, msg: 'missing or wrong bearer token' }));
  };
}

export function buildApp(config: ProxyConfig, deps: AppDeps = {}): App {
  const registry = deps.registry ?? new Registry();
  const logger = deps.logger ?? createLogger(config.logLevel);
  const recorder = createMetrics(registry, {
    families: config.metricFamilies,
    bucketsMs: config.bucketsMs,
    durationBucketsSeconds: config.durationBucketsSeconds,
    apiPrefix: config.apiPrefix,
    routeTemplates: config.routes,
    openapiTemplates: config.openapi === undefined ? [] : loadOpenApiTemplates(config.openapi, config.apiPrefix),
    maxRoutes: config.maxRoutes,
    sloObjective: config.slo,
  });
  // --access-log decorates the recorder; when off, nothing is added to the hot path.
  const metrics = config.accessLog ? withAccessLog(recorder, logger) : recorder;
  const health = createHealth({ upstream: config.upstream, readyPath: config.readyPath, timeoutMs: config.connectTimeoutMs });
  const isDraining = (): boolean => health.draining;
  const agent = createUpstreamAgent(config.upstream);
  // No `xfwd`, no `changeOrigin`: headers.ts owns the header rules, and the Host the client sent is kept.
  const proxy = createProxyServer({ target: config.upstream.href, agent, ws: true });
  const timeouts = { connectMs: config.connectTimeoutMs, responseMs: config.upstreamTimeoutMs, idleMs: config.idleTimeoutMs };
  const guard = createTimeoutGuard(timeouts);
  const pool = createUpstreamPool({
    upstream: config.upstream,
    maxConnections: config.upstreamMaxConnections,
    keepAliveTimeoutMs: config.upstreamKeepAliveTimeoutMs,
    connectTimeoutMs: config.connectTimeoutMs,
    onStrayError: (err) => logger.error({ err }, 'upstream connection error'),
  });
  const sweep = createExchangeSweep({ responseMs: config.upstreamTimeoutMs, idleMs: config.idleTimeoutMs });
  const basePath = upstreamBasePath(config.upstream);
  const http = createHttpForwarder({ pool, sweep, metrics, log: logger, isDraining, basePath });
  const websocket = createWebSocketForwarder({ proxy, metrics, log: logger, guard, idleTimeoutMs: config.wsIdleTimeoutMs });

  const protect = (handler: Handler): Handler =>
    config.metricsToken === undefined ? handler : requireToken(createBearerCheck(config.metricsToken), handler);
  const ownRoutes = new Map<string, Handler>([
    [config.metricsPath, protect(createMetricsEndpoint(registry, metrics, logger, deps.render))],
    [routesPath(config.metricsPath), protect(createRoutesEndpoint(metrics))],
    [HEALTH_PATH, health.serveLiveness],
    [READY_PATH, health.serveReadiness],
  ]);
  // The live status page (public: static, no data) and its JSON (behind the token); paths already taken win.
  const statusRoutes = createStatusRoutes({
    registry, health, openWebSockets: websocket.openSessions, upstream: config.upstream, log: logger, protect,
    apiPrefix: config.apiPrefix, metricsPath: config.metricsPath, adminListener: config.metricsPort !== undefined,
  });
  for (const [path, handler] of statusRoutes) if (!ownRoutes.has(path)) ownRoutes.set(path, handler);
  const separateAdmin = config.metricsPort !== undefined;
  // With an admin port the main port still reserves the metrics path (404, never forwarded) but answers nothing itself.
  const routerDeps = {
    classify: createPathClassifier(
      config.apiPrefix,
      separateAdmin ? [config.metricsPath, routesPath(config.metricsPath)] : ownRoutes.keys(),
    ),
    http,
    websocket,
    ownRoutes: separateAdmin ? new Map<string, Handler>() : ownRoutes,
    isDraining,
    clientIdleMs: clientIdleMs({ idleTimeoutMs: config.idleTimeoutMs }),
  };
  const limits = {
    keepAliveTimeoutMs: config.keepAliveTimeoutMs,
    idleTimeoutMs: config.idleTimeoutMs,
    maxHeaderSize: config.maxHeaderSize,
  };
  const server = createHttpServer(
    { onRequest: createRequestListener(routerDeps), onUpgrade: createUpgradeListener(routerDeps) },
    { ...limits, idleSetByRouter: true },
  );
  const adminServer = separateAdmin
    ? createHttpServer({ onRequest: createAdminListener(ownRoutes, isDraining), onUpgrade: refuseUpgrade }, limits)
    : undefined;

  async function closeAll(graceMs: number): Promise<void> {
    // Upgraded sockets keep server.close() waiting: the WebSocket drain ends them within the same grace.
    await Promise.all([closeServer(server, graceMs), websocket.closeAll(graceMs)]);
    if (adminServer !== undefined) await closeServer(adminServer, 1_000);
    guard.close();
    sweep.close();
    proxy.close();
    agent.destroy();
    await pool.close();
  }

  return {
    registry,
    server,
    adminServer,
    logger,
    async listen() {
      const bound = await listen(server, config.port, config.host);
      let admin: ListeningAddress['admin'];
      if (adminServer !== undefined && config.metricsPort !== undefined) {
        try {
          const adminBound = await listen(adminServer, config.metricsPort, config.metricsHost ?? config.host, '--metrics-port');
          admin = { address: adminBound.address, port: adminBound.port };
        } catch (err) {
          await closeServer(server, 0);
          throw err;
        }
      }
      // Tools read the bound port from this line (--port 0), so it is written whatever the level, short of silent.
      const level = logger.isLevelEnabled('info') ? 'info' : logger.level;
      if (level !== 'silent') logger[level as 'info'](
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
      return { address: bound.address, port: bound.port, ...(admin === undefined ? {} : { admin }) };
    },
    async shutdown() {
      health.startDraining();
      logger.info({ drainDelayMs: config.drainDelayMs, shutdownTimeoutMs: config.shutdownTimeoutMs }, 'draining');
      if (config.drainDelayMs > 0) await delay(config.drainDelayMs);
      logger.info({ openWebSockets: websocket.openSessions() }, 'refusing new connections');
      await closeAll(config.shutdownTimeoutMs);
    },
    async close(graceMs = DEFAULT_CLOSE_GRACE_MS) {
      health.startDraining();
      await closeAll(graceMs);
    },
  };
}
