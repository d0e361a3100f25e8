/**
 * gRPC calls in the metrics, driven straight through createMetrics with records as the exchange
 * sends them (no proxy): the status helpers against @grpc/grpc-js's own status table, the RPC family
 * (rpc_server_call_duration_seconds: status names, error_type, the rpc_method budget and `_OTHER`,
 * cancelled and broken calls), the HTTP families kept free of gRPC calls while their in-flight gauge
 * still balances, network_protocol_version on the HTTP families, the access log decorator, and
 * promtool's verdict on the exposition.
 */
import { Writable } from 'node:stream';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createRenderer } from '../src/admin/exposition.js';
import { DEFAULTS } from '../src/config/config.js';
import { withAccessLog } from '../src/metrics/access-log.js';
import { GRPC_STATUS_NAMES, grpcStatusName, isGrpcServerError } from '../src/metrics/grpc-status.js';
import { type MetricsOptions, type MetricsRecorder, type RequestRecord, createMetrics } from '../src/metrics/recorder.js';
import { parseExposition, sampleValue } from './helpers.js';
import { prometheusTools, promtoolCheckMetrics } from './prometheus.js';

const RPC = 'rpc_server_call_duration_seconds';
const HTTP = 'http_server_request_duration_seconds';
const SAY_HELLO = 'helloworld.Greeter/SayHello';
const SERVER_ERROR_CODES = [2, 4, 12, 13, 14, 15];
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

interface Setup {
  readonly metrics: MetricsRecorder;
  /** The text exposition now. */
  readonly text: () => Promise<string>;
  readonly openMetrics: () => Promise<string>;
}

function setup(overrides: Partial<MetricsOptions> = {}): Setup {
  const registry = new Registry();
  const metrics = createMetrics(registry, {
    families: ['seed', 'standard'],
    bucketsMs: DEFAULTS.bucketsMs,
    durationBucketsSeconds: DEFAULTS.durationBucketsSeconds,
    apiPrefix: '/',
    routeTemplates: [],
    openapiTemplates: [],
    maxRoutes: 100,
    ...overrides,
  });
  const render = createRenderer(registry);
  return { metrics, text: async () => String((await render('text')).body), openMetrics: async () => String((await render('openmetrics')).body) };
}

interface CallOptions {
  readonly grpcStatus?: number | undefined;
  readonly cancelled?: boolean;
  readonly errorType?: string;
  readonly durationMs?: number;
  readonly traceparent?: string;
}

/** A finished gRPC call as the exchange records it. */
function grpcCall(method: string, options: CallOptions = {}): RequestRecord {
  const grpcStatus = 'grpcStatus' in options ? options.grpcStatus : 0;
  return {
    method: 'POST',
    path: `/${method}`,
    status: 200,
    errorType: options.errorType ?? '',
    durationMs: options.durationMs ?? 20,
    requestBytes: 12,
    responseBytes: 34,
    traceparent: options.traceparent,
    protocolVersion: '2',
    rpc: { method, grpcStatus, cancelled: options.cancelled ?? false },
  };
}

/** A plain HTTP request as the exchange records it. */
function httpCall(protocolVersion: RequestRecord['protocolVersion'], method = 'GET'): RequestRecord {
  return {
    method,
    path: '/api/items',
    status: 200,
    errorType: '',
    durationMs: 5,
    requestBytes: 10,
    responseBytes: 100,
    traceparent: undefined,
    protocolVersion,
  };
}

/** requestStarted then recordRequest, as the exchange calls them. */
function record(metrics: MetricsRecorder, request: RequestRecord): void {
  metrics.requestStarted(request.method);
  metrics.recordRequest(request);
}

function rpcCount(text: string, method: string, statusCode: string, errorType = ''): number | undefined {
  return sampleValue(text, `${RPC}_count`, { rpc_system_name: 'grpc', rpc_method: method, rpc_status_code: statusCode, error_type: errorType });
}

/** The distinct values of one label over a metric's samples. */
function labelValues(text: string, name: string, label: string): string[] {
  return [...new Set(parseExposition(text).filter((s) => s.name === name).map((s) => s.labels[label] ?? '?'))].sort();
}

