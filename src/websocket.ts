/**
 * WebSocket forwarding on http-proxy. A session counts once in apiCount and
 * apiDuration, for its handshake (until the upstream's 101 is relayed, or the
 * handshake failed); `apiErrorCount{type="ws"}` counts failed handshakes and
 * open sessions whose upstream side errored. Both sockets are tied together so
 * that neither outlives the other.
 */
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { ErrorCallback, ProxyServer } from 'http-proxy-3';
import type { Logger } from 'pino';
import { prepareRequestHeaders } from './headers.js';
import type { MetricsRecorder } from './metrics.js';
import { errorBody, sendJsonOnSocket } from './respond.js';
import { classifyUpstreamError } from './upstream-errors.js';
import { GOING_AWAY, closeFrame, expectedAccept } from './ws-frames.js';
import { closeCodeLabel, createFrameInspector } from './ws-inspector.js';

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
  /** Ends every open session with close code 1001 (going away) on both sides. */
  closeAll(): void;
}

interface Session {
  readonly startedAt: number;
  readonly method: string | undefined;
  readonly socket: Duplex;
  readonly key: string | undefined;
  /** The forwarded path without query, for the route label. */
  readonly path: string;
  readonly traceparent: string | undefined;
  proxyReq: ClientRequest | undefined;
  proxySocket: Socket | undefined;
  recorded: boolean;
  upgraded: boolean;
  /** The upstream ended its side: a write failing afterwards (EPIPE) is part of a normal close. */
  upstreamEnded: boolean;
  errorCounted: boolean;
  clientGone: boolean;
}

const SESSION = Symbol('metrics-proxy.ws-session');
/** What nginx, Traefik and Caddy record for a request whose client went away first. */
const CLIENT_CLOSED_REQUEST = 499;
type TrackedSocket = Duplex & { [SESSION]?: Session };
/** How long a peer gets to answer our close frame before its socket is cut. */
const CLOSE_GRACE_MS = 1_000;

/** Ends our side, drains what the peer still sends so its FIN is seen, and cuts it if it lingers. */
function endSoon(socket: Duplex): void {
  if (socket.destroyed) return;
  socket.end();
  socket.resume();
  setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
}

