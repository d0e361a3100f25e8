/**
 * The one recorder the proxy reports to. It fans each outcome out to the
 * enabled families (`--metrics seed,standard`) and owns the route table and
 * the gRPC method table that keep `http_route` and `rpc_method` bounded.
 * Everything registers on the registry passed in, never on prom-client's
 * global one.
 */
import { type Registry, collectDefaultMetrics } from 'prom-client';
import { type SeedErrorType, type SeedMetrics, createScrapeCounter, createSeedMetrics } from './seed.js';
import { type Direction, type StandardMetrics, createStandardMetrics } from './standard.js';
import { DEFAULT_SLO_OBJECTIVE, createSloMetric } from './slo.js';
import { type RouteTable, createRouteTable } from './routes.js';
import { type RpcMethodTable, createRpcMethodTable } from './rpc-methods.js';
import type { UpstreamFailureKind } from '../errors.js';
import type { NativeHistogramSettings } from './native-histogram.js';
import type { UpstreamProtocol, UpstreamRequestErrorType } from './standard-upstream.js';

export { OTHER_METHOD, STANDARD_METHODS, methodLabel } from './methods.js';
export { GRPC_STATUS_NAMES, grpcStatusName, isGrpcServerError } from './grpc-status.js';

export type { UpstreamProtocol, UpstreamRequestErrorType } from './standard-upstream.js';

export type MetricFamily = 'seed' | 'standard';
export type ErrorType = SeedErrorType;

export interface RequestRecord {
  readonly method: string | undefined;
  /** The forwarded path, without query, for the route label. */
  readonly path: string;
  /** Status the client got; 499 when it went away first. */
  readonly status: number;
  /** '' for success, the upstream's 5xx status, or the failure kind when the proxy answered. */
  readonly errorType: string;
  readonly durationMs: number;
  readonly requestBytes: number;
  readonly responseBytes: number;
  readonly traceparent: string | undefined;
  /**
   * The route of `path` when the caller already resolved it (the access log), so it is resolved once;
   * for a gRPC call, its rpc_method label (`rpcMethodOf`).
   */
  readonly route?: string;
  /** The client's HTTP version: '1.0', '1.1' or '2'. */
  readonly protocolVersion: '1.0' | '1.1' | '2';
  /** Set when the request was a gRPC call (content-type application/grpc*), recorded in the RPC family instead of http_server_*. */
  readonly rpc?: {
    /** `package.Service/Method` (the path without its leading slash), unvalidated: bound it. */
    readonly method: string;
    /** The call's grpc-status (0–16) as the client saw it; undefined when the call ended without one (client cancel, broken stream). */
    readonly grpcStatus: number | undefined;
    /** The client cancelled (RST_STREAM or went away) before the call ended. */
    readonly cancelled: boolean;
  };
}

export interface MetricsRecorder {
  requestStarted(method: string | undefined): void;
  /**
   * One forwarded request (HTTP, gRPC call or WebSocket handshake), whatever its outcome. Called exactly
   * once per request, after requestStarted. A gRPC call (`rpc` set) goes to rpc_server_call_duration_seconds,
   * not to http_server_request_duration_seconds or the body-size histograms.
   */
  recordRequest(record: RequestRecord): void;
  /** Seed family: an upstream 5xx or an unreachable upstream (`api`), or a failed WebSocket (`ws`). */
  recordError(type: ErrorType): void;
  /** Standard family: the upstream could not be reached or read (the proxy answered, or cut a response short). */
  recordUpstreamFailure(kind: UpstreamFailureKind): void;
  /** Standard family: +1 when a request starts waiting for an upstream connection, -1 when that wait ends. */
  upstreamWaiting(delta: number): void;
  /** Standard family: a request sent again on a fresh connection. */
  upstreamRetried(method: string | undefined): void;
  /** Standard family: an upstream request got a connection (HTTP/2: a stream slot), or failed waiting, `seconds` after its dispatch. */
  upstreamQueued(protocol: UpstreamProtocol, method: string, seconds: number): void;
  /**
   * Standard family: an upstream request ended, `seconds` after its dispatch: each attempt once (a retry is
   * another). `status` is the upstream's final status, 0 when none came.
   */
  upstreamRequestEnded(protocol: UpstreamProtocol, method: string, status: number, errorType: UpstreamRequestErrorType, seconds: number): void;
  /** Standard family: a new upstream connection was opened (`errorType` '') or failed to open, after `seconds`. */
  upstreamConnectEnded(protocol: UpstreamProtocol, errorType: UpstreamFailureKind | '', seconds: number): void;
  /** Standard family: the upstream connections of one leg now, active and idle. */
  upstreamConnections(protocol: UpstreamProtocol, active: number, idle: number): void;
  /** The bounded route label of a forwarded path. */
  routeOf(path: string): string;
  /** The bounded rpc_method label of a gRPC method (`package.Service/Method`); a new one spends the method budget. */
  rpcMethodOf(method: string): string;
  sessionOpened(route: string): void;
  sessionClosed(route: string, closeCode: string, durationSeconds: number): void;
  sessionMessage(route: string, direction: Direction, payloadBytes: number): void;
  /** One answer from the metrics endpoint, by HTTP status, as Go's promhttp counts them. */
  recordScrape(statusCode: number): void;
  readonly routes: RouteTable;
  /** Whether WebSocket sessions are worth inspecting frame by frame (the standard family is on). */
  readonly inspectsSessions: boolean;
}

/** What the upstream pools report about their connections. */
export type UpstreamConnectionMetrics = Pick<MetricsRecorder, 'upstreamConnectEnded' | 'upstreamConnections'>;

