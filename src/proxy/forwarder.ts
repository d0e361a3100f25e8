/**
 * The HTTP forwarder: plain HTTP requests go to the upstream through undici's
 * `dispatch` (upstream-pool.ts), one HttpExchange per request (exchange.ts).
 * WebSocket upgrades take another path (websocket/).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { ExchangeSweep } from './exchange-sweep.js';
import { upstreamRequestHeaders } from './headers.js';
import { type ExchangeContext, HttpExchange } from './exchange.js';
import type { MetricsRecorder } from '../metrics/recorder.js';
import type { UpstreamPool, UpstreamRequest } from './upstream-pool.js';

export interface HttpForwarderDeps {
  readonly pool: UpstreamPool;
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
  forward(req: IncomingMessage, res: ServerResponse, url: string, startedAt: number): void;
}

/** Only a body framed by Content-Length (above 0) or Transfer-Encoding is streamed upstream. */
function hasBody(req: IncomingMessage): boolean {
  const { headers } = req;
  if (headers['transfer-encoding'] !== undefined) return true;
  const length = headers['content-length'];
  return length !== undefined && length !== '0' && Number(length) > 0;
}

export function createHttpForwarder(deps: HttpForwarderDeps): HttpForwarder {
  const { pool, basePath } = deps;
  const ctx: ExchangeContext = { metrics: deps.metrics, log: deps.log, pool, sweep: deps.sweep, isDraining: deps.isDraining };
  const { servername } = pool;
  return {
    forward(req, res, url, startedAt) {
      req.url = url;
      const request: UpstreamRequest = {
        method: req.method ?? 'GET',
        path: basePath === '' ? url : basePath + url,
        headers: upstreamRequestHeaders(req),
        body: hasBody(req) ? req : null,
        servername,
      };
      new HttpExchange(ctx, req, res, request, startedAt).start();
    },
  };
}

/** `http://h/base/` → `/base`: what http-proxy joined in front of every path. */
export function upstreamBasePath(upstream: URL): string {
  return upstream.pathname.replace(/\/+$/, '');
}
