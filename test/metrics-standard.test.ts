import { gunzipSync } from 'node:zlib';
import { request } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import type { ProxyConfig } from '../src/index.js';
import {
  type Proxy,
  echoHandler,
  httpRequest,
  parseExposition,
  sampleValue,
  startProxy,
  startServer,
  settle,
  startUpstream,
  until,
  deadUpstreamUrl,
} from './helpers.js';

const DURATION = 'http_server_request_duration_seconds';
const UPSTREAM_ERRORS_HELP =
  'Requests that failed because the upstream could not be reached or read, by failure type: answered by the proxy ' +
  'itself (502 or 504) when the failure came before the response head, cut short (client connection closed) when it came after.';

async function setup(overrides: Partial<ProxyConfig> = {}, handler = echoHandler): Promise<Proxy> {
  const upstream = await startUpstream(handler);
  onTestFinished(upstream.close);
  const proxy = await startProxy(upstream.url, overrides);
  onTestFinished(proxy.close);
  return proxy;
}

function durationCount(text: string, labels: Record<string, string>): number | undefined {
  return sampleValue(text, `${DURATION}_count`, {
    http_request_method: 'GET',
    http_response_status_code: '200',
    http_route: '/api',
    error_type: '',
    network_protocol_version: '1.1',
    ...labels,
  });
}

