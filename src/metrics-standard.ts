/**
 * The standard family, named after the OpenTelemetry HTTP server conventions
 * as the OTel Prometheus exporter writes them, plus the proxy's own upstream
 * and WebSocket metrics. Every label is bounded: methods (`_OTHER`), status
 * codes (100–599), routes (the route table's budget), error types (a fixed
 * list or a 5xx status) and close codes (registered codes or `other`).
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { STANDARD_METHODS } from './methods.js';
import type { UpstreamFailureKind } from './upstream-errors.js';

export const DEFAULT_DURATION_BUCKETS_SECONDS = Object.freeze([0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]);
const BODY_SIZE_BUCKETS = [0, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864, 268435456, 1073741824];
const SESSION_BUCKETS_SECONDS = [1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400];
export const UPSTREAM_ERROR_TYPES: readonly UpstreamFailureKind[] = [
  'connect_refused',
  'connect_timeout',
  'response_timeout',
  'reset',
  'dns',
  'tls',
  'protocol',
  'unknown',
];
/** OTel's spelling for a method outside the known set. */
const OTEL_OTHER_METHOD = '_OTHER';
const KNOWN_METHODS = new Set<string>(STANDARD_METHODS);

export type Direction = 'upstream' | 'downstream';

export interface StandardRequest {
  readonly method: string | undefined;
  readonly route: string;
  readonly status: number;
  /** '' for success, the upstream's 5xx status, or the failure kind when the proxy answered. */
  readonly errorType: string;
  readonly durationSeconds: number;
  readonly requestBytes: number;
  readonly responseBytes: number;
  /** W3C trace context of the request, for an exemplar. */
  readonly trace: { readonly trace_id: string; readonly span_id: string } | undefined;
}

export interface StandardMetrics {
  requestStarted(method: string | undefined): void;
  requestFinished(request: StandardRequest): void;
  upstreamFailed(kind: UpstreamFailureKind): void;
  routeOverflowed(): void;
  sessionOpened(route: string): void;
  sessionClosed(route: string, closeCode: string, durationSeconds: number): void;
  sessionMessage(route: string, direction: Direction, payloadBytes: number): void;
}

function otelMethod(method: string | undefined): string {
  return method !== undefined && KNOWN_METHODS.has(method) ? method : OTEL_OTHER_METHOD;
}

export function createStandardMetrics(registry: Registry, durationBuckets: readonly number[]): StandardMetrics {
  const registers = [registry];
  const duration = new Histogram({
    name: 'http_server_request_duration_seconds',
    help: 'Duration of HTTP server requests (WebSocket: the handshake), from arrival to the end of the response or error.',
    labelNames: ['http_request_method', 'http_response_status_code', 'http_route', 'error_type'] as const,
    buckets: [...durationBuckets],
    enableExemplars: true,
    registers,
  });
  const active = new Gauge({
    name: 'http_server_active_requests',
    help: 'Number of HTTP requests being forwarded right now.',
    labelNames: ['http_request_method'] as const,
    registers,
  });
  const requestSize = new Histogram({
    name: 'http_server_request_body_size_bytes',
    help: 'Size of HTTP request bodies forwarded to the upstream.',
    labelNames: ['http_request_method', 'http_route'] as const,
    buckets: BODY_SIZE_BUCKETS,
    registers,
  });
  const responseSize = new Histogram({
    name: 'http_server_response_body_size_bytes',
    help: 'Size of HTTP response bodies relayed to clients.',
    labelNames: ['http_request_method', 'http_route'] as const,
    buckets: BODY_SIZE_BUCKETS,
    registers,
  });
  const upstreamErrors = new Counter({
    name: 'metrics_proxy_upstream_errors_total',
    help: 'Requests the proxy answered itself because the upstream could not be reached or read, by failure type.',
    labelNames: ['error_type'] as const,
    registers,
  });
  const overflow = new Counter({
    name: 'metrics_proxy_routes_overflow_total',
    help: 'Requests recorded as http_route="other" because the route budget (--max-routes) was full.',
    registers,
  });
  const sessions = new Gauge({
    name: 'metrics_proxy_websocket_sessions_active',
    help: 'Open WebSocket sessions.',
    labelNames: ['http_route'] as const,
    registers,
  });
  const sessionDuration = new Histogram({
    name: 'metrics_proxy_websocket_session_duration_seconds',
    help: 'Lifetime of WebSocket sessions, from the 101 to the close, by close code (1006: no close frame).',
    labelNames: ['http_route', 'close_code'] as const,
    buckets: SESSION_BUCKETS_SECONDS,
    registers,
  });
  const messages = new Counter({
    name: 'metrics_proxy_websocket_messages_total',
    help: 'WebSocket data messages relayed, by direction (upstream: client to service).',
    labelNames: ['http_route', 'direction'] as const,
    registers,
  });
  const messageBytes = new Counter({
    name: 'metrics_proxy_websocket_bytes_total',
    help: 'WebSocket message payload bytes relayed, by direction (upstream: client to service).',
    labelNames: ['http_route', 'direction'] as const,
    registers,
  });
  for (const kind of UPSTREAM_ERROR_TYPES) upstreamErrors.inc({ error_type: kind }, 0);
  overflow.inc(0);

  const methodLabels = new Map<string, { http_request_method: string }>();
  for (const method of [...STANDARD_METHODS, OTEL_OTHER_METHOD]) {
    methodLabels.set(method, Object.freeze({ http_request_method: method }));
    active.inc(methodLabels.get(method) as { http_request_method: string }, 0);
  }
  const labelsFor = (method: string | undefined) => methodLabels.get(otelMethod(method)) as { http_request_method: string };
  const noExemplar = Object.freeze({});

  return {
    requestStarted(method) {
      active.inc(labelsFor(method));
    },
    requestFinished(r) {
      const method = otelMethod(r.method);
      active.dec(labelsFor(r.method));
      duration.observe({
        labels: {
          http_request_method: method,
          http_response_status_code: String(r.status),
          http_route: r.route,
          error_type: r.errorType,
        },
        value: r.durationSeconds,
        exemplarLabels: r.trace ?? noExemplar,
      });
      const sizeLabels = { http_request_method: method, http_route: r.route };
      requestSize.observe(sizeLabels, r.requestBytes);
      responseSize.observe(sizeLabels, r.responseBytes);
    },
    upstreamFailed(kind) {
      upstreamErrors.inc({ error_type: kind });
    },
    routeOverflowed() {
      overflow.inc();
    },
    sessionOpened(route) {
      sessions.inc({ http_route: route });
    },
    sessionClosed(route, closeCode, durationSeconds) {
      sessions.dec({ http_route: route });
      sessionDuration.observe({ http_route: route, close_code: closeCode }, durationSeconds);
    },
    sessionMessage(route, direction, payloadBytes) {
      messages.inc({ http_route: route, direction });
      messageBytes.inc({ http_route: route, direction }, payloadBytes);
    },
  };
}
