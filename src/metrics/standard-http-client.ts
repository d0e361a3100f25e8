/**
 * The OpenTelemetry HTTP client families of the standard family: the upstream leg seen as an HTTP
 * client, named as the OTel Prometheus exporter writes them.
 * - `http_client_request_duration_seconds` (`http.client.request.duration`, stable): each request sent
 *   upstream, from its dispatch to the end of its response or its failure, so waiting for a connection
 *   and opening one are in it, as they are in an OTel client span.
 * - `http_client_request_time_in_queue_seconds` (`http.client.request.time_in_queue`, the name OTel's
 *   .NET conventions give it): from the dispatch until the request has a connection (HTTP/1.1) or a
 *   stream slot (HTTP/2), or failed waiting for one.
 * - `http_client_open_connections` (`http.client.open_connections`, development): upstream
 *   connections by `http_connection_state`, active (a request or stream on it) or idle.
 * No `http_route` (it would multiply these series by the route budget; the server histogram has the
 * routes) and no `server_address`/`server_port`: a proxy has one upstream, which the scrape target's
 * own labels already name. The series are found once and kept, as in standard-http.ts.
 */
import type { Registry } from 'prom-client';
import type { NativeHistogramSettings } from './native-histogram.js';
import { type CounterSeries, GaugeFamily, HistogramFamily, type HistogramSeries } from './families.js';
import { STANDARD_METHODS } from './methods.js';
import type { UpstreamFailureKind } from '../errors.js';

/** The upstream leg's `network.protocol.version`: undici's HTTP/1.1 pool or the HTTP/2 sessions. */
export type UpstreamProtocol = '1.1' | '2';
export const UPSTREAM_PROTOCOLS: readonly UpstreamProtocol[] = ['1.1', '2'];
/**
 * error_type of an upstream request: '' when it completed, the failure kind when it failed, `cancelled`
 * when the proxy gave it up because its client left or stalled (not a failure of the upstream).
 */
export type UpstreamRequestErrorType = UpstreamFailureKind | 'cancelled' | '';
/** OTel's spelling for a method outside the known set. */
const OTEL_OTHER_METHOD = '_OTHER';

export interface HttpClientMetrics {
  /** An upstream request's wait for a connection (or stream slot) ended after `seconds`: it got one, or failed waiting. */
  upstreamQueued(protocol: UpstreamProtocol, method: string, seconds: number): void;
  /**
   * An upstream request ended after `seconds` from its dispatch. `status` is the upstream's (0: none came).
   * A completed 4xx or 5xx is labelled with its status as error_type, as OTel's client conventions have it.
   */
  upstreamRequestEnded(protocol: UpstreamProtocol, method: string, status: number, errorType: UpstreamRequestErrorType, seconds: number): void;
  /** The upstream connections of one leg, active (carrying a request or stream) and idle. */
  upstreamConnections(protocol: UpstreamProtocol, active: number, idle: number): void;
}

/** The series of one method on one protocol, created on first use. */
interface LegSlot {
  readonly method: string;
  readonly protocol: UpstreamProtocol;
  queue: HistogramSeries | undefined;
  /** By status (completed, status < 400) or `status error_type`. */
  readonly durations: Map<number | string, HistogramSeries>;
}

function createFamilies(registry: Registry, durationBuckets: readonly number[], native: NativeHistogramSettings | undefined) {
  return {
    duration: new HistogramFamily({
      name: 'http_client_request_duration_seconds',
      help:
        'Duration of the requests the proxy sent to the upstream, from dispatch (waiting for a connection and connecting included) ' +
        'to the end of the response or the failure; one per attempt (a retry is another).',
      labelNames: ['http_request_method', 'http_response_status_code', 'error_type', 'network_protocol_version'],
      buckets: durationBuckets,
      native,
      registry,
    }),
    queue: new HistogramFamily({
      name: 'http_client_request_time_in_queue_seconds',
      help: 'Time upstream requests waited for a connection (HTTP/1.1) or a stream slot (HTTP/2), opening a new one included.',
      labelNames: ['http_request_method', 'network_protocol_version'],
      buckets: durationBuckets,
      native,
      registry,
    }),
    open: new GaugeFamily({
      name: 'http_client_open_connections',
      help: 'Upstream connections open now: active (carrying a request, or HTTP/2 streams) or idle.',
      labelNames: ['http_connection_state', 'network_protocol_version'],
      registry,
    }),
  };
}

const protocolIndex = (protocol: UpstreamProtocol): 0 | 1 => (protocol === '2' ? 1 : 0);

export function createHttpClientMetrics(
  registry: Registry,
  durationBuckets: readonly number[],
  native: NativeHistogramSettings | undefined,
): HttpClientMetrics {
  const { duration, queue, open } = createFamilies(registry, durationBuckets, native);
  const methods = new Map<string, readonly [LegSlot, LegSlot]>();
  for (const method of [...STANDARD_METHODS, OTEL_OTHER_METHOD]) {
    const slot = (protocol: UpstreamProtocol): LegSlot => ({ method, protocol, queue: undefined, durations: new Map() });
    methods.set(method, [slot('1.1'), slot('2')]);
  }
  const other = methods.get(OTEL_OTHER_METHOD) as readonly [LegSlot, LegSlot];
  const slotOf = (method: string, protocol: UpstreamProtocol): LegSlot => (methods.get(method) ?? other)[protocolIndex(protocol)];
  // Every leg's connection gauge exists at 0 from start-up.
  const connections = UPSTREAM_PROTOCOLS.map((protocol) => ({ active: open.series('active', protocol), idle: open.series('idle', protocol) }));

  return {
    upstreamQueued(protocol, method, seconds) {
      const slot = slotOf(method, protocol);
      slot.queue ??= queue.series(slot.method, slot.protocol);
      queue.observe(slot.queue, seconds);
    },
    upstreamRequestEnded(protocol, method, status, errorType, seconds) {
      const slot = slotOf(method, protocol);
      const key = errorType === '' ? status : `${status} ${errorType}`;
      let series = slot.durations.get(key);
      if (series === undefined) {
        const statusLabel = status === 0 ? '' : String(status);
        const errorLabel = errorType !== '' ? errorType : status >= 400 ? statusLabel : '';
        series = duration.series(slot.method, statusLabel, errorLabel, slot.protocol);
        slot.durations.set(key, series);
      }
      duration.observe(series, seconds);
    },
    upstreamConnections(protocol, active, idle) {
      const gauges = connections[protocolIndex(protocol)] as { active: CounterSeries; idle: CounterSeries };
      gauges.active.value = active;
      gauges.idle.value = idle;
    },
  };
}