describe('grpcStatusName and isGrpcServerError', () => {
  it.each(Array.from({ length: 17 }, (_, code) => code))('names code %i as @grpc/grpc-js does', (code) => {
    expect(grpcStatusName(code)).toBe(GrpcStatus[code]);
  });

  it('knows exactly gRPC\'s 17 codes', () => {
    expect(GRPC_STATUS_NAMES).toEqual(Object.keys(GrpcStatus).filter((key) => !/^\d+$/.test(key)));
  });

  it.each([17, 99, -1, 2.5, Number.NaN])('reads %d, no code gRPC defines, as UNKNOWN: a server error', (code) => {
    expect(grpcStatusName(code)).toBe('UNKNOWN');
    expect(isGrpcServerError(code)).toBe(true);
  });

  it('has no name and no error without a status', () => {
    expect(grpcStatusName(undefined)).toBe('');
    expect(isGrpcServerError(undefined)).toBe(false);
  });

  it('counts exactly UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE and DATA_LOSS as server errors', () => {
    const errors = Array.from({ length: 17 }, (_, code) => code).filter((code) => isGrpcServerError(code));
    expect(errors).toEqual(SERVER_ERROR_CODES);
    expect(errors.map((code) => GrpcStatus[code])).toEqual(['UNKNOWN', 'DEADLINE_EXCEEDED', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS']);
  });
});

describe('rpc_server_call_duration_seconds', () => {
  it.each(Array.from({ length: 17 }, (_, code) => code))('labels a call that ended with status %i by its name, error_type by the server-error rule', async (code) => {
    const { metrics, text } = setup();
    record(metrics, grpcCall(SAY_HELLO, { grpcStatus: code, durationMs: 250 }));
    const name = GrpcStatus[code] as string;
    const exposition = await text();
    const errorType = SERVER_ERROR_CODES.includes(code) ? name : '';
    expect(rpcCount(exposition, SAY_HELLO, name, errorType)).toBe(1);
    expect(sampleValue(exposition, `${RPC}_sum`, { rpc_system_name: 'grpc', rpc_method: SAY_HELLO, rpc_status_code: name, error_type: errorType })).toBe(0.25);
    expect(parseExposition(exposition).filter((s) => s.name === `${RPC}_count`)).toHaveLength(1);
  });

  it.each([
    ['a client cancel before any status', { grpcStatus: undefined, cancelled: true }, 'CANCELLED', ''],
    ['a stream the upstream broke without a status', { grpcStatus: undefined, errorType: 'reset' }, '', 'reset'],
    ['a call that ended with neither status, cancel nor failure kind', { grpcStatus: undefined }, '', '_OTHER'],
    ['a call the proxy failed with UNAVAILABLE (upstream refused)', { grpcStatus: 14, errorType: 'connect_refused' }, 'UNAVAILABLE', 'connect_refused'],
    ['a call the proxy failed with DEADLINE_EXCEEDED (upstream timeout)', { grpcStatus: 4, errorType: 'response_timeout' }, 'DEADLINE_EXCEEDED', 'response_timeout'],
    ['an HTTP 503 the client read as UNAVAILABLE', { grpcStatus: 14, errorType: '503' }, 'UNAVAILABLE', 'UNAVAILABLE'],
    ['an unknown error type without a status (kept bounded)', { grpcStatus: undefined, errorType: 'x'.repeat(100) }, '', '_OTHER'],
    ['a client-side status with a stray error type', { grpcStatus: 5, errorType: 'bogus' }, 'NOT_FOUND', ''],
  ] as const)('records %s', async (_what, options, statusCode, errorType) => {
    const { metrics, text } = setup();
    record(metrics, grpcCall(SAY_HELLO, options));
    const exposition = await text();
    expect(rpcCount(exposition, SAY_HELLO, statusCode, errorType)).toBe(1);
    // whatever the outcome, the seed family counts the call and leaves apiErrorCount to the exchange
    expect(sampleValue(exposition, 'apiCount', { method: 'POST' })).toBe(1);
    expect(sampleValue(exposition, 'apiErrorCount', { type: 'api' })).toBe(0);
  });

  it('records a streaming call once, with its whole duration, on its own method series', async () => {
    const { metrics, text } = setup();
    for (let i = 0; i < 3; i++) record(metrics, grpcCall(SAY_HELLO, { durationMs: 4 }));
    record(metrics, grpcCall('chat.Room/Stream', { durationMs: 3_600_000 }));
    const exposition = await text();
    const bucket = (method: string, le: string) =>
      sampleValue(exposition, `${RPC}_bucket`, { rpc_system_name: 'grpc', rpc_method: method, rpc_status_code: 'OK', error_type: '', le });
    expect(bucket(SAY_HELLO, '0.005')).toBe(3);
    expect(bucket('chat.Room/Stream', '10')).toBe(0);
    expect(bucket('chat.Room/Stream', '+Inf')).toBe(1);
    expect(rpcCount(exposition, 'chat.Room/Stream', 'OK')).toBe(1);
    // the seed family has the method label only: the stream is in apiDuration with the unary calls
    expect(sampleValue(exposition, 'apiDuration_count', { method: 'POST' })).toBe(4);
    expect(sampleValue(exposition, 'apiDuration_bucket', { method: 'POST', le: '10000' })).toBe(3);
  });

  it('carries the traceparent as an exemplar in OpenMetrics', async () => {
    const { metrics, openMetrics } = setup();
    record(metrics, grpcCall(SAY_HELLO, { traceparent: TRACEPARENT }));
    expect(await openMetrics()).toMatch(
      new RegExp(`${RPC}_bucket\\{[^}]*rpc_method="${SAY_HELLO}"[^}]*\\} 1 # \\{trace_id="4bf92f3577b34da6a3ce929d0e0e4736",span_id="00f067aa0ba902b7"\\}`),
    );
  });

  it('is not written at all with the standard family off, while the seed family counts the calls', async () => {
    const { metrics, text } = setup({ families: ['seed'] });
    record(metrics, grpcCall(SAY_HELLO));
    const exposition = await text();
    expect(exposition).not.toContain(RPC);
    expect(sampleValue(exposition, 'apiCount', { method: 'POST' })).toBe(1);
  });
});

describe('the rpc_method budget', () => {
  it('names the first --max-routes methods, then records new ones as _OTHER and counts each such call', async () => {
    const { metrics, text } = setup({ maxRoutes: 3 });
    const methods = ['a.A/One', 'a.A/Two', 'b.v1.B/Three', 'c.C/Four', 'd.D/Five'];
    for (const method of methods) record(metrics, grpcCall(method));
    record(metrics, grpcCall('c.C/Four'));
    record(metrics, grpcCall('a.A/One'));
    const exposition = await text();
    expect(labelValues(exposition, `${RPC}_count`, 'rpc_method')).toEqual(['_OTHER', 'a.A/One', 'a.A/Two', 'b.v1.B/Three']);
    expect(rpcCount(exposition, '_OTHER', 'OK')).toBe(3);
    expect(rpcCount(exposition, 'a.A/One', 'OK')).toBe(2);
    expect(sampleValue(exposition, 'metrics_proxy_rpc_methods_overflow_total')).toBe(3);
    // gRPC methods never spend the route budget
    expect(sampleValue(exposition, 'metrics_proxy_routes_overflow_total')).toBe(0);
    expect(metrics.routes.snapshot().routes).toEqual([]);
  });

  it.each([
    ['empty', ''],
    ['no service', 'SayHello'],
    ['a leading slash', '/helloworld.Greeter/SayHello'],
    ['three segments', 'a.B/C/D'],
    ['a space', 'hello world.Greeter/Say'],
    ['an empty package part', 'helloworld..Greeter/SayHello'],
    ['a trailing slash', 'helloworld.Greeter/'],
    ['a dot in the method', 'helloworld.Greeter/Say.Hello'],
    ['percent-encoding', 'helloworld.Greeter/Say%48ello'],
    ['a digit first', '1a.Greeter/SayHello'],
    ['over 256 characters', `${'p'.repeat(250)}.Greeter/SayHello`],
  ])('records a method with %s as _OTHER without spending the budget', async (_what, method) => {
    const { metrics, text } = setup({ maxRoutes: 1 });
    record(metrics, grpcCall(method));
    record(metrics, grpcCall(SAY_HELLO));
    const exposition = await text();
    expect(rpcCount(exposition, '_OTHER', 'OK')).toBe(1);
    expect(rpcCount(exposition, SAY_HELLO, 'OK')).toBe(1);
    expect(sampleValue(exposition, 'metrics_proxy_rpc_methods_overflow_total')).toBe(0);
  });

  it('keeps a scanner to budget + 1 method values', async () => {
    const { metrics, text } = setup({ maxRoutes: 5 });
    for (let i = 0; i < 1000; i++) record(metrics, grpcCall(`scan.S${i}/M`, { grpcStatus: 12 }));
    const exposition = await text();
    expect(labelValues(exposition, `${RPC}_count`, 'rpc_method')).toHaveLength(6);
    expect(rpcCount(exposition, '_OTHER', 'UNIMPLEMENTED', 'UNIMPLEMENTED')).toBe(995);
    expect(sampleValue(exposition, 'metrics_proxy_rpc_methods_overflow_total')).toBe(995);
  });

  it('names nothing with a budget of 0', async () => {
    const { metrics, text } = setup({ maxRoutes: 0 });
    record(metrics, grpcCall(SAY_HELLO));
    const exposition = await text();
    expect(labelValues(exposition, `${RPC}_count`, 'rpc_method')).toEqual(['_OTHER']);
    expect(sampleValue(exposition, 'metrics_proxy_rpc_methods_overflow_total')).toBe(1);
  });
});

describe('gRPC calls and the HTTP families', () => {
  it('keeps gRPC calls out of the HTTP duration and body-size histograms, and balances the in-flight gauge', async () => {
    const { metrics, text } = setup();
    for (let i = 0; i < 3; i++) metrics.requestStarted('POST');
    const inFlight = async () => sampleValue(await text(), 'http_server_active_requests', { http_request_method: 'POST' });
    expect(await inFlight()).toBe(3);
    metrics.recordRequest(grpcCall(SAY_HELLO));
    metrics.recordRequest(grpcCall(SAY_HELLO, { grpcStatus: undefined, cancelled: true }));
    expect(await inFlight()).toBe(1);
    metrics.recordRequest(grpcCall(SAY_HELLO, { grpcStatus: undefined, errorType: 'reset' }));
    const exposition = await text();
    expect(sampleValue(exposition, 'http_server_active_requests', { http_request_method: 'POST' })).toBe(0);
    const names = new Set(parseExposition(exposition).map((s) => s.name));
    for (const name of [`${HTTP}_count`, 'http_server_request_body_size_bytes_count', 'http_server_response_body_size_bytes_count']) {
      expect(names.has(name), name).toBe(false);
    }
    expect(sampleValue(exposition, 'apiCount', { method: 'POST' })).toBe(3);
    expect(labelValues(exposition, `${RPC}_count`, 'rpc_status_code')).toEqual(['', 'CANCELLED', 'OK']);
  });

  it.each(['1.0', '1.1', '2'] as const)('labels HTTP/%s requests with network_protocol_version', async (version) => {
    const { metrics, text } = setup();
    record(metrics, httpCall(version));
    const exposition = await text();
    const route = { http_request_method: 'GET', http_route: '/api/items', network_protocol_version: version };
    expect(sampleValue(exposition, `${HTTP}_count`, { ...route, http_response_status_code: '200', error_type: '' })).toBe(1);
    expect(sampleValue(exposition, 'http_server_request_body_size_bytes_sum', route)).toBe(10);
    expect(sampleValue(exposition, 'http_server_response_body_size_bytes_sum', route)).toBe(100);
    expect(sampleValue(exposition, 'http_server_active_requests', { http_request_method: 'GET' })).toBe(0);
  });

  it('keeps each protocol version on its own series, and leaves an unknown version empty', async () => {
    const { metrics, text } = setup();
    for (const version of ['1.1', '2', '2', '1.0', '1.1', '1.1'] as const) record(metrics, httpCall(version));
    record(metrics, { ...httpCall('2'), protocolVersion: '3' as never });
    const exposition = await text();
    const count = (version: string) =>
      sampleValue(exposition, `${HTTP}_count`, {
        http_request_method: 'GET',
        http_response_status_code: '200',
        http_route: '/api/items',
        error_type: '',
        network_protocol_version: version,
      });
    expect([count('1.0'), count('1.1'), count('2'), count('')]).toEqual([1, 3, 2, 1]);
    expect(labelValues(exposition, 'http_server_request_body_size_bytes_count', 'network_protocol_version')).toEqual(['', '1.0', '1.1', '2']);
  });
});

describe('with the access log', () => {
  it('logs a gRPC call with its bounded method as the route, spending the method budget once per call', async () => {
    const { metrics, text } = setup({ maxRoutes: 1 });
    const lines: Array<Record<string, unknown>> = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        done();
      },
    });
    const logged = withAccessLog(metrics, pino(destination));
    for (const method of [SAY_HELLO, 'other.Svc/Call', 'other.Svc/Call']) record(logged, grpcCall(method));
    const exposition = await text();
    expect(lines.map((line) => line.route)).toEqual([SAY_HELLO, '_OTHER', '_OTHER']);
    expect(rpcCount(exposition, SAY_HELLO, 'OK')).toBe(1);
    expect(rpcCount(exposition, '_OTHER', 'OK')).toBe(2);
    expect(sampleValue(exposition, 'metrics_proxy_rpc_methods_overflow_total')).toBe(2);
    expect(sampleValue(exposition, 'metrics_proxy_routes_overflow_total')).toBe(0);
    expect(metrics.routes.snapshot().routes).toEqual([]);
  });
});

describe.skipIf(prometheusTools() === undefined)('promtool check metrics', () => {
  it('finds nothing wrong with the standard family after gRPC and HTTP traffic', async () => {
    const { metrics, text } = setup({ families: ['standard'], maxRoutes: 2 });
    for (let code = 0; code <= 16; code++) record(metrics, grpcCall(SAY_HELLO, { grpcStatus: code }));
    record(metrics, grpcCall('x.Y/Z', { grpcStatus: undefined, cancelled: true }));
    record(metrics, grpcCall('scan.S/Overflow', { grpcStatus: undefined, errorType: 'reset' }));
    for (const version of ['1.0', '1.1', '2'] as const) record(metrics, httpCall(version));
    const exposition = await text();
    expect(rpcCount(exposition, '_OTHER', '', 'reset')).toBe(1);
    const { ok, problems } = await promtoolCheckMetrics(exposition);
    expect(problems).toEqual([]);
    expect(ok).toBe(true);
  });
});
