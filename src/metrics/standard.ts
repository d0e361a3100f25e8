/**
 * The standard family, named after the OpenTelemetry HTTP server and RPC
 * conventions as the OTel Prometheus exporter writes them, plus the proxy's
 * own upstream and WebSocket metrics. Every label is bounded: methods
 * (`_OTHER`), status codes (100–599, or gRPC's 17 names), protocol versions
 * (three), routes and gRPC methods (a budget each), error types (a fixed list,
 * a 5xx status or a gRPC status name) and close codes (registered codes or
 * `other`).
 *
 * One file per group: standard-http.ts (OTel's http_server_*), standard-rpc.ts
 * (OTel's rpc_server_*, for gRPC), standard-upstream.ts and
 * standard-websocket.ts (metrics_proxy_*); this one puts them together, with
 * the route budget's overflow counter.
 */
import type { Registry } from 'prom-client';
import { CounterFamily } from './families.js';
import type { NativeHistogramSettings } from './native-histogram.js';

import { type HttpServerMetrics, createHttpServerMetrics } from './standard-http.js';
import { type RpcServerMetrics, createRpcServerMetrics } from './standard-rpc.js';
import { type UpstreamMetrics, createUpstreamMetrics } from './standard-upstream.js';
import { type WebSocketMetrics, createWebSocketMetrics } from './standard-websocket.js';

export type { StandardRequest } from './standard-http.js';
export { RETRIED_METHODS, UPSTREAM_ERROR_TYPES } from './standard-upstream.js';
export type { Direction } from './standard-websocket.js';

export const DEFAULT_DURATION_BUCKETS_SECONDS = Object.freeze([0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]);

export interface StandardMetrics extends HttpServerMetrics, RpcServerMetrics, UpstreamMetrics, WebSocketMetrics {
  routeOverflowed(): void;
}

export function createStandardMetrics(
  registry: Registry,
  durationBuckets: readonly number[],
  native: NativeHistogramSettings | undefined,
): StandardMetrics {
  // Registered in the order they are listed in the exposition.
  const http = createHttpServerMetrics(registry, durationBuckets, native);
  const rpc = createRpcServerMetrics(registry, durationBuckets, native);
  const upstream = createUpstreamMetrics(registry, durationBuckets, native);
  const overflow = new CounterFamily({
    name: 'metrics_proxy_routes_overflow_total',
    help: 'Requests recorded as http_route="other" because the route budget (--max-routes) was full.',
    registry,
  }).series();
  const websocket = createWebSocketMetrics(registry, native);
  return {
    ...http,
    ...rpc,
    ...upstream,
    ...websocket,
    routeOverflowed() {
      overflow.value += 1;
    },
  };
}