describe('standard family (OpenTelemetry names)', () => {
  it('records method, status, route and an empty error_type for successes', async () => {
    const proxy = await setup({ routes: ['/api/users/:id'] });
    for (const id of [1, 2, 3]) await httpRequest(`${proxy.url}/api/users/${id}?full=1`);
    await httpRequest(`${proxy.url}/api/orders/8f14e45f-ceea-467f-a0e6-1a2b3c4d5e6f`, { method: 'POST', body: 'x' });
    const text = await proxy.metrics();
    expect(durationCount(text, { http_route: '/api/users/:id' })).toBe(3);
    expect(durationCount(text, { http_request_method: 'POST', http_route: '/api/orders/:id' })).toBe(1);
    // the raw path never becomes a label value
    expect(text).not.toContain('/api/users/1');
    expect(text).not.toContain('8f14e45f');
    expect(sampleValue(text, 'http_server_active_requests', { http_request_method: 'GET' })).toBe(0);
  });

  it('labels upstream 5xx with their status, and proxy answers with the failure kind', async () => {
    const failing = await setup({}, (_req, res) => {
      res.writeHead(503);
      res.end();
    });
    await httpRequest(`${failing.url}/api/x`);
    let text = await failing.metrics();
    expect(durationCount(text, { http_route: '/api/x', http_response_status_code: '503', error_type: '503' })).toBe(1);
    expect(sampleValue(text, 'metrics_proxy_upstream_errors_total', { error_type: 'connect_refused' })).toBe(0);

    const goneUrl = await deadUpstreamUrl();
    const unreachable = await startProxy(goneUrl);
    onTestFinished(unreachable.close);
    await httpRequest(`${unreachable.url}/api/x`);
    text = await unreachable.metrics();
    expect(durationCount(text, { http_route: '/api/x', http_response_status_code: '502', error_type: 'connect_refused' })).toBe(1);
    expect(sampleValue(text, 'metrics_proxy_upstream_errors_total', { error_type: 'connect_refused' })).toBe(1);
    for (const kind of ['connect_timeout', 'response_timeout', 'idle_timeout', 'reset', 'dns', 'tls', 'protocol', 'unknown']) {
      expect(sampleValue(text, 'metrics_proxy_upstream_errors_total', { error_type: kind }), kind).toBe(0);
    }
  });

  it('records a timeout as 504 response_timeout', async () => {
    const proxy = await setup({ upstreamTimeoutMs: 100 }, () => {});
    await httpRequest(`${proxy.url}/api/slow`);
    const text = await proxy.metrics();
    expect(durationCount(text, { http_route: '/api/slow', http_response_status_code: '504', error_type: 'response_timeout' })).toBe(1);
    expect(sampleValue(text, 'metrics_proxy_upstream_errors_total', { error_type: 'response_timeout' })).toBe(1);
  });

  it('records a client that went away as 499, not as an upstream error, and tracks in-flight requests', async () => {
    let arrived = 0;
    const proxy = await setup({}, () => {
      arrived++;
    });
    const req = request(`${proxy.url}/api/wait`, { agent: false });
    req.on('error', () => {});
    req.end();
    await until(() => arrived === 1, 'the request to reach the upstream');
    expect(sampleValue(await proxy.metrics(), 'http_server_active_requests', { http_request_method: 'GET' })).toBe(1);
    req.destroy();
    const text = await settle(proxy.metrics, (t) => durationCount(t, { http_route: '/api/wait', http_response_status_code: '499' }) === 1);
    expect(durationCount(text, { http_route: '/api/wait', http_response_status_code: '499' })).toBe(1);
    expect(sampleValue(text, 'http_server_active_requests', { http_request_method: 'GET' })).toBe(0);
    expect(sampleValue(text, 'apiErrorCount', { type: 'api' })).toBe(0);
  });

  it('measures request and response body sizes, with and without Content-Length', async () => {
    const proxy = await setup({}, (req, res) => {
      req.resume();
      req.on('end', () => {
        res.write(Buffer.alloc(1500));
        res.end(Buffer.alloc(500)); // chunked: no content-length
      });
    });
    await httpRequest(`${proxy.url}/api/upload`, { method: 'POST', body: Buffer.alloc(1000) });
    await new Promise<void>((resolve, reject) => {
      const req = request(`${proxy.url}/api/upload`, { method: 'PUT', agent: false }, (res) => {
        res.resume();
        res.on('end', resolve);
      });
      req.on('error', reject);
      req.write(Buffer.alloc(300));
      req.end(Buffer.alloc(200)); // chunked upload
    });
    const text = await proxy.metrics();
    const labels = (method: string) => ({ http_request_method: method, http_route: '/api/upload', network_protocol_version: '1.1' });
    expect(sampleValue(text, 'http_server_request_body_size_bytes_sum', labels('POST'))).toBe(1000);
    expect(sampleValue(text, 'http_server_request_body_size_bytes_sum', labels('PUT'))).toBe(500);
    expect(sampleValue(text, 'http_server_response_body_size_bytes_sum', labels('POST'))).toBe(2000);
    expect(sampleValue(text, 'http_server_response_body_size_bytes_sum', labels('PUT'))).toBe(2000);
  });

  it('records the request body bytes forwarded, not the Content-Length declared', async () => {
    const sizeSum = (text: string, method: string): number | undefined =>
      sampleValue(text, 'http_server_request_body_size_bytes_sum', {
        http_request_method: method,
        http_route: '/api/upload',
        network_protocol_version: '1.1',
      });

    // Nothing forwarded: the upstream refused the connection, the proxy answered itself.
    const unreachable = await startProxy(await deadUpstreamUrl());
    onTestFinished(unreachable.close);
    expect((await httpRequest(`${unreachable.url}/api/upload`, { method: 'POST', body: Buffer.alloc(1000) })).status).toBe(502);
    expect(sizeSum(await unreachable.metrics(), 'POST')).toBe(0);

    // A client that leaves mid-upload: what reached the upstream, not the million bytes it announced.
    let upstreamBytes = 0;
    const proxy = await setup({}, (req) => req.on('data', (c: Buffer) => (upstreamBytes += c.length)));
    const req = request(`${proxy.url}/api/upload`, { method: 'PUT', agent: false, headers: { 'content-length': '1000000' } });
    req.on('error', () => {});
    req.write(Buffer.alloc(10_000));
    await until(() => upstreamBytes === 10_000, 'the first bytes to reach the upstream');
    req.destroy();
    const text = await settle(proxy.metrics, (t) => sizeSum(t, 'PUT') !== undefined);
    expect(sizeSum(text, 'PUT')).toBe(10_000);
  });

  it('counts a response the upstream cuts mid-body as an upstream error, as its help text says', async () => {
    const raw = createNetServer((socket) => {
      socket.on('error', () => {});
      socket.once('data', () => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npart', () => socket.resetAndDestroy()));
    });
    const running = await startServer(raw);
    onTestFinished(running.close);
    const proxy = await startProxy(running.url);
    onTestFinished(proxy.close);
    await expect(httpRequest(`${proxy.url}/api/x`)).rejects.toThrow();
    const text = await settle(proxy.metrics, (t) => durationCount(t, { http_route: '/api/x', error_type: 'reset' }) === 1);
    // The client got the head (200) and a broken connection; the proxy did not answer itself.
    expect(durationCount(text, { http_route: '/api/x', error_type: 'reset' })).toBe(1);
    expect(sampleValue(text, 'metrics_proxy_upstream_errors_total', { error_type: 'reset' })).toBe(1);
    expect(text).toContain(`# HELP metrics_proxy_upstream_errors_total ${UPSTREAM_ERRORS_HELP}\n`);
  });

  it('uses OTel\'s _OTHER for unknown methods', async () => {
    const proxy = await setup();
    await httpRequest(`${proxy.url}/api/dav`, { method: 'PROPFIND' });
    expect(durationCount(await proxy.metrics(), { http_request_method: '_OTHER', http_route: '/api/dav' })).toBe(1);
  });
});

describe('routes under a series budget', () => {
  it('keeps the route series bounded under a scanner, counts the overflow, and lists the routes', async () => {
    const proxy = await setup({ maxRoutes: 5, routes: ['/api/known/:id'] });
    for (let i = 0; i < 40; i++) await httpRequest(`${proxy.url}/api/scan${i}/page`);
    await httpRequest(`${proxy.url}/api/known/77`);
    const text = await proxy.metrics();
    const routes = new Set(parseExposition(text).filter((s) => s.name === `${DURATION}_count`).map((s) => s.labels.http_route));
    expect(routes.size).toBeLessThanOrEqual(5 + 1 + 1);
    expect(routes.has('other')).toBe(true);
    expect(routes.has('/api/known/:id')).toBe(true);
    expect(sampleValue(text, 'metrics_proxy_routes_overflow_total')).toBe(35);
    // the seed family is untouched by routing
    expect(sampleValue(text, 'apiCount', { method: 'GET' })).toBe(41);

    const listed = JSON.parse((await httpRequest(`${proxy.url}/metrics/routes`)).body.toString()) as {
      routes: Array<{ route: string; source: string }>;
      maxRoutes: number;
      overflowed: number;
    };
    expect(listed.maxRoutes).toBe(5);
    expect(listed.overflowed).toBe(35);
    expect(listed.routes.filter((r) => r.source === 'inferred')).toHaveLength(5);
  });
});

describe('metric families switch', () => {
  it.each([
    [['seed'], true, false],
    [['standard'], false, true],
    [[], false, false],
  ] as const)('--metrics %j', async (families, seed, standard) => {
    const proxy = await setup({ metricFamilies: families });
    await httpRequest(`${proxy.url}/api/x`);
    const names = new Set(parseExposition(await proxy.metrics()).map((s) => s.name));
    expect(names.has('apiCount')).toBe(seed);
    expect(names.has(`${DURATION}_count`)).toBe(standard);
    expect(names.has('process_cpu_user_seconds_total')).toBe(true);
  });
});

describe('exposition', () => {
  const OPENMETRICS_ACCEPT =
    'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1';

  it('serves OpenMetrics with exemplars from traceparent when asked, and leaves the text format unchanged', async () => {
    const proxy = await setup();
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const spanId = '00f067aa0ba902b7';
    await httpRequest(`${proxy.url}/api/traced`, { headers: { traceparent: `00-${traceId}-${spanId}-01` } });
    const before = (await httpRequest(`${proxy.url}/metrics`)).body.toString();

    const om = await httpRequest(`${proxy.url}/metrics`, { headers: { accept: OPENMETRICS_ACCEPT } });
    expect(om.headers['content-type']).toBe('application/openmetrics-text; version=1.0.0; charset=utf-8');
    const text = om.body.toString();
    expect(text.endsWith('# EOF\n')).toBe(true);
    // the recipe's names survive OpenMetrics too (typed unknown there), so its queries keep working
    expect(text).toContain('# TYPE apiCount unknown\napiCount{method="GET"} 1');
    expect(text).not.toContain('apiCount_total');
    expect(text).toContain('promhttp_metric_handler_requests_total{code="200"}');
    expect(text).toMatch(new RegExp(`${DURATION}_bucket\\{[^}]*\\} 1 # \\{trace_id="${traceId}",span_id="${spanId}"\\} [0-9.e-]+ [0-9.]+`));

    // text again: same names as before the OpenMetrics scrape (prom-client renames counters while rendering it).
    // Not the GC histogram: its series appear with the first GC the proxy observes, which may fall between the scrapes.
    const after = (await httpRequest(`${proxy.url}/metrics`)).body.toString();
    const names = (t: string) =>
      [...new Set(parseExposition(t).map((s) => s.name))].filter((name) => !name.startsWith('nodejs_gc_duration_seconds')).sort();
    expect(names(after)).toEqual(names(before));
    expect(after).toContain('metrics_proxy_upstream_errors_total{error_type="reset"} 0');
    expect(after).not.toContain('# {trace_id');
  });

  it('gzips the body for clients that accept it', async () => {
    const proxy = await setup();
    await httpRequest(`${proxy.url}/api/x`);
    const res = await httpRequest(`${proxy.url}/metrics`, { headers: { 'accept-encoding': 'gzip, deflate' } });
    expect(res.headers['content-encoding']).toBe('gzip');
    const text = gunzipSync(res.body).toString();
    expect(sampleValue(text, 'apiCount', { method: 'GET' })).toBe(1);
    const plain = await httpRequest(`${proxy.url}/metrics`);
    expect(plain.headers['content-encoding']).toBeUndefined();
  });
});

describe('websocket sessions', () => {
  it('counts the handshake once as 101, and sessions, messages and close codes in their own metrics', async () => {
    const server = (await import('node:http')).createServer();
    const wss = new WebSocketServer({ server });
    wss.on('connection', (ws) => ws.on('message', (data, binary) => ws.send(data, { binary })));
    const running = await startServer(server);
    onTestFinished(async () => {
      wss.close();
      await running.close();
    });
    const proxy = await startProxy(running.url);
    onTestFinished(proxy.close);
    const ws = new WebSocket(`${proxy.url.replace('http', 'ws')}/api/chat/42`);
    await new Promise((resolve) => ws.once('open', resolve));
    for (const message of ['a', 'bb', 'ccc']) {
      ws.send(message);
      await new Promise((resolve) => ws.once('message', resolve));
    }
    let text = await proxy.metrics();
    expect(sampleValue(text, 'metrics_proxy_websocket_sessions_active', { http_route: '/api/chat/:id' })).toBe(1);
    expect(durationCount(text, { http_route: '/api/chat/:id', http_response_status_code: '101' })).toBe(1);
    ws.close(1000);
    await new Promise((resolve) => ws.once('close', resolve));
    text = await settle(proxy.metrics, (t) => sampleValue(t, 'metrics_proxy_websocket_sessions_active', { http_route: '/api/chat/:id' }) === 0);
    const route = { http_route: '/api/chat/:id' };
    expect(sampleValue(text, 'metrics_proxy_websocket_sessions_active', route)).toBe(0);
    expect(sampleValue(text, 'metrics_proxy_websocket_session_duration_seconds_count', { ...route, close_code: '1000' })).toBe(1);
    expect(sampleValue(text, 'metrics_proxy_websocket_messages_total', { ...route, direction: 'upstream' })).toBe(3);
    expect(sampleValue(text, 'metrics_proxy_websocket_messages_total', { ...route, direction: 'downstream' })).toBe(3);
    expect(sampleValue(text, 'metrics_proxy_websocket_bytes_total', { ...route, direction: 'upstream' })).toBe(6);
    expect(sampleValue(text, 'metrics_proxy_websocket_bytes_total', { ...route, direction: 'downstream' })).toBe(6);
    // the long session never entered the request histogram beyond its handshake
    expect(durationCount(text, { http_route: '/api/chat/:id', http_response_status_code: '101' })).toBe(1);
  });
});
