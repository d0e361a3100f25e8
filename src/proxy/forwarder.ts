/**
 * The HTTP forwarder: every forwarded request, from an HTTP/1.1 or an HTTP/2 client, becomes one
 * HttpExchange (exchange.ts) on one of two upstream legs with the same handler shape: undici's
 * HTTP/1.1 pool (upstream-pool.ts), or the HTTP/2 sessions (h2-upstream.ts) for gRPC calls and,
 * with `--upstream-protocol http2`, for everything. WebSocket upgrades take another path (websocket/).
 */
import type { Logger } from 'pino';
import { type ClientRequest, type ClientResponse, bodyOf, isHttp2 } from './client-side.js';
import type { ExchangeSweep } from './exchange-sweep.js';
import { upstreamRequestHeaders } from './headers.js';
import { type ExchangeContext, HttpExchange } from './exchange.js';
import { isGrpc } from './grpc.js';
import type { MetricsRecorder } from '../metrics/recorder.js';
import type { UpstreamPool, UpstreamRequest } from './upstream-pool.js';

export interface HttpForwarderDeps {
  /** The HTTP/1.1 leg. */
  readonly pool: UpstreamPool;
  /** The HTTP/2 leg. */
  readonly http2Pool: UpstreamPool;
  /** Every request goes upstream over HTTP/2, not only gRPC calls. */
  readonly allOverHttp2: boolean;
  readonly sweep: ExchangeSweep;
  readonly metrics: MetricsRecorder;
  readonly log: Logger;
  /** While true, every response tells the client to close its connection (graceful drain). */
  readonly isDraining: () => boolean;
  /** The path of the upstream URL, prepended to every forwarded path (`/base` + `/api/x`). */
  readonly basePath: string;
}

export interface HttpForwarder {
  /** Forwards `req` to the upstream as `url` (path and query); `startedAt` is its arrival, from performance.now(). */
  forward(req: ClientRequest, res: ClientResponse, url: string, startedAt: number): void;
}

export function createHttpForwarder(deps: HttpForwarderDeps): HttpForwarder {
  const { pool, http2Pool, basePath, allOverHttp2 } = deps;
  const ctx: ExchangeContext = { metrics: deps.metrics, log: deps.log, sweep: deps.sweep, isDraining: deps.isDraining };
  return {
    forward(req, res, url, startedAt) {
      req.url = url;
      // gRPC only over HTTP/2: an HTTP/1.1 request claiming the content type is plain HTTP to us.
      const grpc = isHttp2(res) && isGrpc(req.headers);
      const leg = grpc || allOverHttp2 ? http2Pool : pool;
      const request: UpstreamRequest = {
        method: req.method ?? 'GET',
        path: basePath === '' ? url : basePath + url,
        headers: upstreamRequestHeaders(req, leg === http2Pool),
        body: bodyOf(req),
        servername: leg.servername,
      };
      new HttpExchange(ctx, { req, res, request, startedAt, pool: leg, grpc }).start();
    },
  };
}

/** `http://h/base/` → `/base`: the upstream URL's path, put in front of every forwarded path (`/base` + `/api/x`). */
export function upstreamBasePath(upstream: URL): string {
  return upstream.pathname.replace(/\/+$/, '');
}
