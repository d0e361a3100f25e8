/**
 * --access-log: a real upstream and proxy on port 0, a capturing logger. One
 * `request` line per forwarded request with an allowlist of fields; nothing
 * at all when the option is off.
 */
import { createServer } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { ACCESS_LOG_MESSAGE, accessLogLine } from '../src/metrics/access-log.js';
import type { ProxyConfig } from '../src/config/config.js';
import { echoHandler, httpRequest, sampleValue, settle, startProxy, startUpstream, until } from './helpers.js';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const TRACEPARENT = `00-${TRACE_ID}-00f067aa0ba902b7-01`;

async function proxyFor(upstreamUrl: string, overrides: Partial<ProxyConfig> = {}) {
  const proxy = await startProxy(upstreamUrl, overrides);
  onTestFinished(() => proxy.close());
  return proxy;
}

async function echoUpstream() {
  const upstream = await startUpstream(echoHandler);
  onTestFinished(() => upstream.close());
  return upstream;
}

/** A port that was just free: bound, then closed. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const requestLines = (logs: ReadonlyArray<Record<string, unknown>>) => logs.filter((l) => l.msg === ACCESS_LOG_MESSAGE);

describe('--access-log on', () => {
  it('logs one line per request with method, path without query, route, status, sizes, duration and trace id', async () => {
    const upstream = await echoUpstream();
    const proxy = await proxyFor(upstream.url, { accessLog: true, routes: ['/api/users/:id'] });

    const body = 'x'.repeat(300);
    const res = await httpRequest(`${proxy.url}/api/users/42?token=secret`, { method: 'POST', body, headers: { traceparent: TRACEPARENT } });
    expect(res.status).toBe(200);
    await until(() => requestLines(proxy.logs).length === 1, 'the access log line');

    const [line] = requestLines(proxy.logs);
    expect(line).toMatchObject({
      level: 30,
      msg: 'request',
      method: 'POST',
      path: '/api/users/42',
      route: '/api/users/:id',
      status: 200,
      request_bytes: 300,
      response_bytes: 300,
      trace_id: TRACE_ID,
    });
    expect(line?.duration_ms).toEqual(expect.any(Number));
    expect(line?.duration_ms as number).toBeGreaterThanOrEqual(0);
    expect(line).not.toHaveProperty('error_type');
    expect(JSON.stringify(line)).not.toContain('secret');
  });

  it('bounds the route like http_route, omits trace_id without a valid traceparent, and logs each request once', async () => {
    const upstream = await echoUpstream();
    const proxy = await proxyFor(upstream.url, { accessLog: true });

    for (const id of [1, 2, 3]) {
      const res = await httpRequest(`${proxy.url}/api/orders/${id}`, { headers: { traceparent: 'not-a-traceparent' } });
      expect(res.status).toBe(200);
    }
    await until(() => requestLines(proxy.logs).length === 3, 'three access log lines');
    const lines = requestLines(proxy.logs);
    expect(lines.map((l) => l.path)).toEqual(['/api/orders/1', '/api/orders/2', '/api/orders/3']);
    expect(lines.map((l) => l.route)).toEqual(['/api/orders/:id', '/api/orders/:id', '/api/orders/:id']);
    for (const line of lines) expect(line).not.toHaveProperty('trace_id');
  });

  it('gives the upstream 5xx status as error_type', async () => {
    const upstream = await startUpstream((_req, res) => {
      res.writeHead(503);
      res.end('down');
    });
    onTestFinished(() => upstream.close());
    const proxy = await proxyFor(upstream.url, { accessLog: true });

    expect((await httpRequest(`${proxy.url}/api/x`)).status).toBe(503);
    await until(() => requestLines(proxy.logs).length === 1, 'the access log line');
    expect(requestLines(proxy.logs)[0]).toMatchObject({ status: 503, error_type: '503', response_bytes: 4 });
  });

  it('gives the failure kind as error_type when the proxy answered for an unreachable upstream', async () => {
    const proxy = await proxyFor(`http://127.0.0.1:${await closedPort()}`, { accessLog: true });

    expect((await httpRequest(`${proxy.url}/api/x`)).status).toBe(502);
    await until(() => requestLines(proxy.logs).length === 1, 'the access log line');
    expect(requestLines(proxy.logs)[0]).toMatchObject({ method: 'GET', path: '/api/x', status: 502, error_type: 'connect_refused' });
  });

  it('does not count a route overflow twice (the route is resolved once per request)', async () => {
    const upstream = await echoUpstream();
    const proxy = await proxyFor(upstream.url, { accessLog: true, maxRoutes: 1 });

    for (const path of ['/api/a', '/api/b', '/api/c']) expect((await httpRequest(`${proxy.url}${path}`)).status).toBe(200);
    await until(() => requestLines(proxy.logs).length === 3, 'three access log lines');
    expect(requestLines(proxy.logs).map((l) => l.route)).toEqual(['/api/a', 'other', 'other']);
    expect(sampleValue(await proxy.metrics(), 'metrics_proxy_routes_overflow_total')).toBe(2);
  });
});

describe('--access-log off (the default)', () => {
  it('logs nothing per request', async () => {
    const upstream = await echoUpstream();
    const proxy = await proxyFor(upstream.url);

    expect((await httpRequest(`${proxy.url}/api/x`, { headers: { traceparent: TRACEPARENT } })).status).toBe(200);
    // The outcome is recorded in the same call that would log: once it is counted, a line would be there.
    const text = await settle(proxy.metrics, (t) => sampleValue(t, 'apiCount', { method: 'GET' }) === 1);
    expect(sampleValue(text, 'apiCount', { method: 'GET' })).toBe(1);
    expect(requestLines(proxy.logs)).toEqual([]);
  });
});

describe('accessLogLine', () => {
  it('rounds the duration and leaves out what is empty', () => {
    const line = accessLogLine(
      {
        method: undefined,
        path: '/api/x',
        status: 499,
        errorType: '',
        durationMs: 1.23456789,
        requestBytes: 0,
        responseBytes: 0,
        traceparent: `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`,
        protocolVersion: '1.1',
      },
      '/api/x',
    );
    expect(line).toEqual({ method: '', path: '/api/x', route: '/api/x', status: 499, duration_ms: 1.235, request_bytes: 0, response_bytes: 0 });
  });
});
