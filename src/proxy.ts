/**
 * HTTP forwarding on http-proxy, with the lifecycle http-proxy leaves to us:
 * every error handled (its default re-throws), the upstream request cancelled
 * when the client goes away, a broken connection (not a truncated body that
 * looks complete) when the upstream dies mid-response, and each request's
 * outcome reported to the recorder exactly once, on the response's 'close'.
 */
import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type httpProxy from 'http-proxy';
import type { Logger } from 'pino';
import { prepareRequestHeaders, prepareResponseHeaders } from './headers.js';
import type { MetricsRecorder } from './metrics.js';
import { errorBody, sendJson } from './respond.js';
import { classifyUpstreamError } from './upstream-errors.js';

export interface HttpForwarderDeps {
  readonly proxy: httpProxy;
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
  errorCounted: boolean;
  /** The client stopped sending or reading: what failed upstream afterwards is not the upstream's fault. */
  clientStalled: boolean;
  closed: boolean;
}

const EXCHANGE = Symbol('metrics-proxy.exchange');
const CLIENT_RESPONSE = Symbol('metrics-proxy.client-response');
const EXCHANGE_OF = Symbol('metrics-proxy.exchange-of');
type TrackedProxyRequest = ClientRequest & { [EXCHANGE_OF]?: Exchange };

/** Idle on the upstream socket: the client's fault if its upload is unfinished or it stopped reading. */
export function blameIdle(proxyReq: ClientRequest): 'client' | 'upstream' {
  const exchange = (proxyReq as TrackedProxyRequest)[EXCHANGE_OF];
  if (exchange === undefined) return 'upstream';
  if (exchange.req.complete && !exchange.res.writableNeedDrain) return 'upstream';
  exchange.clientStalled = true;
  return 'client';
}
type TrackedResponse = ServerResponse & { [EXCHANGE]?: Exchange };
type WebWithCallback = (req: IncomingMessage, res: ServerResponse, callback: httpProxy.ErrorCallback) => void;
type TrackedUpstreamResponse = IncomingMessage & { [CLIENT_RESPONSE]?: TrackedResponse };

export function createHttpForwarder({ proxy, metrics, log, guard, isDraining }: HttpForwarderDeps): HttpForwarder {
  function countError(exchange: Exchange): void {
    if (exchange.errorCounted) return;
    exchange.errorCounted = true;
    metrics.recordError('api');
  }

  function onResponseClose(this: TrackedResponse): void {
    const exchange = this[EXCHANGE];
    if (exchange === undefined || exchange.closed) return;
    exchange.closed = true;
    // The client left (or we cut it off) before the response finished: release the upstream socket too.
    if (!this.writableFinished && exchange.proxyReq !== undefined && !exchange.proxyReq.destroyed) {
      exchange.proxyReq.destroy();
    }
    metrics.recordRequest(exchange.method, performance.now() - exchange.startedAt);
  }

  function onUpstreamResponseClose(this: TrackedUpstreamResponse): void {
    const res = this[CLIENT_RESPONSE];
    const exchange = res?.[EXCHANGE];
    if (res === undefined || exchange === undefined || this.complete || exchange.closed || exchange.clientStalled) return;
    // The upstream died mid-body: the client must see a broken connection, not a short body.
    countError(exchange);
    log.warn({ method: exchange.method, url: res.req.url }, 'upstream closed the connection mid-response');
    res.destroy();
  }

  proxy.on('proxyReq', (proxyReq: ClientRequest, req: IncomingMessage, res: ServerResponse) => {
    const exchange = (res as TrackedResponse)[EXCHANGE];
    if (exchange === undefined) return;
    exchange.proxyReq = proxyReq;
    if (exchange.closed) {
      proxyReq.destroy();
      return;
    }
    (proxyReq as TrackedProxyRequest)[EXCHANGE_OF] = exchange;
    guard(proxyReq, req);
  });

  proxy.on('proxyRes', (proxyRes: IncomingMessage, _req: IncomingMessage, res: ServerResponse) => {
    const tracked = res as TrackedResponse;
    const exchange = tracked[EXCHANGE];
    if (exchange === undefined) return;
    prepareResponseHeaders(proxyRes.headers);
    // Say what Node will do with the client connection (http-proxy would otherwise invent a value).
    if (isDraining()) res.shouldKeepAlive = false;
    proxyRes.headers.connection = res.shouldKeepAlive ? 'keep-alive' : 'close';
    if ((proxyRes.statusCode ?? 0) >= 500) countError(exchange);
    (proxyRes as TrackedUpstreamResponse)[CLIENT_RESPONSE] = tracked;
    proxyRes.once('close', onUpstreamResponseClose);
  });

  // http-proxy reports a client that hung up mid-upload separately; it aborts the upstream request itself.
  proxy.on('econnreset', () => {});

  function onProxyError(err: Error, req: IncomingMessage, res: ServerResponse | Socket): void {
    const tracked = res as TrackedResponse;
    const exchange = tracked[EXCHANGE];
    if (exchange === undefined) return;
    if (exchange.closed || exchange.clientStalled || req.socket.destroyed) {
      // The client is gone or stalled; whatever failed upstream is a consequence, not an upstream fault.
      if (exchange.clientStalled) log.info({ method: req.method, url: req.url }, 'client stalled: idle timeout');
      tracked.destroy();
      return;
    }
    const failure = classifyUpstreamError(err);
    countError(exchange);
    log.error({ err, kind: failure.kind, method: req.method, url: req.url }, 'upstream request failed');
    sendJson(tracked, failure.status, errorBody(failure.msg));
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
        errorCounted: false,
        clientStalled: false,
        closed: false,
      };
      (res as TrackedResponse)[EXCHANGE] = exchange;
      res.once('close', onResponseClose);
      // Callback as third argument: http-proxy then reuses its shared options instead of copying them per request.
      (proxy.web as unknown as WebWithCallback)(req, res, onProxyError);
    },
  };
}
