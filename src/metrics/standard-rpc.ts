/**
 * The OpenTelemetry RPC server family of the standard family, for gRPC calls:
 * `rpc.server.call.duration` (seconds) as the OTel Prometheus exporter writes
 * it, `rpc_server_call_duration_seconds`, with the attributes of the RPC
 * conventions as labels. A call is recorded once, when it ends, so a
 * streaming call is one observation of its whole life, on its own
 * `rpc_method` series. The series of each (method, status, error type) are
 * found once and kept: a call allocates nothing once its series exists.
 */
import type { Registry } from 'prom-client';
import type { NativeHistogramSettings } from './native-histogram.js';
import { CounterFamily, type ExemplarLabels, HistogramFamily, type HistogramSeries } from './families.js';
import { grpcStatusName, isGrpcServerError } from './grpc-status.js';
import { UPSTREAM_ERROR_TYPES } from './standard-upstream.js';

/** `rpc.system.name`: the proxy sees gRPC only. */
export const RPC_SYSTEM_NAME = 'grpc';
/** OTel's fallback `error.type`: the call ended without a status and without a failure the proxy could name. */
export const OTHER_RPC_ERROR = '_OTHER';

const FAILURE_KINDS: ReadonlySet<string> = new Set(UPSTREAM_ERROR_TYPES);

/** How a gRPC call ended, as the exchange saw it. */
export interface RpcOutcome {
  /** The grpc-status the client saw (0–16); undefined when the call ended without one. */
  readonly grpcStatus: number | undefined;
  /** The client cancelled before the call ended. */
  readonly cancelled: boolean;
}

export interface RpcServerMetrics {
  /** One finished gRPC call; `method` is already the bounded rpc_method label, `errorType` the exchange's ('' or a failure kind). */
  callFinished(method: string, outcome: RpcOutcome, errorType: string, durationSeconds: number, trace: ExemplarLabels | undefined): void;
  /** A call recorded as rpc_method="_OTHER" because the method budget was full. */
  rpcMethodOverflowed(): void;
}

/**
 * `rpc_status_code`: the name of the status the client saw; `CANCELLED` for a call the client
 * cancelled before any status (what a gRPC server reports for it); '' when the call broke without one.
 */
export function rpcStatusLabel(outcome: RpcOutcome): string {
  if (outcome.grpcStatus !== undefined) return grpcStatusName(outcome.grpcStatus);
  return outcome.cancelled ? 'CANCELLED' : '';
}

/**
 * `error_type`, empty unless the call failed: the proxy's failure kind when it could not reach or
 * read the service (as on http_server_*: it separates "the proxy failed" from "the service failed");
 * else the status name when the status is a server error; else `_OTHER` for a call that ended with
 * neither status nor cancel. A client's cancel and client-side statuses (NOT_FOUND…) are not errors.
 */
export function rpcErrorType(outcome: RpcOutcome, errorType: string): string {
  if (FAILURE_KINDS.has(errorType)) return errorType;
  const { grpcStatus } = outcome;
  if (grpcStatus !== undefined) return isGrpcServerError(grpcStatus) ? grpcStatusName(grpcStatus) : '';
  return outcome.cancelled ? '' : OTHER_RPC_ERROR;
}

export function createRpcServerMetrics(
  registry: Registry,
  durationBuckets: readonly number[],
  native: NativeHistogramSettings | undefined,
): RpcServerMetrics {
  const duration = new HistogramFamily({
    name: 'rpc_server_call_duration_seconds',
    help: 'Duration of gRPC calls, from arrival to the end of the call (its status, or the error); a streaming call is recorded once, when it ends.',
    labelNames: ['rpc_system_name', 'rpc_method', 'rpc_status_code', 'error_type'],
    buckets: durationBuckets,
    native,
    registry,
  });
  // method → status → error type → series, every key a bounded label value.
  const series = new Map<string, Map<string, Map<string, HistogramSeries>>>();

  function seriesOf(method: string, status: string, errorType: string): HistogramSeries {
    let byStatus = series.get(method);
    if (byStatus === undefined) {
      byStatus = new Map();
      series.set(method, byStatus);
    }
    let byError = byStatus.get(status);
    if (byError === undefined) {
      byError = new Map();
      byStatus.set(status, byError);
    }
    let found = byError.get(errorType);
    if (found === undefined) {
      found = duration.series(RPC_SYSTEM_NAME, method, status, errorType);
      byError.set(errorType, found);
    }
    return found;
  }

  const overflow = new CounterFamily({
    name: 'metrics_proxy_rpc_methods_overflow_total',
    help: 'gRPC calls recorded as rpc_method="_OTHER" because the method budget (--max-routes) was full.',
    registry,
  }).series();

  return {
    callFinished(method, outcome, errorType, durationSeconds, trace) {
      duration.observe(seriesOf(method, rpcStatusLabel(outcome), rpcErrorType(outcome, errorType)), durationSeconds, trace);
    },
    rpcMethodOverflowed() {
      overflow.value += 1;
    },
  };
}
