/**
 * The proxy's own upstream families of the standard family: failures by kind,
 * requests waiting for a connection, and retries. Their label values are fixed
 * lists, and every series exists at 0 from start-up.
 */
import type { Registry } from 'prom-client';
import type { NativeHistogramSettings } from './native-histogram.js';
import { CounterFamily, GaugeFamily } from './families.js';
import type { UpstreamFailureKind } from '../errors.js';

export const UPSTREAM_ERROR_TYPES: readonly UpstreamFailureKind[] = [
  'connect_refused',
  'connect_timeout',
  'response_timeout',
  'idle_timeout',
  'reset',
  'dns',
  'tls',
  'protocol',
  'unknown',
];
/** RFC 9110 §9.2.2: the methods the proxy may send twice (GET, HEAD, OPTIONS, TRACE always; PUT, DELETE without a body). */
export const RETRIED_METHODS: readonly string[] = ['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'];

export interface UpstreamMetrics {
  upstreamFailed(kind: UpstreamFailureKind): void;
  /** +1 when a request starts waiting for an upstream connection, -1 when it has one (or gave up). */
  upstreamWaiting(delta: number): void;
  upstreamRetried(method: string | undefined): void;
}

export function createUpstreamMetrics(
  registry: Registry,
  _durationBuckets: readonly number[],
  _native: NativeHistogramSettings | undefined,
): UpstreamMetrics {
  const errors = new CounterFamily({
    name: 'metrics_proxy_upstream_errors_total',
    help:
      'Requests that failed because the upstream could not be reached or read, by failure type: answered by the proxy ' +
      'itself (502 or 504) when the failure came before the response head, cut short (client connection closed) when it came after.',
    labelNames: ['error_type'],
    registry,
  });
  const pending = new GaugeFamily({
    name: 'metrics_proxy_upstream_pending_requests',
    help: 'Requests waiting for an upstream connection: every one of --upstream-max-connections is busy, or a new one is being opened.',
    registry,
  }).series();
  const retries = new CounterFamily({
    name: 'metrics_proxy_upstream_retries_total',
    help: 'Idempotent requests without a body sent again on a fresh connection after a reused one failed before any response byte.',
    labelNames: ['http_request_method'],
    registry,
  });
  for (const kind of UPSTREAM_ERROR_TYPES) errors.series(kind);
  for (const method of RETRIED_METHODS) retries.series(method);

  return {
    upstreamFailed(kind) {
      errors.series(kind).value += 1;
    },
    upstreamWaiting(delta) {
      pending.value += delta;
    },
    upstreamRetried(method) {
      // Only these methods are ever retried; the guard keeps the label bounded whatever the caller passes.
      if (method !== undefined && RETRIED_METHODS.includes(method)) retries.series(method).value += 1;
    },
  };
}
