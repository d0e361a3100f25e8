/**
 * The standard family, named after the OpenTelemetry HTTP server conventions
 * as the OTel Prometheus exporter writes them, plus the proxy's own upstream
 * and WebSocket metrics. Every label is bounded: methods (`_OTHER`), status
 * codes (100–599), routes (the route table's budget), error types (a fixed
 * list or a 5xx status) and close codes (registered codes or `other`).
 */
import type { Registry } from 'prom-client';
import { CounterFamily, type CounterSeries, GaugeFamily, HistogramFamily, type HistogramSeries } from './families.js';
import { STANDARD_METHODS } from './methods.js';
import type { UpstreamFailureKind } from '../proxy/upstream-errors.js';

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
/** RFC 9110 §9.2.2: the methods the proxy may send twice (GET, HEAD, OPTIONS, TRACE always; PUT, DELETE without a body). */
export const RETRIED_METHODS: readonly string[] = ['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'];
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
  /** +1 when a request starts waiting for an upstream connection, -1 when it has one (or gave up). */
  upstreamWaiting(delta: number): void;
  upstreamRetried(method: string | undefined): void;
  routeOverflowed(): void;
  sessionOpened(route: string): void;
  sessionClosed(route: string, closeCode: string, durationSeconds: number): void;
  sessionMessage(route: string, direction: Direction, payloadBytes: number): void;
}

function otelMethod(method: string | undefined): string {
  return method !== undefined && KNOWN_METHODS.has(method) ? method : OTEL_OTHER_METHOD;
}

/** The series one (method, route) pair writes to, found once and kept. */
interface RouteSlot {
  readonly requestSize: HistogramSeries;
  readonly responseSize: HistogramSeries;
  /** Duration series by status (success) or `status error_type`. */
  readonly durations: Map<number | string, HistogramSeries>;
}

interface MethodSlot {
  readonly active: CounterSeries;
  readonly routes: Map<string, RouteSlot>;
}

