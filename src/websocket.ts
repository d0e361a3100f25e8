/**
 * WebSocket forwarding on http-proxy. A session counts once in apiCount and
 * apiDuration, for its handshake (until the upstream's 101 is relayed, or the
 * handshake failed); `apiErrorCount{type="ws"}` counts failed handshakes and
 * open sessions whose upstream side errored. Both sockets are tied together so
 * that neither outlives the other.
 */
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type httpProxy from 'http-proxy';
import type { Logger } from 'pino';
import { prepareRequestHeaders } from './headers.js';
import type { MetricsRecorder } from './metrics.js';
import { errorBody, sendJsonOnSocket } from './respond.js';
import { classifyUpstreamError } from './upstream-errors.js';

export interface WebSocketForwarderDeps {
  readonly proxy: httpProxy;
  readonly metrics: MetricsRecorder;
  readonly log: Logger;
}

export interface WebSocketForwarder {
  forward(req: IncomingMessage, socket: Duplex, head: Buffer, url: string, startedAt: number): void;
  /** Client sockets of open sessions, for shutdown. */
  readonly openSessions: ReadonlySet<Duplex>;
}

interface Session {
  readonly startedAt: number;
  readonly method: string | undefined;
  readonly socket: Duplex;
  proxyReq: ClientRequest | undefined;
  recorded: boolean;
  upgraded: boolean;
  errorCounted: boolean;
  clientGone: boolean;
}

const SESSION = Symbol('metrics-proxy.ws-session');
type TrackedSocket = Duplex & { [SESSION]?: Session };

export function createWebSocketForwarder({ proxy, metrics, log }: WebSocketForwarderDeps): WebSocketForwarder {
  const openSessions = new Set<Duplex>();

  function recordHandshake(session: Session): void {
    if (session.recorded) return;
    session.recorded = true;
    metrics.recordRequest(session.method, performance.now() - session.startedAt);
  }

  function countError(session: Session): void {
    if (session.errorCounted) return;
    session.errorCounted = true;
    metrics.recordError('ws');
  }

  proxy.on('proxyReqWs', (proxyReq: ClientRequest, _req: IncomingMessage, socket: Socket) => {
    const session = (socket as TrackedSocket)[SESSION];
    if (session === undefined) return;
    session.proxyReq = proxyReq;
    if (session.clientGone) {
      proxyReq.destroy();
      return;
    }
    proxyReq.once('upgrade', (_proxyRes: IncomingMessage, proxySocket: Socket) => {
      session.upgraded = true;
      recordHandshake(session);
      if (socket.destroyed) {
        proxySocket.destroy();
        return;
      }
      openSessions.add(socket);
      // http-proxy pipes the two sockets; a destroyed side would leave the other open.
      socket.once('close', () => {
        openSessions.delete(socket);
        proxySocket.end();
      });
      proxySocket.once('close', () => socket.end());
    });
    proxyReq.once('response', (proxyRes: IncomingMessage) => {
      // Not a 101: http-proxy relays the upstream's answer as is; for us the handshake failed.
      countError(session);
      recordHandshake(session);
      log.warn({ status: proxyRes.statusCode, url: _req.url }, 'upstream refused the websocket upgrade');
    });
  });

  function onProxyError(err: Error, req: IncomingMessage, socket: IncomingMessage | Socket | Duplex): void {
    const session = (socket as TrackedSocket)[SESSION];
    if (session === undefined) return;
    if (session.clientGone) {
      recordHandshake(session);
      return;
    }
    countError(session);
    if (session.upgraded) {
      log.warn({ err, url: req.url }, 'websocket upstream connection failed');
      session.socket.destroy();
      return;
    }
    recordHandshake(session);
    const failure = classifyUpstreamError(err);
    log.error({ err, kind: failure.kind, url: req.url }, 'websocket upgrade to upstream failed');
    sendJsonOnSocket(session.socket, failure.status, errorBody(failure.msg));
  }

  function onClientSocketError(this: TrackedSocket, err: Error): void {
    log.debug({ err }, 'websocket client socket error');
  }

  function onClientSocketClose(this: TrackedSocket): void {
    const session = this[SESSION];
    if (session === undefined || session.upgraded) return;
    // The client gave up during the handshake: stop the upstream request, count the attempt, no error.
    session.clientGone = true;
    session.proxyReq?.destroy();
    recordHandshake(session);
  }

  return {
    openSessions,
    forward(req, socket, head, url, startedAt) {
      const tracked = socket as TrackedSocket;
      // Node removes its own error listener from upgraded sockets: without ours, a reset would crash the process.
      tracked.on('error', onClientSocketError);
      tracked.once('close', onClientSocketClose);
      tracked[SESSION] = {
        startedAt,
        method: req.method,
        socket,
        proxyReq: undefined,
        recorded: false,
        upgraded: false,
        errorCounted: false,
        clientGone: false,
      };
      req.url = url;
      prepareRequestHeaders(req, true);
      proxy.ws(req, socket, head, {}, onProxyError as httpProxy.ErrorCallback);
    },
  };
}
