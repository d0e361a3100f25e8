/**
 * The one wiring point: registry → logger → metrics → proxy → router → server.
 * Everything stateful is created here, per instance, so two apps in one
 * process share nothing.
 */
import { Agent as HttpAgent, type Server } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { isIP } from 'node:net';
import httpProxy from 'http-proxy';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import type { ProxyConfig } from './config.js';
import { createLogger } from './logger.js';
import { createMetrics } from './metrics.js';
import { createMetricsEndpoint } from './metrics-endpoint.js';
import { createPathClassifier } from './paths.js';
import { createHttpForwarder } from './proxy.js';
import { createRequestListener, createUpgradeListener } from './router.js';
import { closeServer, createHttpServer, listen } from './server.js';
import { createWebSocketForwarder } from './websocket.js';

export interface AppDeps {
  readonly logger?: Logger;
  readonly registry?: Registry;
}

export interface ListeningAddress {
  readonly address: string;
  readonly port: number;
}

export interface App {
  readonly registry: Registry;
  readonly server: Server;
  readonly logger: Logger;
  /** Binds `config.host:config.port` and logs one `listening` line with the port actually bound. */
  listen(): Promise<ListeningAddress>;
  /** Stops accepting, waits up to `graceMs` for in-flight requests, then closes everything. */
  close(graceMs?: number): Promise<void>;
}

/** Idle upstream sockets are closed before common servers' keep-alive timeouts (Node's is 5 s) to avoid reuse races. */
const UPSTREAM_IDLE_SOCKET_MS = 4_000;
const DEFAULT_CLOSE_GRACE_MS = 10_000;

function createUpstreamAgent(upstream: URL): HttpAgent {
  const options = { keepAlive: true, maxFreeSockets: 256, scheduling: 'lifo' as const, timeout: UPSTREAM_IDLE_SOCKET_MS };
  if (upstream.protocol !== 'https:') return new HttpAgent(options);
  // SNI and certificate checks use the upstream's name, not the Host header the client sent.
  const hostname = upstream.hostname.replace(/^\[|\]$/g, '');
  return new HttpsAgent({ ...options, servername: isIP(hostname) === 0 ? hostname : '' });
}

export function buildApp(config: ProxyConfig, deps: AppDeps = {}): App {
  const registry = deps.registry ?? new Registry();
  const logger = deps.logger ?? createLogger(config.logLevel);
  const metrics = createMetrics(registry, { bucketsMs: config.bucketsMs });
  const agent = createUpstreamAgent(config.upstream);
  // No `xfwd`, no `changeOrigin`: headers.ts owns the header rules, and the Host the client sent is kept.
  const proxy = httpProxy.createProxyServer({ target: config.upstream.href, agent, ws: true });
  const http = createHttpForwarder({ proxy, metrics, log: logger });
  const websocket = createWebSocketForwarder({ proxy, metrics, log: logger });
  const routerDeps = {
    classify: createPathClassifier(config.apiPrefix, config.metricsPath),
    http,
    websocket,
    serveMetrics: createMetricsEndpoint(registry, metrics, logger),
  };
  const server = createHttpServer({
    onRequest: createRequestListener(routerDeps),
    onUpgrade: createUpgradeListener(routerDeps),
  });

  return {
    registry,
    server,
    logger,
    async listen() {
      const bound = await listen(server, config.port, config.host);
      logger.info(
        {
          address: bound.address,
          port: bound.port,
          upstream: config.upstream.href,
          apiPrefix: config.apiPrefix,
          metricsPath: config.metricsPath,
        },
        'listening',
      );
      return { address: bound.address, port: bound.port };
    },
    async close(graceMs = DEFAULT_CLOSE_GRACE_MS) {
      await closeServer(server, websocket.openSessions, graceMs);
      proxy.close();
      agent.destroy();
    },
  };
}
