/**
 * HTTP forwarding on http-proxy, with the lifecycle http-proxy leaves to us:
 * every error handled (its default re-throws), the upstream request cancelled
 * when the client goes away, a broken connection (not a truncated body that
 * looks complete) when the upstream dies mid-response, upstream answers Node
 * would choke on refused before http-proxy relays them, and each request's
 * outcome reported to the recorder exactly once.
 */
import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { ErrorCallback, ProxyServer } from 'http-proxy-3';
import type { Logger } from 'pino';
import { prepareRequestHeaders, prepareResponseHeaders } from './headers.js';
import type { MetricsRecorder } from './metrics.js';
import { errorBody, sendJson } from './respond.js';
import { type UpstreamFailure, classifyUpstreamError } from './upstream-errors.js';

export interface HttpForwarderDeps {
  readonly proxy: ProxyServer;
  readonly metrics: MetricsRecorder;
  readonly log: Logger;
  /** Arms connect/response/idle timers on each upstream request. */
  readonly guard: (proxyReq: ClientRequest, clientReq?: IncomingMessage) => void;
  /** While true, every response tells the client to close its connection (graceful drain). */
  readonly isDraining: () => boolean;
}

export interface HttpForwarder {
  /** Forwards `req` to the upstream as `url` (path and query); `startedAt` is its arrival, from performance.now(). */
  forward(req: IncomingMessage, res: ServerResponse, url: string, startedAt: number): void;
}

/** Per-request state, kept on the response so the shared listeners below need no closures. */
interface Exchange {
  readonly startedAt: number;
  readonly method: string | undefined;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  proxyReq: ClientRequest | undefined;
  /** http-proxy has started relaying the upstream's response: from here on, failures break the connection. */
  upstreamResponded: boolean;
  errorCounted: boolean;
  /** Standard family's error_type: '' for success, the upstream's 5xx status, or the failure kind. */
  errorType: string;
  /** The proxy cut the client connection because of an upstream fault (not a client that left). */
  brokenByUpstream: boolean;
  /** Body bytes counted on the wire when no Content-Length tells them. */
  requestBytes: number;
  responseBytes: number;
  /** The client stopped sending or reading: what failed upstream afterwards is not the upstream's fault. */
  clientStalled: boolean;
  closed: boolean;
}

const EXCHANGE = Symbol('metrics-proxy.exchange');
const EXCHANGE_OF = Symbol('metrics-proxy.exchange-of');
const PENDING = Symbol('metrics-proxy.pending-exchanges');
type TrackedResponse = ServerResponse & { [EXCHANGE]?: Exchange };
type TrackedMessage = (ClientRequest | IncomingMessage) & { [EXCHANGE_OF]?: Exchange };
type TrackedSocket = Socket & { [PENDING]?: Set<Exchange> };
type WebWithCallback = (req: IncomingMessage, res: ServerResponse, callback: ErrorCallback) => void;

const PROTOCOL_FAILURE = classifyUpstreamError({ code: 'HPE_INVALID_STATUS' });
const RESET_FAILURE = classifyUpstreamError({ code: 'ECONNRESET' });
/** What nginx, Traefik and Caddy record for a request whose client went away first. */
const CLIENT_CLOSED_REQUEST = 499;

function contentLength(headers: IncomingMessage['headers']): number | undefined {
  const value = headers['content-length'];
  if (value === undefined) return undefined;
  const length = Number(value);
  return Number.isSafeInteger(length) && length >= 0 ? length : undefined;
}

function countRequestBytes(this: TrackedMessage, chunk: Buffer): void {
  const exchange = this[EXCHANGE_OF];
  if (exchange !== undefined) exchange.requestBytes += chunk.length;
}

function countResponseBytes(this: TrackedMessage, chunk: Buffer): void {
  const exchange = this[EXCHANGE_OF];
  if (exchange !== undefined) exchange.responseBytes += chunk.length;
}

function statusOf(exchange: Exchange): number {
  const { res } = exchange;
  if (res.writableFinished) return res.statusCode;
  if (exchange.brokenByUpstream) return res.headersSent ? res.statusCode : 502;
  return CLIENT_CLOSED_REQUEST;
}

