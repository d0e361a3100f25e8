/**
 * The listeners of an app: the main port (forwarding and, without --metrics-port, the proxy's own
 * paths) and the admin port, each taking HTTP/1.1 and HTTP/2 (listener.ts), with their routers.
 */
import type { Logger } from 'pino';
import type { ProxyConfig } from '../config/config.js';
import type { HttpForwarder } from '../proxy/forwarder.js';
import type { WebSocketForwarder } from '../proxy/websocket/forwarder.js';
import { createHttp2AdminListener, createHttp2RequestListener } from './h2-router.js';
import { type Listener, createListener } from './listener.js';
import { createPathClassifier } from './paths.js';
import { type Handler, createAdminListener, createRequestListener, createUpgradeListener, refuseUpgrade } from './router.js';
import { clientIdleMs, closeServer, listen } from './server.js';

/** What the main listener forwards to. */
export interface ServerForwarders {
  readonly http: HttpForwarder;
  readonly websocket: WebSocketForwarder;
}

export interface ListeningAddress {
  readonly address: string;
  readonly port: number;
  /** The admin listener, when --metrics-port is set. */
  readonly admin?: { readonly address: string; readonly port: number };
}

/** The routes debug endpoint sits next to the metrics path: `/metrics` → `/metrics/routes`. */
export function routesPath(metricsPath: string): string {
  return metricsPath === '/' ? '/routes' : `${metricsPath}/routes`;
}

export interface Servers {
  readonly main: Listener;
  readonly admin: Listener | undefined;
}

/**
 * The main listener, and the admin one when --metrics-port is set; each takes HTTP/1.1 and HTTP/2.
 * `log` gets the request heads refused before they reach a router (timed out, too large, malformed).
 */
export function createServers(
  config: ProxyConfig,
  forwarders: ServerForwarders,
  ownRoutes: Map<string, Handler>,
  isDraining: () => boolean,
  log?: Logger,
): Servers {
  const separateAdmin = config.metricsPort !== undefined;
  // With an admin port the main port still reserves the metrics path (404, never forwarded) but answers nothing itself.
  const routerDeps = {
    classify: createPathClassifier(
      config.apiPrefix,
      separateAdmin ? [config.metricsPath, routesPath(config.metricsPath)] : ownRoutes.keys(),
    ),
    http: forwarders.http,
    websocket: forwarders.websocket,
    ownRoutes: separateAdmin ? new Map<string, Handler>() : ownRoutes,
    isDraining,
    clientIdleMs: clientIdleMs({ idleTimeoutMs: config.idleTimeoutMs }),
  };
  const limits = {
    keepAliveTimeoutMs: config.keepAliveTimeoutMs,
    requestHeaderTimeoutMs: config.requestHeaderTimeoutMs,
    idleTimeoutMs: config.idleTimeoutMs,
    maxHeaderSize: config.maxHeaderSize,
    maxConcurrentStreams: config.http2MaxConcurrentStreams,
    http2IdleTimeoutMs: config.http2IdleTimeoutMs,
  };
  const main = createListener(
    {
      onRequest: createRequestListener(routerDeps),
      onUpgrade: createUpgradeListener(routerDeps),
      onHttp2Request: createHttp2RequestListener(routerDeps),
      log,
    },
    { ...limits, idleSetByRouter: true },
  );
  const admin = separateAdmin
    ? createListener(
        {
          onRequest: createAdminListener(ownRoutes, isDraining),
          onUpgrade: refuseUpgrade,
          onHttp2Request: createHttp2AdminListener(ownRoutes),
          log,
        },
        limits,
      )
    : undefined;
  return { main, admin };
}

/** Binds the main listener, then the admin one (releasing the first if the second fails). */
export async function listenAll(config: ProxyConfig, { main, admin }: Servers): Promise<ListeningAddress> {
  const server = main.server;
  const adminServer = admin?.server;
  const bound = await listen(server, config.port, config.host);
  if (adminServer === undefined || config.metricsPort === undefined) return { address: bound.address, port: bound.port };
  try {
    const admin = await listen(adminServer, config.metricsPort, config.metricsHost ?? config.host, '--metrics-port');
    return { address: bound.address, port: bound.port, admin: { address: admin.address, port: admin.port } };
  } catch (err) {
    await closeServer(server, 0);
    throw err;
  }
}