export function createStandardMetrics(registry: Registry, durationBuckets: readonly number[]): StandardMetrics {
  const duration = new HistogramFamily({
    name: 'http_server_request_duration_seconds',
    help: 'Duration of HTTP server requests (WebSocket: the handshake), from arrival to the end of the response or error.',
    labelNames: ['http_request_method', 'http_response_status_code', 'http_route', 'error_type'],
    buckets: durationBuckets,
    registry,
  });
  const active = new GaugeFamily({
    name: 'http_server_active_requests',
    help: 'Number of HTTP requests being forwarded right now.',
    labelNames: ['http_request_method'],
    registry,
  });
  const requestSize = new HistogramFamily({
    name: 'http_server_request_body_size_bytes',
    help: 'Size of HTTP request bodies: the bytes forwarded to the upstream (none when the proxy answered without sending the body).',
    labelNames: ['http_request_method', 'http_route'],
    buckets: BODY_SIZE_BUCKETS,
    registry,
  });
  const responseSize = new HistogramFamily({
    name: 'http_server_response_body_size_bytes',
    help: 'Size of HTTP response bodies relayed to clients.',
    labelNames: ['http_request_method', 'http_route'],
    buckets: BODY_SIZE_BUCKETS,
    registry,
  });
  const upstreamErrors = new CounterFamily({
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
  const overflow = new CounterFamily({
    name: 'metrics_proxy_routes_overflow_total',
    help: 'Requests recorded as http_route="other" because the route budget (--max-routes) was full.',
    registry,
  }).series();
  const sessions = new GaugeFamily({
    name: 'metrics_proxy_websocket_sessions_active',
    help: 'Open WebSocket sessions.',
    labelNames: ['http_route'],
    registry,
  });
  const sessionDuration = new HistogramFamily({
    name: 'metrics_proxy_websocket_session_duration_seconds',
    help: 'Lifetime of WebSocket sessions, from the 101 to the close, by close code (1006: no close frame).',
    labelNames: ['http_route', 'close_code'],
    buckets: SESSION_BUCKETS_SECONDS,
    registry,
  });
  const messages = new CounterFamily({
    name: 'metrics_proxy_websocket_messages_total',
    help: 'WebSocket data messages relayed, by direction (upstream: client to service).',
    labelNames: ['http_route', 'direction'],
    registry,
  });
  const messageBytes = new CounterFamily({
    name: 'metrics_proxy_websocket_bytes_total',
    help: 'WebSocket message payload bytes relayed, by direction (upstream: client to service).',
    labelNames: ['http_route', 'direction'],
    registry,
  });
  for (const kind of UPSTREAM_ERROR_TYPES) upstreamErrors.series(kind);
  for (const method of RETRIED_METHODS) retries.series(method);

  // Every method's in-flight gauge exists from the start; everything else is created on first use and kept.
  const methods = new Map<string, MethodSlot>();
  for (const method of [...STANDARD_METHODS, OTEL_OTHER_METHOD]) {
    methods.set(method, { active: active.series(method), routes: new Map() });
  }
  const otherSlot = methods.get(OTEL_OTHER_METHOD) as MethodSlot;
  const slotOf = (method: string | undefined): MethodSlot => (method === undefined ? undefined : methods.get(method)) ?? otherSlot;

  // Messages are the WebSocket hot path: their series are found once per route.
  type MessageCounters = { readonly messages: CounterSeries; readonly bytes: CounterSeries };
  const messageSlots = new Map<string, Record<Direction, MessageCounters>>();

  function routeSlot(method: string, slot: MethodSlot, route: string): RouteSlot {
    let found = slot.routes.get(route);
    if (found === undefined) {
      found = {
        requestSize: requestSize.series(method, route),
        responseSize: responseSize.series(method, route),
        durations: new Map(),
      };
      slot.routes.set(route, found);
    }
    return found;
  }

  return {
    requestStarted(method) {
      slotOf(method).active.value += 1;
    },
    requestFinished(r) {
      const method = otelMethod(r.method);
      const slot = slotOf(method);
      slot.active.value -= 1;
      const byRoute = routeSlot(method, slot, r.route);
      const key = r.errorType === '' ? r.status : `${r.status} ${r.errorType}`;
      let series = byRoute.durations.get(key);
      if (series === undefined) {
        series = duration.series(method, String(r.status), r.route, r.errorType);
        byRoute.durations.set(key, series);
      }
      duration.observe(series, r.durationSeconds, r.trace);
      requestSize.observe(byRoute.requestSize, r.requestBytes);
      responseSize.observe(byRoute.responseSize, r.responseBytes);
    },
    upstreamFailed(kind) {
      upstreamErrors.series(kind).value += 1;
    },
    upstreamWaiting(delta) {
      pending.value += delta;
    },
    upstreamRetried(method) {
      // Only these methods are ever retried; the guard keeps the label bounded whatever the caller passes.
      if (method !== undefined && RETRIED_METHODS.includes(method)) retries.series(method).value += 1;
    },
    routeOverflowed() {
      overflow.value += 1;
    },
    sessionOpened(route) {
      sessions.series(route).value += 1;
    },
    sessionClosed(route, closeCode, durationSeconds) {
      sessions.series(route).value -= 1;
      sessionDuration.observe(sessionDuration.series(route, closeCode), durationSeconds);
    },
    sessionMessage(route, direction, payloadBytes) {
      let slot = messageSlots.get(route);
      if (slot === undefined) {
        slot = {
          upstream: { messages: messages.series(route, 'upstream'), bytes: messageBytes.series(route, 'upstream') },
          downstream: { messages: messages.series(route, 'downstream'), bytes: messageBytes.series(route, 'downstream') },
        };
        messageSlots.set(route, slot);
      }
      const counters = slot[direction];
      counters.messages.value += 1;
      counters.bytes.value += payloadBytes;
    },
  };
}
