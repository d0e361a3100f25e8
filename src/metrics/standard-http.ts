/**
 * The OpenTelemetry HTTP server families of the standard family: request
 * duration, requests in flight, request and response body sizes. The series of
 * each (method, protocol version, route), and of each status under it, are
 * found once and kept, so a request allocates nothing once its route has been
 * seen. gRPC calls are not recorded here (standard-rpc.ts records them); they
 * only leave the in-flight gauge (`requestEnded`).
 */
import type { Registry } from 'prom-client';
import type { NativeHistogramSettings } from './native-histogram.js';
import { type CounterSeries, GaugeFamily, HistogramFamily, type HistogramSeries } from './families.js';
import { STANDARD_METHODS } from './methods.js';

const BODY_SIZE_BUCKETS = [0, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864, 268435456, 1073741824];
/** OTel's spelling for a method outside the known set. */
const OTEL_OTHER_METHOD = '_OTHER';
/** `network.protocol.version` values; any other version is recorded as '' (OTel: not set when not known). */
export const PROTOCOL_VERSIONS: readonly string[] = ['1.0', '1.1', '2'];
const UNKNOWN_PROTOCOL = '';

export interface StandardRequest {
  readonly method: string | undefined;
  readonly route: string;
  /** The client's HTTP version: '1.0', '1.1' or '2'. */
  readonly protocolVersion: string;
  readonly status: number;
  /** '' for success, the upstream's 5xx status, or the failure kind when the proxy answered. */
  readonly errorType: string;
  readonly durationSeconds: number;
  readonly requestBytes: number;
  readonly responseBytes: number;
  /** W3C trace context of the request, for an exemplar. */
  readonly trace: { readonly trace_id: string; readonly span_id: string } | undefined;
}

export interface HttpServerMetrics {
  requestStarted(method: string | undefined): void;
  requestFinished(request: StandardRequest): void;
  /** A request that is recorded elsewhere (a gRPC call) ended: it only leaves the in-flight gauge. */
  requestEnded(method: string | undefined): void;
}

/** The series one (method, protocol version, route) writes to, found once and kept. */
interface RouteSlot {
  /** The network_protocol_version label of these series. */
  readonly protocol: string;
  readonly requestSize: HistogramSeries;
  readonly responseSize: HistogramSeries;
  /** Duration series by status (success) or `status error_type`. */
  readonly durations: Map<number | string, HistogramSeries>;
}

/** The routes seen with one method and one protocol version. */
interface ProtocolSlot {
  /** The network_protocol_version label. */
  readonly protocol: string;
  readonly routes: Map<string, RouteSlot>;
}

interface MethodSlot {
  readonly method: string;
  readonly active: CounterSeries;
  readonly protocols: ReadonlyMap<string, ProtocolSlot>;
  /** Where a version outside PROTOCOL_VERSIONS goes, labelled ''. */
  readonly unknownProtocol: ProtocolSlot;
}

function createFamilies(registry: Registry, durationBuckets: readonly number[], native: NativeHistogramSettings | undefined) {
  const bodySize = (name: string, help: string): HistogramFamily =>
    new HistogramFamily({
      name,
      help,
      labelNames: ['http_request_method', 'http_route', 'network_protocol_version'],
      buckets: BODY_SIZE_BUCKETS,
      native,
      registry,
    });
  return {
    duration: new HistogramFamily({
      name: 'http_server_request_duration_seconds',
      help: 'Duration of HTTP server requests (WebSocket: the handshake), from arrival to the end of the response or error.',
      labelNames: ['http_request_method', 'http_response_status_code', 'http_route', 'error_type', 'network_protocol_version'],
      buckets: durationBuckets,
      native,
      registry,
    }),
    active: new GaugeFamily({
      name: 'http_server_active_requests',
      help: 'Number of HTTP requests being forwarded right now.',
      labelNames: ['http_request_method'],
      registry,
    }),
    requestSize: bodySize(
      'http_server_request_body_size_bytes',
      'Size of HTTP request bodies: the bytes forwarded to the upstream (none when the proxy answered without sending the body).',
    ),
    responseSize: bodySize('http_server_response_body_size_bytes', 'Size of HTTP response bodies relayed to clients.'),
  };
}

export function createHttpServerMetrics(
  registry: Registry,
  durationBuckets: readonly number[],
  native: NativeHistogramSettings | undefined,
): HttpServerMetrics {
  const { duration, active, requestSize, responseSize } = createFamilies(registry, durationBuckets, native);
  // Every method's in-flight gauge exists from the start; everything else is created on first use and kept.
  const methods = new Map<string, MethodSlot>();
  for (const method of [...STANDARD_METHODS, OTEL_OTHER_METHOD]) {
    const protocols = new Map(PROTOCOL_VERSIONS.map((protocol) => [protocol, { protocol, routes: new Map<string, RouteSlot>() }]));
    const unknownProtocol = { protocol: UNKNOWN_PROTOCOL, routes: new Map<string, RouteSlot>() };
    methods.set(method, { method, active: active.series(method), protocols, unknownProtocol });
  }
  const otherSlot = methods.get(OTEL_OTHER_METHOD) as MethodSlot;
  // A method outside the known set (`_OTHER` itself included) writes to `_OTHER`'s series.
  const slotOf = (method: string | undefined): MethodSlot => (method === undefined ? undefined : methods.get(method)) ?? otherSlot;

  function routeSlot(slot: MethodSlot, version: string, route: string): RouteSlot {
    const { protocol, routes } = slot.protocols.get(version) ?? slot.unknownProtocol;
    let found = routes.get(route);
    if (found === undefined) {
      found = {
        protocol,
        requestSize: requestSize.series(slot.method, route, protocol),
        responseSize: responseSize.series(slot.method, route, protocol),
        durations: new Map(),
      };
      routes.set(route, found);
    }
    return found;
  }

  return {
    requestStarted(method) {
      slotOf(method).active.value += 1;
    },
    requestEnded(method) {
      slotOf(method).active.value -= 1;
    },
    requestFinished(r) {
      const slot = slotOf(r.method);
      slot.active.value -= 1;
      const byRoute = routeSlot(slot, r.protocolVersion, r.route);
      const key = r.errorType === '' ? r.status : `${r.status} ${r.errorType}`;
      let series = byRoute.durations.get(key);
      if (series === undefined) {
        series = duration.series(slot.method, String(r.status), r.route, r.errorType, byRoute.protocol);
        byRoute.durations.set(key, series);
      }
      duration.observe(series, r.durationSeconds, r.trace);
      requestSize.observe(byRoute.requestSize, r.requestBytes);
      responseSize.observe(byRoute.responseSize, r.responseBytes);
    },
  };
}