export interface MetricsOptions {
  readonly families: readonly MetricFamily[];
  readonly bucketsMs: readonly number[];
  readonly durationBucketsSeconds: readonly number[];
  readonly apiPrefix: string;
  readonly routeTemplates: readonly string[];
  readonly openapiTemplates: readonly string[];
  readonly maxRoutes: number;
  /** Native buckets beside every histogram's classic ones; undefined: classic only. */
  readonly nativeHistograms?: NativeHistogramSettings;
  /** --slo, exposed as metrics_proxy_slo_objective_ratio; default 0.999. */
  readonly sloObjective?: number;
}

const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

/** The exemplar labels of a W3C `traceparent`, or undefined when absent or malformed. */
export function traceFromHeader(header: string | undefined): { trace_id: string; span_id: string } | undefined {
  if (header === undefined || header.length !== 55) return undefined;
  const match = TRACEPARENT.exec(header);
  if (match === null) return undefined;
  const traceId = match[1] as string;
  const spanId = match[2] as string;
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined;
  return { trace_id: traceId, span_id: spanId };
}

const noop = (): void => {};
const MISNAMED_DEFAULT_GAUGES = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/** Registers the enabled families, the SLO gauge and prom-client's process metrics; the recorder writes to the first two. */
function registerFamilies(registry: Registry, options: MetricsOptions) {
  const seed = options.families.includes('seed') ? createSeedMetrics(registry, options.bucketsMs, options.nativeHistograms) : undefined;
  const recordScrape = seed !== undefined ? createScrapeCounter(registry) : noop;
  const standard = options.families.includes('standard')
    ? createStandardMetrics(registry, options.durationBucketsSeconds, options.nativeHistograms)
    : undefined;
  if (options.families.length > 0) createSloMetric(registry, options.sloObjective ?? DEFAULT_SLO_OBJECTIVE);
  collectDefaultMetrics({ register: registry });
  // Gauges named like counters fail `promtool check metrics`; their per-type siblings
  // (nodejs_active_handles{type}, …) carry the same numbers, and sum() gives the totals.
  for (const name of MISNAMED_DEFAULT_GAUGES) registry.removeSingleMetric(name);
  return { seed, standard, recordScrape };
}

interface Tables {
  readonly routes: RouteTable;
  readonly rpcMethods: RpcMethodTable;
}

/** recordRequest: the seed family counts every request; the standard family records HTTP and gRPC apart. */
function requestRecorder(seed: SeedMetrics | undefined, standard: StandardMetrics | undefined, tables: Tables) {
  return (r: RequestRecord): void => {
    const durationMs = Number.isFinite(r.durationMs) && r.durationMs >= 0 ? r.durationMs : 0;
    seed?.recordRequest(r.method, durationMs);
    if (standard === undefined) return;
    const trace = traceFromHeader(r.traceparent);
    if (r.rpc !== undefined) {
      standard.requestEnded(r.method);
      const method = r.route ?? tables.rpcMethods.resolve(r.rpc.method);
      standard.callFinished(method, r.rpc, r.errorType, durationMs / 1000, trace);
      return;
    }
    standard.requestFinished({
      method: r.method,
      route: r.route ?? tables.routes.resolve(r.path),
      protocolVersion: r.protocolVersion,
      status: r.status,
      errorType: r.errorType,
      durationSeconds: durationMs / 1000,
      requestBytes: r.requestBytes,
      responseBytes: r.responseBytes,
      trace,
    });
  };
}

export function createMetrics(registry: Registry, options: MetricsOptions): MetricsRecorder {
  const { seed, standard, recordScrape } = registerFamilies(registry, options);
  const routes = createRouteTable({
    apiPrefix: options.apiPrefix,
    templates: options.routeTemplates,
    openapiTemplates: options.openapiTemplates,
    maxRoutes: options.maxRoutes,
    onOverflow: () => standard?.routeOverflowed(),
  });
  const rpcMethods = createRpcMethodTable({ maxMethods: options.maxRoutes, onOverflow: () => standard?.rpcMethodOverflowed() });

  return {
    routes,
    inspectsSessions: standard !== undefined,
    routeOf: (path) => routes.resolve(path),
    rpcMethodOf: (method) => rpcMethods.resolve(method),
    requestStarted(method) {
      standard?.requestStarted(method);
    },
    recordRequest: requestRecorder(seed, standard, { routes, rpcMethods }),
    recordError(type) {
      seed?.recordError(type);
    },
    recordUpstreamFailure(kind) {
      standard?.upstreamFailed(kind);
    },
    upstreamWaiting(delta) {
      standard?.upstreamWaiting(delta);
    },
    upstreamRetried(method) {
      standard?.upstreamRetried(method);
    },
    upstreamQueued(protocol, method, seconds) {
      standard?.upstreamQueued(protocol, method, seconds);
    },
    upstreamRequestEnded(protocol, method, status, errorType, seconds) {
      standard?.upstreamRequestEnded(protocol, method, status, errorType, seconds);
    },
    upstreamConnectEnded(protocol, errorType, seconds) {
      standard?.upstreamConnectEnded(protocol, errorType, seconds);
    },
    upstreamConnections(protocol, active, idle) {
      standard?.upstreamConnections(protocol, active, idle);
    },
    sessionOpened(route) {
      standard?.sessionOpened(route);
    },
    sessionClosed(route, closeCode, durationSeconds) {
      standard?.sessionClosed(route, closeCode, durationSeconds);
    },
    sessionMessage(route, direction, payloadBytes) {
      standard?.sessionMessage(route, direction, payloadBytes);
    },
    recordScrape(statusCode) {
      recordScrape(statusCode);
    },
  };
}
