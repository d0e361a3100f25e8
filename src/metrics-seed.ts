/**
 * The seed family: exactly the names the Go + Gin recipe uses (`apiCount`,
 * `apiDuration` in milliseconds, `apiErrorCount`) plus Go's promhttp scrape
 * counter. A contract with existing dashboards: change nothing here lightly.
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import { OTHER_METHOD, STANDARD_METHODS } from './methods.js';

export type SeedErrorType = 'api' | 'ws';

export interface SeedMetrics {
  recordRequest(method: string | undefined, durationMs: number): void;
  recordError(type: SeedErrorType): void;
}

export function createSeedMetrics(registry: Registry, bucketsMs: readonly number[]): SeedMetrics {
  const registers = [registry];
  const apiCount = new Counter({
    name: 'apiCount',
    help: 'Forwarded API requests (HTTP and WebSocket handshakes), by method, whatever their outcome.',
    labelNames: ['method'] as const,
    registers,
  });
  const apiDuration = new Histogram({
    name: 'apiDuration',
    help: "Milliseconds from a request's arrival to the end of its response or error (WebSocket: until the 101 is relayed).",
    labelNames: ['method'] as const,
    buckets: [...bucketsMs],
    registers,
  });
  const apiErrorCount = new Counter({
    name: 'apiErrorCount',
    help: 'Failed requests: type="api" for an upstream 5xx or an unreachable upstream, type="ws" for a failed WebSocket.',
    labelNames: ['type'] as const,
    registers,
  });
  // Series that must exist before anything happens, so rate() and alerts see a 0, not an absence.
  for (const type of ['api', 'ws'] as const) apiErrorCount.inc({ type }, 0);

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
  };
}

/** Go's promhttp_metric_handler_requests_total: scrapes of the metrics path by HTTP status. */
export function createScrapeCounter(registry: Registry): (statusCode: number) => void {
  const scrapes = new Counter({
    name: 'promhttp_metric_handler_requests_total',
    help: 'Total number of scrapes by HTTP status code.',
    labelNames: ['code'] as const,
    registers: [registry],
  });
  for (const code of ['200', '500', '503']) scrapes.inc({ code }, 0);
  return (statusCode) => scrapes.inc({ code: String(statusCode) });
}