function pathOf(url: string | undefined): string {
  const path = url ?? '/';
  const queryAt = path.indexOf('?');
  return queryAt === -1 ? path : path.slice(0, queryAt);
}

/** Idle on the upstream socket: the client's fault if its upload is unfinished or it stopped reading. */
export function blameIdle(proxyReq: ClientRequest): 'client' | 'upstream' {
  const exchange = (proxyReq as TrackedMessage)[EXCHANGE_OF];
  if (exchange === undefined) return 'upstream';
  if (exchange.req.complete && !exchange.res.writableNeedDrain) return 'upstream';
  exchange.clientStalled = true;
  return 'client';
}

export function createHttpForwarder({ proxy, metrics, log, guard, isDraining }: HttpForwarderDeps): HttpForwarder {
  function countError(exchange: Exchange): void {
    if (exchange.errorCounted) return;
    exchange.errorCounted = true;
    metrics.recordError('api');
  }

  /** Records the exchange once, and releases the upstream request if the response did not finish. */
  function finish(exchange: Exchange): void {
    if (exchange.closed) return;
    exchange.closed = true;
    (exchange.req.socket as TrackedSocket)[PENDING]?.delete(exchange);
    // A response that did not finish, or an upload the upstream did not take whole (it answered
    // early): the upstream request is over, and its socket must not be reused half-written.
    const { proxyReq } = exchange;
    if (proxyReq !== undefined && !proxyReq.destroyed && (!exchange.res.writableFinished || !proxyReq.writableFinished)) {
      proxyReq.destroy();
    }
    const { req } = exchange;
    metrics.recordRequest({
      method: exchange.method,
      path: pathOf(req.url),
      status: statusOf(exchange),
      errorType: exchange.errorType,
      durationMs: performance.now() - exchange.startedAt,
      requestBytes: contentLength(req.headers) ?? exchange.requestBytes,
      responseBytes: exchange.responseBytes,
      traceparent: typeof req.headers.traceparent === 'string' ? req.headers.traceparent : undefined,
    });
  }

  function onResponseClose(this: TrackedResponse): void {
    const exchange = this[EXCHANGE];
    if (exchange !== undefined) finish(exchange);
  }

  /** Node never closes responses still queued behind a pipelined one when the socket dies: finish them here. */
  function onClientSocketClose(this: TrackedSocket): void {
    const pending = this[PENDING];
    if (pending === undefined) return;
    for (const exchange of pending) finish(exchange);
  }

  /** Counts an upstream failure once in each family; a failure outranks an upstream 5xx that preceded it. */
  function markFailure(exchange: Exchange, failure: UpstreamFailure): void {
    countError(exchange);
    if (exchange.errorType === '' || /^\d/.test(exchange.errorType)) {
      exchange.errorType = failure.kind;
      metrics.recordUpstreamFailure(failure.kind);
    }
  }

  /** The proxy answers instead of the upstream, or breaks the connection if the answer has begun. */
  function fail(exchange: Exchange, failure: UpstreamFailure, err: unknown): void {
    markFailure(exchange, failure);
    log.error({ err, kind: failure.kind, method: exchange.method, url: exchange.req.url }, 'upstream request failed');
    if (exchange.upstreamResponded || exchange.res.headersSent) {
      exchange.brokenByUpstream = true;
      exchange.res.destroy();
    } else {
      sendJson(exchange.res, failure.status, errorBody(failure.msg));
    }
  }

  function onUpstreamResponseClose(this: TrackedMessage & IncomingMessage): void {
    const exchange = this[EXCHANGE_OF];
    if (exchange === undefined || this.complete || exchange.closed || exchange.clientStalled) return;
    // The upstream died mid-body: the client must see a broken connection, not a short body.
    markFailure(exchange, RESET_FAILURE);
    log.warn({ method: exchange.method, url: exchange.req.url }, 'upstream closed the connection mid-response');
    exchange.brokenByUpstream = true;
    exchange.res.destroy();
  }

  /** A 101 to a request that asked for no upgrade: Node would drop it silently and leave the client hanging. */
  function onUnexpectedUpgrade(this: TrackedMessage, _res: IncomingMessage, socket: Duplex): void {
    socket.destroy();
    const exchange = this[EXCHANGE_OF];
    if (exchange !== undefined && !exchange.closed) fail(exchange, PROTOCOL_FAILURE, new Error('unexpected 101 from upstream'));
  }

  proxy.on('proxyReq', (proxyReq: ClientRequest, req: IncomingMessage, res: ServerResponse) => {
    const exchange = (res as TrackedResponse)[EXCHANGE];
    if (exchange === undefined) return;
    exchange.proxyReq = proxyReq;
    if (exchange.closed) {
      proxyReq.destroy();
      return;
    }
    (proxyReq as TrackedMessage)[EXCHANGE_OF] = exchange;
    proxyReq.on('upgrade', onUnexpectedUpgrade);
    guard(proxyReq, req);
  });

  // Runs before http-proxy copies status and headers onto the client response, so it can still refuse them.
  proxy.on('proxyRes', (proxyRes: IncomingMessage, req: IncomingMessage, res: ServerResponse) => {
    const exchange = (res as TrackedResponse)[EXCHANGE];
    if (exchange === undefined) return;
    const status = proxyRes.statusCode ?? 0;
    if (status < 100 || status > 599) {
      // Node's writeHead would throw on it; answering now makes http-proxy skip the relay entirely.
      fail(exchange, PROTOCOL_FAILURE, new Error(`invalid upstream status ${status}`));
      proxyRes.destroy();
      exchange.proxyReq?.destroy();
      return;
    }
    exchange.upstreamResponded = true;
    prepareResponseHeaders(proxyRes.headers);
    // Say what Node will do with the client connection (http-proxy would otherwise invent a value).
    // An answer that comes before the whole request body (an early 401 or 413) closes the client
    // connection after it, as nginx does: the rest of the upload is never read into a reused one.
    if (isDraining() || !req.complete) res.shouldKeepAlive = false;
    proxyRes.headers.connection = res.shouldKeepAlive ? 'keep-alive' : 'close';
    if (status >= 500) {
      countError(exchange);
      exchange.errorType = String(status);
    }
    (proxyRes as TrackedMessage)[EXCHANGE_OF] = exchange;
    proxyRes.on('data', countResponseBytes);
    proxyRes.on('close', onUpstreamResponseClose); // 'close' comes once: `on` spares the once-wrapper
  });

  // http-proxy reports a client that hung up mid-upload separately; it aborts the upstream request itself.
  proxy.on('econnreset', () => {});

  function onProxyError(err: Error, req: IncomingMessage, res: ServerResponse | Socket): void {
    const exchange = (res as TrackedResponse)[EXCHANGE];
    if (exchange === undefined) return;
    if (exchange.closed || exchange.clientStalled || req.socket.destroyed) {
      // The client is gone or stalled; whatever failed upstream is a consequence, not an upstream fault.
      if (exchange.clientStalled) log.info({ method: req.method, url: req.url }, 'client stalled: idle timeout');
      res.destroy();
      return;
    }
    fail(exchange, classifyUpstreamError(err), err);
  }

  return {
    forward(req, res, url, startedAt) {
      req.url = url;
      prepareRequestHeaders(req, false);
      const exchange: Exchange = {
        startedAt,
        method: req.method,
        req,
        res,
        proxyReq: undefined,
        upstreamResponded: false,
        errorCounted: false,
        errorType: '',
        brokenByUpstream: false,
        requestBytes: 0,
        responseBytes: 0,
        clientStalled: false,
        closed: false,
      };
      metrics.requestStarted(req.method);
      // Only a chunked body has no Content-Length to tell its size; without either header a request has no body.
      if (req.headers['transfer-encoding'] !== undefined && !req.complete) {
        (req as TrackedMessage)[EXCHANGE_OF] = exchange;
        req.on('data', countRequestBytes);
      }
      (res as TrackedResponse)[EXCHANGE] = exchange;
      res.on('close', onResponseClose); // 'close' comes once: `on` spares the once-wrapper
      const socket = req.socket as TrackedSocket;
      let pending = socket[PENDING];
      if (pending === undefined) {
        pending = new Set();
        socket[PENDING] = pending;
        socket.once('close', onClientSocketClose);
      }
      pending.add(exchange);
      // Callback as third argument: http-proxy then reuses its shared options instead of copying them per request.
      (proxy.web as unknown as WebWithCallback)(req, res, onProxyError);
    },
  };
}
