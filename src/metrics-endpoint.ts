/** Serves the registry in the Prometheus text format and counts each scrape by status, as Go's promhttp does. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { MetricsRecorder } from './metrics.js';
import { errorBody, sendJson } from './respond.js';

export type MetricsEndpoint = (req: IncomingMessage, res: ServerResponse) => void;

export function createMetricsEndpoint(registry: Registry, metrics: MetricsRecorder, log: Logger): MetricsEndpoint {
  async function render(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendJson(res, 405, errorBody('method not allowed'), { allow: 'GET, HEAD' });
      metrics.recordScrape(405);
      return;
    }
    let text: string;
    try {
      text = await registry.metrics();
    } catch (err) {
      log.error({ err }, 'collecting metrics failed');
      sendJson(res, 500, errorBody('collecting metrics failed'));
      metrics.recordScrape(500);
      return;
    }
    if (res.destroyed) return;
    res.writeHead(200, {
      'content-type': registry.contentType,
      'content-length': String(Buffer.byteLength(text)),
      'cache-control': 'no-store',
    });
    res.end(req.method === 'HEAD' ? undefined : text);
    metrics.recordScrape(200);
  }

  return function serveMetrics(req, res) {
    render(req, res).catch((err: unknown) => {
      log.error({ err }, 'serving metrics failed');
      res.destroy();
    });
  };
}
