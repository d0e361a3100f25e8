/**
 * --access-log: one `request` line per finished forwarded request, written when
 * its outcome is recorded (on the response's 'close'). A decorator around the
 * recorder, wired in only when the option is on, so the hot path pays nothing
 * when it is off. The fields are an allowlist: no headers, no query string.
 */
import type { Logger } from 'pino';
import { type MetricsRecorder, type RequestRecord, traceFromHeader } from './recorder.js';

export const ACCESS_LOG_MESSAGE = 'request';

export interface AccessLogLine {
  readonly method: string;
  /** Without the query string (it may carry secrets). */
  readonly path: string;
  /** The bounded http_route label; for a gRPC call, its bounded rpc_method label. */
  readonly route: string;
  readonly status: number;
  readonly duration_ms: number;
  readonly request_bytes: number;
  readonly response_bytes: number;
  /** Only when the request failed: the upstream's 5xx status or the proxy's failure kind. */
  readonly error_type?: string;
  /** Only with a valid W3C traceparent. */
  readonly trace_id?: string;
}

export function accessLogLine(record: RequestRecord, route: string): AccessLogLine {
  const trace = traceFromHeader(record.traceparent);
  return {
    method: record.method ?? '',
    path: record.path,
    route,
    status: record.status,
    duration_ms: Number.isFinite(record.durationMs) ? Math.round(record.durationMs * 1000) / 1000 : 0,
    request_bytes: record.requestBytes,
    response_bytes: record.responseBytes,
    ...(record.errorType === '' ? {} : { error_type: record.errorType }),
    ...(trace === undefined ? {} : { trace_id: trace.trace_id }),
  };
}

/**
 * The recorder, plus a log line for every recorded request. The route (a gRPC call: its method) is
 * resolved once here and handed on, so the route or method table (and its overflow counter) sees
 * each request once, and a gRPC call never spends the route budget.
 */
export function withAccessLog(metrics: MetricsRecorder, log: Logger): MetricsRecorder {
  // Delegation rather than a copy: whatever the recorder is (object or class instance), every
  // other member keeps working unchanged.
  const logged = Object.create(metrics) as MetricsRecorder;
  logged.recordRequest = (record) => {
    const route = record.rpc === undefined ? metrics.routeOf(record.path) : metrics.rpcMethodOf(record.rpc.method);
    metrics.recordRequest({ ...record, route });
    log.info(accessLogLine(record, route), ACCESS_LOG_MESSAGE);
  };
  return logged;
}
