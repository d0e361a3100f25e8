/**
 * The seed family: exactly the names the Go + Gin recipe uses (`apiCount`,
 * `apiDuration` in milliseconds, `apiErrorCount`) plus Go's promhttp scrape
 * counter. A contract with existing dashboards: change nothing here lightly.
 */
import type { Registry } from 'prom-client';
import type { NativeHistogramSettings } from './native-histogram.js';
import { CounterFamily, type CounterSeries, HistogramFamily, type HistogramSeries } from './families.js';
import { methodLabel } from './methods.js';

export type SeedErrorType = 'api' | 'ws';

export interface SeedMetrics {
  recordRequest(method: string | undefined, durationMs: number): void;
  recordError(type: SeedErrorType): void;
}

export function createSeedMetrics(
  registry: Registry,
  bucketsMs: readonly number[],
  native: NativeHistogramSettings | undefined,
): SeedMetrics {
  const apiCount = new CounterFamily({
    name: 'apiCount',
    help: 'Forwarded API requests (HTTP and WebSocket handshakes), by method, whatever their outcome.',
    labelNames: ['method'],
    registry,
  });
  const apiDuration = new HistogramFamily({
    name: 'apiDuration',
    help: "Milliseconds from a request's arrival to the end of its response or error (WebSocket: until the 101 is relayed).",
    labelNames: ['method'],
    buckets: bucketsMs,
    native,
    registry,
  });
  const apiErrorCount = new CounterFamily({
    name: 'apiErrorCount',
    help: 'Failed requests: type="api" for an upstream 5xx or an unreachable upstream, type="ws" for a failed WebSocket.',
    labelNames: ['type'],
    registry,
  });
  // Series that must exist before anything happens, so rate() and alerts see a 0, not an absence.
  const errors: Record<SeedErrorType, CounterSeries> = { api: apiErrorCount.series('api'), ws: apiErrorCount.series('ws') };

  // The series of each method, looked up on first use and kept: the hot path allocates nothing.
  const byMethod = new Map<string, { count: CounterSeries; duration: HistogramSeries }>();
  const slotOf = (method: string) => {
    let slot = byMethod.get(method);
    if (slot === undefined) {
      slot = { count: apiCount.series(method), duration: apiDuration.series(method) };
      byMethod.set(method, slot);
    }
    return slot;
  };

  return {
    recordRequest(method, durationMs) {
      const slot = slotOf(methodLabel(method));
      slot.count.value += 1;
      apiDuration.observe(slot.duration, durationMs);
    },
    recordError(type) {
      errors[type].value += 1;
    },
  };
}

/** Go's promhttp_metric_handler_requests_total: scrapes of the metrics path by HTTP status. */
export function createScrapeCounter(registry: Registry): (statusCode: number) => void {
  const scrapes = new CounterFamily({
    name: 'promhttp_metric_handler_requests_total',
    help: 'Total number of scrapes by HTTP status code.',
    labelNames: ['code'],
    registry,
  });
  for (const code of ['200', '500', '503']) scrapes.series(code);
  return (statusCode) => {
    scrapes.series(String(statusCode)).value += 1;
  };
}