export function createWebSocketForwarder(deps: WebSocketForwarderDeps): WebSocketForwarder {
  const { proxy, metrics, log, guard, idleTimeoutMs } = deps;
  const open = new Set<Session>();

  /** The handshake is the request: recorded once, with the status the client got. */
  function recordHandshake(session: Session, status: number, errorType = ''): void {
    if (session.recorded) return;
    session.recorded = true;
    metrics.recordRequest({
      method: session.method,
      path: session.path,
      status,
      errorType,
      durationMs: performance.now() - session.startedAt,
      requestBytes: 0,
      responseBytes: 0,
      traceparent: session.traceparent,
    });
  }

  /** Standard-family session metrics: live count, messages and bytes each way, lifetime by close code. */
  function observeSession(session: Session, proxySocket: Socket): void {
    if (!metrics.inspectsSessions) return;
    const route = metrics.routeOf(session.path);
    const openedAt = performance.now();
    let closeCode: number | undefined;
    const onClose = (code: number): void => {
      closeCode ??= code;
    };
    const upstream = createFrameInspector(true, {
      onMessage: (bytes) => metrics.sessionMessage(route, 'upstream', bytes),
      onClose,
    });
    const downstream = createFrameInspector(false, {
      onMessage: (bytes) => metrics.sessionMessage(route, 'downstream', bytes),
      onClose,
    });
    session.socket.on('data', (chunk: Buffer) => upstream.push(chunk));
    proxySocket.on('data', (chunk: Buffer) => downstream.push(chunk));
    metrics.sessionOpened(route);
    session.socket.once('close', () =>
      metrics.sessionClosed(route, closeCodeLabel(closeCode), (performance.now() - openedAt) / 1000),
    );
  }

  function countError(session: Session): void {
    if (session.errorCounted) return;
    session.errorCounted = true;
    metrics.recordError('ws');
  }

  /** Closes both sides of an open session with `code`, then cuts whatever has not closed in time. */
  function closeSession(session: Session, code: number): void {
    const { socket, proxySocket } = session;
    if (proxySocket === undefined) return;
    proxySocket.unpipe(socket);
    socket.unpipe(proxySocket);
    if (socket.writable) socket.end(closeFrame(code, false));
    if (proxySocket.writable) proxySocket.end(closeFrame(code, true));
    const timer = setTimeout(() => {
      socket.destroy();
      proxySocket.destroy();
    }, CLOSE_GRACE_MS);
    timer.unref();
  }

  function onUpgraded(session: Session, proxyRes: IncomingMessage, proxySocket: Socket): void {
    const { socket } = session;
    session.upgraded = true;
    session.proxySocket = proxySocket;
    const accept = proxyRes.headers['sec-websocket-accept'];
    if (session.key !== undefined && accept !== expectedAccept(session.key)) {
      // A 101 that does not prove the upstream speaks WebSocket: refuse it before http-proxy relays it.
      countError(session);
      metrics.recordUpstreamFailure('protocol');
      recordHandshake(session, 502, 'protocol');
      log.warn('upstream answered 101 with a wrong Sec-WebSocket-Accept');
      proxySocket.destroy();
      sendJsonOnSocket(socket, 502, errorBody('upstream sent an invalid websocket handshake'));
      return;
    }
    recordHandshake(session, 101);
    if (socket.destroyed) {
      proxySocket.destroy();
      return;
    }
    open.add(session);
    observeSession(session, proxySocket);
    // http-proxy pipes the two sockets; a destroyed side would leave the other open.
    // http-proxy pipes the two sockets; once one side is gone the pipe is undone and the other side
    // sits paused, never reading the peer's last bytes (its close frame), so it would never close.
    socket.once('close', () => {
      open.delete(session);
      endSoon(proxySocket);
    });
    proxySocket.once('end', () => {
      session.upstreamEnded = true;
    });
    proxySocket.once('close', () => endSoon(socket));
    if (idleTimeoutMs > 0) {
      // Every relayed byte crosses the client socket, so its idle timer covers both directions.
      socket.once('timeout', () => {
        log.info({ idleTimeoutMs }, 'closing idle websocket session');
        closeSession(session, GOING_AWAY);
      });
      // After http-proxy's setupSocket(), which clears socket timeouts.
      setImmediate(() => (socket as Socket).setTimeout?.(idleTimeoutMs));
    }
  }

  proxy.on('proxyReqWs', (proxyReq: ClientRequest, req: IncomingMessage, socket: Socket) => {
    const session = (socket as TrackedSocket)[SESSION];
    if (session === undefined) return;
    session.proxyReq = proxyReq;
    if (session.clientGone) {
      proxyReq.destroy();
      return;
    }
    guard(proxyReq);
    proxyReq.once('upgrade', (proxyRes: IncomingMessage, proxySocket: Socket) => onUpgraded(session, proxyRes, proxySocket));
    proxyReq.once('response', (proxyRes: IncomingMessage) => {
      // Not a 101: http-proxy relays the upstream's answer as is; for us the handshake failed.
      countError(session);
      const status = proxyRes.statusCode ?? 502;
      recordHandshake(session, status, status >= 500 ? String(status) : '');
      log.warn({ status: proxyRes.statusCode, url: req.url }, 'upstream refused the websocket upgrade');
    });
  });

  function onProxyError(err: Error, req: IncomingMessage, socket: IncomingMessage | Socket | Duplex): void {
    const session = (socket as TrackedSocket)[SESSION];
    if (session === undefined) return;
    if (session.clientGone) {
      recordHandshake(session, CLIENT_CLOSED_REQUEST);
      return;
    }
    if (session.upgraded && session.upstreamEnded) {
      // The upstream closed first and the client's last frames found the door shut: a normal end.
      log.debug({ err, url: req.url }, 'websocket closed by upstream while the client was sending');
      session.socket.destroy();
      return;
    }
    countError(session);
    if (session.upgraded) {
      log.warn({ err, url: req.url }, 'websocket upstream connection failed');
      session.socket.destroy();
      return;
    }
    const failure = classifyUpstreamError(err);
    metrics.recordUpstreamFailure(failure.kind);
    recordHandshake(session, failure.status, failure.kind);
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
    recordHandshake(session, CLIENT_CLOSED_REQUEST);
  }

  return {
    openSessions: () => open.size,
    closeAll() {
      for (const session of open) closeSession(session, GOING_AWAY);
    },
    forward(req, socket, head, url, startedAt) {
      const tracked = socket as TrackedSocket;
      // Node removes its own error listener from upgraded sockets: without ours, a reset would crash the process.
      tracked.on('error', onClientSocketError);
      tracked.once('close', onClientSocketClose);
      const key = req.headers['sec-websocket-key'];
      const traceparent = req.headers.traceparent;
      metrics.requestStarted(req.method);
      tracked[SESSION] = {
        startedAt,
        method: req.method,
        socket,
        key: typeof key === 'string' ? key : undefined,
        path: url.split('?')[0] ?? url,
        traceparent: typeof traceparent === 'string' ? traceparent : undefined,
        proxyReq: undefined,
        proxySocket: undefined,
        recorded: false,
        upgraded: false,
        upstreamEnded: false,
        errorCounted: false,
        clientGone: false,
      };
      req.url = url;
      prepareRequestHeaders(req, true);
      proxy.ws(req, socket, head, {}, onProxyError as ErrorCallback);
    },
  };
}
