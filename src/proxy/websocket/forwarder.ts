/**
 * WebSocket forwarding: http-proxy-3 makes the upstream upgrade request and
 * relays the 101; everything else is a WebSocketSession (ws-session.ts). This
 * module ties http-proxy-3's events to sessions and runs the drain.
 *
 * A session counts once in apiCount and apiDuration, for its handshake;
 * `apiErrorCount{type="ws"}` counts failed handshakes and open sessions whose
 * upstream side errored.
 */
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ErrorCallback, ProxyServer } from 'http-proxy-3';
import type { Logger } from 'pino';
import { prepareRequestHeaders } from '../headers.js';
import type { MetricsRecorder } from '../../metrics/recorder.js';
import { GOING_AWAY } from './frames.js';
import { type SessionDeps, type UpgradeRequest, WebSocketSession } from './session.js';

export interface WebSocketForwarderDeps {
  readonly proxy: ProxyServer;
  readonly metrics: MetricsRecorder;
  readonly log: Logger;
  /** Arms connect/response timers on the upstream handshake request. */
  readonly guard: (proxyReq: ClientRequest) => void;
  /** No bytes either way for this long closes an open session; 0 = off. */
  readonly idleTimeoutMs: number;
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
}

function upgradeRequest(req: IncomingMessage, url: string, startedAt: number): UpgradeRequest {
  const { 'sec-websocket-key': key, traceparent } = req.headers;
  const queryAt = url.indexOf('?');
  return {
    method: req.method,
    path: queryAt === -1 ? url : url.slice(0, queryAt),
    key: typeof key === 'string' ? key : undefined,
    traceparent: typeof traceparent === 'string' ? traceparent : undefined,
    startedAt,
  };
}

export function createWebSocketForwarder(deps: WebSocketForwarderDeps): WebSocketForwarder {
  const { proxy, log, guard } = deps;
  /** Every session from its upgrade request to its end, by client socket. */
  const sessions = new Map<Duplex, WebSocketSession>();
  /** Sessions whose 101 was accepted and that wait for http-proxy's 'open', by upstream socket. */
  const opening = new Map<Socket, WebSocketSession>();
  let draining = false;
  let allEnded: (() => void) | undefined;

  const sessionDeps: SessionDeps = {
    metrics: deps.metrics,
    log,
    idleTimeoutMs: deps.idleTimeoutMs,
    awaitOpen: (upstream, session) => opening.set(upstream, session),
    ended: (session) => {
      sessions.delete(session.client);
      if (session.upstreamSocket !== undefined) opening.delete(session.upstreamSocket);
      if (sessions.size === 0) allEnded?.();
    },
  };

  proxy.on('proxyReqWs', (proxyReq: ClientRequest, _req: IncomingMessage, socket: Duplex) => {
    const session = sessions.get(socket);
    if (session === undefined) return;
    guard(proxyReq);
    session.upstreamRequested(proxyReq);
  });

  proxy.on('open', (upstream: Socket) => {
    const session = opening.get(upstream);
    if (session === undefined) return;
    opening.delete(upstream);
    session.open();
  });

  // http-proxy-3 re-emits the client socket's errors here, and throws them when nobody listens.
  proxy.on('error', (err: Error) => {
    log.debug({ err }, 'websocket client socket error');
  });

  const onProxyError = (err: Error, _req: IncomingMessage, socket: unknown): void => {
    sessions.get(socket as Duplex)?.upstreamFailed(err);
  };

  return {
    openSessions() {
      let open = 0;
      for (const session of sessions.values()) if (session.isOpen) open++;
      return open;
    },
    closeAll(graceMs) {
      draining = true;
      for (const session of sessions.values()) session.close(GOING_AWAY);
      return new Promise<void>((resolve) => {
        if (sessions.size === 0) {
          resolve();
          return;
        }
        const deadline = setTimeout(() => {
          for (const session of [...sessions.values()]) session.abort();
          resolve();
        }, graceMs);
        allEnded = () => {
          clearTimeout(deadline);
          resolve();
        };
      });
    },
    forward(req, socket, head, url, startedAt) {
      const session = new WebSocketSession(socket as Socket, upgradeRequest(req, url, startedAt), sessionDeps);
      sessions.set(socket, session);
      deps.metrics.requestStarted(req.method);
      if (draining) {
        session.abort();
        return;
      }
      req.url = url;
      prepareRequestHeaders(req, true);
      proxy.ws(req, socket, head, {}, onProxyError as ErrorCallback);
    },
  };
}
