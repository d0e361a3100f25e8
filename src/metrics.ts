/**
 * Metric names, types, units and labels in one place. These names are a
 * contract with dashboards and alerts (they match the Go + Gin recipe), so
 * change them only deliberately. Everything registers on the registry passed
 * in: never on prom-client's global one.
 */
import { Counter, Histogram, type Registry, collectDefaultMetrics } from 'prom-client';

/** Methods that keep their own label value; anything else is `OTHER`, so clients cannot mint series. */
export const STANDARD_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'] as const;
export const OTHER_METHOD = 'OTHER';

export type ErrorType = 'api' | 'ws';

export interface MetricsRecorder {
  /** One forwarded request (HTTP or WebSocket handshake), whatever its outcome. Called exactly once per request. */
  recordRequest(method: string | undefined, durationMs: number): void;
  /** One failure: an upstream 5xx or an unreachable upstream (`api`), or a failed WebSocket (`ws`). */
  recordError(type: ErrorType): void;
  /** One answer from the metrics endpoint, by HTTP status, as Go's promhttp counts them. */
  recordScrape(statusCode: number): void;
}

export interface MetricsOptions {
  readonly bucketsMs: readonly number[];
}

export function methodLabel(method: string | undefined): string {
  return method !== undefined && (STANDARD_METHODS as readonly string[]).includes(method) ? method : OTHER_METHOD;
}

export function createMetrics(registry: Registry, options: MetricsOptions): MetricsRecorder {
  const registers = [registry];
  const apiCount = new Counter({
    name: 'apiCount',
    help: 'Forwarded API requests (HTTP and WebSocket handshakes), by method, whatever their outcome.',
    labelNames: ['method'] as const,
    registers,
  });
  const apiDuration = new Histogram({
    name: 'apiDuration',
    help: 'Milliseconds from a request\'s arrival to the end of its response or error (WebSocket: until the 101 is relayed).',
    labelNames: ['method'] as const,
    buckets: [...options.bucketsMs],
    registers,
  });
  const apiErrorCount = new Counter({
    name: 'apiErrorCount',
    help: 'Failed requests: type="api" for an upstream 5xx or an unreachable upstream, type="ws" for a failed WebSocket.',
    labelNames: ['type'] as const,
    registers,
  });
  const scrapes = new Counter({
    name: 'promhttp_metric_handler_requests_total',
    help: 'Total number of scrapes by HTTP status code.',
    labelNames: ['code'] as const,
    registers,
  });
  collectDefaultMetrics({ register: registry });

  // Series that must exist before anything happens, so rate() and alerts see a 0, not an absence.
  for (const type of ['api', 'ws'] as const) apiErrorCount.inc({ type }, 0);
  for (const code of ['200', '500', '503']) scrapes.inc({ code }, 0);

  // Label objects built once and reused: the hot path allocates none.
  const methodLabels = new Map<string, { method: string }>();
  for (const method of [...STANDARD_METHODS, OTHER_METHOD]) methodLabels.set(method, Object.freeze({ method }));
  const otherLabels = methodLabels.get(OTHER_METHOD) as { method: string };
  const errorLabels = { api: Object.freeze({ type: 'api' }), ws: Object.freeze({ type: 'ws' }) } as const;

  return {
    recordRequest(method, durationMs) {
      const labels = (method !== undefined && methodLabels.get(method)) || otherLabels;
      apiCount.inc(labels);
      apiDuration.observe(labels, Number.isFinite(durationMs) && durationMs >= 0 ? durationMs : 0);
    },
    recordError(type) {
      apiErrorCount.inc(errorLabels[type]);
    },
    recordScrape(statusCode) {
      scrapes.inc({ code: String(statusCode) });
    },
  };
}
