/**
 * WebSocket forwarding: http-proxy-3 makes the upstream upgrade request and
 * relays the 101; everything else is a WebSocketSession (session.ts). This
 * module ties http-proxy-3's events to the sessions.
 *
 * A session counts once in apiCount and apiDuration, for its handshake;
 * `apiErrorCount{type="ws"}` counts failed handshakes and open sessions whose
 * upstream side errored.
 */
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ProxyServer } from 'http-proxy-3';
import type { Logger } from 'pino';
import type { MetricsRecorder } from '../../metrics/recorder.js';
import { prepareWebSocketHeaders } from '../headers.js';
import { createHandshakeProxy } from './handshake-proxy.js';
import { type HandshakeGuard, type HandshakeTimeouts, createHandshakeGuard } from './handshake-timeouts.js';
import { type SessionDeps, type UpgradeRequest, WebSocketSession } from './session.js';
import { pathOf } from '../url-parts.js';
import { SessionTable } from './session-table.js';

export interface WebSocketForwarderOptions {
  readonly upstream: URL;
  readonly timeouts: HandshakeTimeouts;
  /** No bytes either way for this long closes an open session; 0 = off. */
  readonly idleTimeoutMs: number;
  readonly metrics: MetricsRecorder;
  readonly log: Logger;
}

export interface WebSocketForwarder {
  forward(req: IncomingMessage, socket: Duplex, head: Buffer, url: string, startedAt: number): void;
  readonly openSessions: () => number;
  /**
   * The drain: every open session stops at its next frame boundary and both sides get 1001; a
   * handshake in flight completes and is then closed the same way. Resolves once every session has
   * ended, or after `graceMs`, when waiting handshakes are answered 503 and the rest is cut.
   */
  closeAll(graceMs: number): Promise<void>;
  /** Releases the handshake proxy and its agent (after closeAll). */
  close(): void;
}

function upgradeRequest(req: IncomingMessage, url: string, startedAt: number): UpgradeRequest {
  const { 'sec-websocket-key': key, traceparent } = req.headers;
  return {
    method: req.method,
    path: pathOf(url),
    key: typeof key === 'string' ? key : undefined,
    traceparent: typeof traceparent === 'string' ? traceparent : undefined,
    startedAt,
  };
}

/** Hands http-proxy-3's events to the session they belong to. */
function routeProxyEvents(proxy: ProxyServer, table: SessionTable, guard: HandshakeGuard, log: Logger): void {
  proxy.on('proxyReqWs', (proxyReq: ClientRequest, _req: IncomingMessage, socket: Duplex) => {
    const session = table.byClient(socket);
    if (session === undefined) return;
    guard(proxyReq);
    session.upstreamRequested(proxyReq);
  });
  proxy.on('open', (upstream: Socket) => table.takeOpening(upstream)?.open());
  // http-proxy-3 re-emits the client socket's errors here, and throws them when nobody listens.
  proxy.on('error', (err: Error) => {
    log.debug({ err }, 'websocket client socket error');
  });
}

export function createWebSocketForwarder(options: WebSocketForwarderOptions): WebSocketForwarder {
  const { metrics, log } = options;
  const { proxy, close } = createHandshakeProxy(options.upstream);
  const table = new SessionTable();
  const sessionDeps: SessionDeps = {
    metrics,
    log,
    idleTimeoutMs: options.idleTimeoutMs,
    awaitOpen: (upstream, session) => table.awaitOpen(upstream, session),
    ended: (session) => table.ended(session),
  };
  routeProxyEvents(proxy, table, createHandshakeGuard(options.timeouts), log);
  const onProxyError = (err: Error, _req: IncomingMessage, socket: unknown): void => {
    table.byClient(socket)?.upstreamFailed(err);
  };
  return {
    openSessions: () => table.openCount(),
    closeAll: (graceMs) => table.drain(graceMs),
    close,
    forward(req, socket, head, url, startedAt) {
      const session = new WebSocketSession(socket as Socket, upgradeRequest(req, url, startedAt), sessionDeps);
      table.add(session);
      metrics.requestStarted(req.method);
      if (table.draining) {
        session.abort();
        return;
      }
      req.url = url;
      prepareWebSocketHeaders(req);
      proxy.ws(req, socket, head, {}, onProxyError);
    },
  };
}
