/**
 * The upstream families of the standard family: the proxy's own (failures by
 * kind, requests waiting for a connection, retries, the connect time of each
 * new connection), and OTel's HTTP client families (standard-http-client.ts),
 * registered after them. The label values of the proxy's own are fixed lists;
 * the counters and the gauge exist at 0 from start-up.
 */
import type { Registry } from 'prom-client';
import type { NativeHistogramSettings } from './native-histogram.js';
import { CounterFamily, GaugeFamily, HistogramFamily, type HistogramSeries } from './families.js';
import { type HttpClientMetrics, type UpstreamProtocol, createHttpClientMetrics } from './standard-http-client.js';
import type { UpstreamFailureKind } from '../errors.js';

export type { UpstreamProtocol, UpstreamRequestErrorType } from './standard-http-client.js';

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

export interface UpstreamMetrics extends HttpClientMetrics {
  upstreamFailed(kind: UpstreamFailureKind): void;
  /** +1 when a request starts waiting for an upstream connection, -1 when it has one (or gave up). */
  upstreamWaiting(delta: number): void;
  upstreamRetried(method: string | undefined): void;
  /** A new upstream connection's TCP connect (and TLS handshake) ended after `seconds`; `errorType` '' when it succeeded, else a failure kind. */
  upstreamConnectEnded(protocol: UpstreamProtocol, errorType: UpstreamFailureKind | '', seconds: number): void;
}

/** metrics_proxy_upstream_connect_duration_seconds, its series found once per (protocol, outcome). */
function createConnectMetric(registry: Registry, durationBuckets: readonly number[], native: NativeHistogramSettings | undefined) {
  const family = new HistogramFamily({
    name: 'metrics_proxy_upstream_connect_duration_seconds',
    help:
      'Time to open each new upstream connection: DNS, TCP connect and TLS handshake (HTTP/2: with ALPN), ' +
      'until it succeeded (error_type="") or failed (error_type: the failure kind).',
    labelNames: ['network_protocol_version', 'error_type'],
    buckets: durationBuckets,
    native,
    registry,
  });
  const byProtocol = { '1.1': new Map<string, HistogramSeries>(), '2': new Map<string, HistogramSeries>() };
  return (protocol: UpstreamProtocol, errorType: UpstreamFailureKind | '', seconds: number): void => {
    const known = byProtocol[protocol];
    let series = known.get(errorType);
    if (series === undefined) {
      series = family.series(protocol, errorType);
      known.set(errorType, series);
    }
    family.observe(series, seconds);
  };
}

export function createUpstreamMetrics(
  registry: Registry,
  durationBuckets: readonly number[],
  native: NativeHistogramSettings | undefined,
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
  const upstreamConnectEnded = createConnectMetric(registry, durationBuckets, native);
  for (const kind of UPSTREAM_ERROR_TYPES) errors.series(kind);
  for (const method of RETRIED_METHODS) retries.series(method);
  const client = createHttpClientMetrics(registry, durationBuckets, native);

  return {
    ...client,
    upstreamConnectEnded,
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
