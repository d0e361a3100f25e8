/**
 * The metrics path: the registry in the format the scraper prefers, gzipped
 * when it accepts that (as the Go client does), each scrape counted by status
 * as Go's promhttp does; and, next to it, the routes learned so far.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { promisify } from 'node:util';
import { constants, gzip } from 'node:zlib';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { MetricsUnavailableError } from '../errors.js';
import { type Renderer, acceptsGzip, createRenderer, negotiateFormat } from './exposition.js';
import type { MetricsRecorder } from '../metrics/recorder.js';
import { allowGetOrHead, errorBody, sendJson } from '../respond.js';

export type Endpoint = (req: IncomingMessage, res: ServerResponse) => void;

const gzipAsync = promisify(gzip);
/** Below this, compressing costs more than it saves. */
const GZIP_MIN_BYTES = 1024;
/**
 * zlib's fastest level. At the full route budget it compresses the 20 MiB text in 15 ms instead of
 * the default level's 50 (protobuf: 7 ms instead of 17) for a body 15–25 % larger (740 KiB instead
 * of 640): the proxy's CPU is worth more than a few hundred KiB every scrape interval.
 */
const GZIP_OPTIONS = { level: constants.Z_BEST_SPEED };

export function createMetricsEndpoint(
  registry: Registry,
  metrics: MetricsRecorder,
  log: Logger,
  render: Renderer = createRenderer(registry),
): Endpoint {

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!allowGetOrHead(req, res)) {
      metrics.recordScrape(405);
      return;
    }
    let body: Buffer;
    const headers: Record<string, string> = { 'cache-control': 'no-store', vary: 'Accept, Accept-Encoding' };
    try {
      const rendered = await render(negotiateFormat(req.headers.accept));
      headers['content-type'] = rendered.contentType;
      body = typeof rendered.body === 'string' ? Buffer.from(rendered.body) : rendered.body;
      if (body.length >= GZIP_MIN_BYTES && acceptsGzip(req.headers['accept-encoding'])) {
        body = await gzipAsync(body, GZIP_OPTIONS);
        headers['content-encoding'] = 'gzip';
      }
    } catch (err) {
      // 503 when the metrics are only late (a --workers scrape that timed out), 500 for anything else.
      const status = err instanceof MetricsUnavailableError ? 503 : 500;
      const msg = status === 503 ? 'metrics unavailable' : 'collecting metrics failed';
      log.error({ err }, msg);
      sendJson(res, status, errorBody(msg));
      metrics.recordScrape(status);
      return;
    }
    if (res.destroyed) return;
    headers['content-length'] = String(body.length);
    res.writeHead(200, headers);
    res.end(req.method === 'HEAD' ? undefined : body);
    metrics.recordScrape(200);
  }

  return function serveMetrics(req, res) {
    serve(req, res).catch((err: unknown) => {
      log.error({ err }, 'serving metrics failed');
      res.destroy();
    });
  };
}

/** The routes learned so far, with their source and the budget: for finding out where `other` comes from. */
export function createRoutesEndpoint(metrics: MetricsRecorder): Endpoint {
  return (req, res) => {
    if (allowGetOrHead(req, res)) sendJson(res, 200, metrics.routes.snapshot());
  };
}
