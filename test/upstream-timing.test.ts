/**
 * The upstream's share of the time, over real sockets: http_client_request_duration_seconds (each
 * upstream request from dispatch to the end of its response), http_client_request_time_in_queue_seconds
 * (the wait for a pooled connection), metrics_proxy_upstream_connect_duration_seconds (one per new
 * connection, failures by kind) and http_client_open_connections (active and idle), on both upstream
 * legs: undici's HTTP/1.1 pool and the HTTP/2 sessions. Lower bounds and counts only: the machine is
 * shared and noisy, so no timing is ever bounded from above.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { request } from 'node:http';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { ProxyConfig } from '../src/index.js';
import {
  type Proxy,
  type Upstream,
  deadUpstreamUrl,
  echoHandler,
  httpRequest,
  sampleValue,
  settle,
  startProxy,
  startUpstream,
  total,
  until,
} from './helpers.js';
import { holdingUpstream, startH2Upstream } from './h2-peers.js';

const DURATION = 'http_client_request_duration_seconds';
const QUEUE = 'http_client_request_time_in_queue_seconds';
const CONNECT = 'metrics_proxy_upstream_connect_duration_seconds';
const OPEN = 'http_client_open_connections';

interface CountingUpstream {
  readonly upstream: Upstream;
  /** TCP connections the upstream accepted. */
  readonly connections: () => number;
}

/** An HTTP/1.1 upstream that counts its connections; closed when the test ends. */
async function countingUpstream(handler: (req: IncomingMessage, res: ServerResponse) => void = echoHandler): Promise<CountingUpstream> {
  const upstream = await startUpstream(handler);
  let accepted = 0;
  upstream.server.on('connection', () => accepted++);
  onTestFinished(upstream.close);
  return { upstream, connections: () => accepted };
}

/** Answers `/api/<status>/...` with that status, after `delayMs`. */
function delayedHandler(delayMs: number) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    req.resume();
    const status = Number(/^\/api\/(\d{3})\//.exec(req.url ?? '')?.[1] ?? 200);
    setTimeout(() => res.writeHead(status).end('done'), delayMs);
  };
}

async function proxyTo(url: string, overrides: Partial<ProxyConfig> = {}): Promise<Proxy> {
  const proxy = await startProxy(url, overrides);
  onTestFinished(proxy.close);
  return proxy;
}

function openConnections(text: string, protocol: '1.1' | '2'): { active: number | undefined; idle: number | undefined } {
  return {
    active: sampleValue(text, OPEN, { http_connection_state: 'active', network_protocol_version: protocol }),
    idle: sampleValue(text, OPEN, { http_connection_state: 'idle', network_protocol_version: protocol }),
  };
}

/** Polls the metrics until the leg's open connections are `active` and `idle`; returns the last exposition. */
async function connectionsBecome(proxy: Proxy, protocol: '1.1' | '2', active: number, idle: number): Promise<string> {
  const text = await settle(proxy.metrics, (t) => {
    const now = openConnections(t, protocol);
    return now.active === active && now.idle === idle;
  });
  expect(openConnections(text, protocol)).toEqual({ active, idle });
  return text;
}

/** A GET the client abandons once the upstream has it: resolves when the proxy has seen the client leave. */
function abandonedGet(url: string, arrived: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const req = request(url, { agent: false });
    req.on('error', () => resolve());
    req.on('close', () => resolve());
    req.end();
    const timer = setInterval(() => {
      if (!arrived()) return;
      clearInterval(timer);
      req.socket?.destroy();
    }, 5);
  });
}

describe('http_client_* and the connect duration, on the HTTP/1.1 leg', () => {
  it('exist from start-up: the open-connections gauge of both legs at 0, no histogram series before a request', async () => {
    const { upstream } = await countingUpstream();
    const text = await (await proxyTo(upstream.url)).metrics();
    expect(openConnections(text, '1.1')).toEqual({ active: 0, idle: 0 });
    expect(openConnections(text, '2')).toEqual({ active: 0, idle: 0 });
    for (const name of [DURATION, QUEUE, CONNECT]) {
      expect(text).toContain(`# TYPE ${name} histogram`);
      expect(total(text, `${name}_count`)).toBe(0);
    }
    const seedOnly = await (await proxyTo(upstream.url, { metricFamilies: ['seed'] })).metrics();
    for (const name of [DURATION, QUEUE, CONNECT, OPEN]) expect(seedOnly).not.toContain(name);
  });

  it('records each upstream request from dispatch to the end of its response, with its status; 4xx and 5xx as error_type', async () => {
    const { upstream } = await countingUpstream(delayedHandler(200));
    const proxy = await proxyTo(upstream.url);
    for (const status of [200, 200, 404, 503]) expect((await httpRequest(`${proxy.url}/api/${status}/x`)).status).toBe(status);
    expect((await httpRequest(`${proxy.url}/api/200/y`, { method: 'POST', body: 'hello' })).status).toBe(200);
    const text = await proxy.metrics();
    const series = (method: string, status: string, errorType: string) => ({
      http_request_method: method,
      http_response_status_code: status,
      error_type: errorType,
      network_protocol_version: '1.1',
    });
    expect(sampleValue(text, `${DURATION}_count`, series('GET', '200', ''))).toBe(2);
    // (the upstream's timer may fire up to a millisecond early: libuv's clock has millisecond steps)
    expect(sampleValue(text, `${DURATION}_sum`, series('GET', '200', ''))).toBeGreaterThanOrEqual(2 * 0.19);
    expect(sampleValue(text, `${DURATION}_count`, series('GET', '404', '404'))).toBe(1);
    expect(sampleValue(text, `${DURATION}_count`, series('GET', '503', '503'))).toBe(1);
    expect(sampleValue(text, `${DURATION}_count`, series('POST', '200', ''))).toBe(1);
    // every bucket below the upstream's delay is empty
    expect(sampleValue(text, `${DURATION}_bucket`, { ...series('GET', '200', ''), le: '0.1' })).toBe(0);
    expect(total(text, `${DURATION}_count`)).toBe(5);
    // one connection, reused: opened once, and idle now
    expect(total(text, `${CONNECT}_count`, { network_protocol_version: '1.1', error_type: '' })).toBe(1);
    expect(openConnections(text, '1.1')).toEqual({ active: 0, idle: 1 });
  });

  it('bounds the method label: a method outside the standard ones is _OTHER', async () => {
    const { upstream } = await countingUpstream();
    const proxy = await proxyTo(upstream.url);
    expect((await httpRequest(`${proxy.url}/api/dav`, { method: 'PROPFIND' })).status).toBe(200);
    const text = await proxy.metrics();
    expect(total(text, `${DURATION}_count`, { http_request_method: '_OTHER' })).toBe(1);
    expect(total(text, `${QUEUE}_count`, { http_request_method: '_OTHER' })).toBe(1);
    expect(text).not.toContain('PROPFIND');
  });

  it('shows the wait for a pooled connection: with one connection held 300 ms past the second request\'s arrival, it queues ≥ 0.25 s', async () => {
    let releaseFirst: (() => void) | undefined;
    const { upstream, connections } = await countingUpstream((req, res) => {
      req.resume();
      const answer = () => res.writeHead(200).end('done');
      if (req.url === '/api/first') releaseFirst = answer;
      else setTimeout(answer, 300);
    });
    const proxy = await proxyTo(upstream.url, { upstreamMaxConnections: 1 });
    const first = httpRequest(`${proxy.url}/api/first`);
    await until(() => releaseFirst !== undefined, 'the first request at the upstream');
    const second = httpRequest(`${proxy.url}/api/second`);
    // the second request is queued behind the first: its connection comes 300 ms from now
    await settle(proxy.metrics, (t) => sampleValue(t, 'metrics_proxy_upstream_pending_requests') === 1);
    setTimeout(() => releaseFirst?.(), 300);
    expect([(await first).status, (await second).status]).toEqual([200, 200]);
    const text = await proxy.metrics();
    const labels = { http_request_method: 'GET', network_protocol_version: '1.1' };
    expect(sampleValue(text, `${QUEUE}_count`, labels)).toBe(2);
    expect(sampleValue(text, `${QUEUE}_sum`, labels)).toBeGreaterThanOrEqual(0.25);
    // the queued request's duration includes its wait: ≥ 0.3 s held + (≥ 0.25 s queued + 0.3 s)
    const ok = { ...labels, http_response_status_code: '200', error_type: '' };
    expect(sampleValue(text, `${DURATION}_count`, ok)).toBe(2);
    expect(sampleValue(text, `${DURATION}_sum`, ok)).toBeGreaterThanOrEqual(0.85);
    expect(connections()).toBe(1);
    expect(total(text, `${CONNECT}_count`)).toBe(1);
    expect(sampleValue(text, 'metrics_proxy_upstream_pending_requests')).toBe(0);
  });

  it('times each new connection once: N connections, N observations, none for a reused one', async () => {
    const holding = holdingUpstream();
    const { upstream, connections } = await countingUpstream(holding.handler);
    const proxy = await proxyTo(upstream.url, { upstreamMaxConnections: 3 });
    // three requests held at once need three connections
    const held = [1, 2, 3].map((i) => httpRequest(`${proxy.url}/api/held/${i}`));
    await until(() => holding.held.length === 3, 'three requests held at the upstream');
    await connectionsBecome(proxy, '1.1', 3, 0);
    holding.releaseAll();
    expect((await Promise.all(held)).map((r) => r.status)).toEqual([200, 200, 200]);
    // the connections are reused, not opened again
    for (let i = 0; i < 5; i++) expect((await httpRequest(`${proxy.url}/api/again/${i}`)).status).toBe(200);
    const text = await connectionsBecome(proxy, '1.1', 0, 3);
    expect(connections()).toBe(3);
    expect(sampleValue(text, `${CONNECT}_count`, { network_protocol_version: '1.1', error_type: '' })).toBe(3);
    expect(sampleValue(text, `${CONNECT}_sum`, { network_protocol_version: '1.1', error_type: '' })).toBeGreaterThan(0);
    expect(total(text, `${QUEUE}_count`)).toBe(8);
  });

  it('records refused connections with error_type="connect_refused", and their requests with no status', async () => {
    const proxy = await proxyTo(await deadUpstreamUrl());
    for (let i = 0; i < 3; i++) expect((await httpRequest(`${proxy.url}/api/items/${i}`)).status).toBe(502);
    const text = await proxy.metrics();
    expect(sampleValue(text, `${CONNECT}_count`, { network_protocol_version: '1.1', error_type: 'connect_refused' })).toBe(3);
    expect(total(text, `${CONNECT}_count`, { error_type: '' })).toBe(0);
    const failed = { http_request_method: 'GET', http_response_status_code: '', error_type: 'connect_refused', network_protocol_version: '1.1' };
    expect(sampleValue(text, `${DURATION}_count`, failed)).toBe(3);
    // they waited for a connection that never came: that wait ended too
    expect(sampleValue(text, `${QUEUE}_count`, { http_request_method: 'GET', network_protocol_version: '1.1' })).toBe(3);
    expect(openConnections(text, '1.1')).toEqual({ active: 0, idle: 0 });
  });

  it('counts connections active while a request holds them, idle after, and gone once the upstream closes them', async () => {
    const holding = holdingUpstream();
    const { upstream } = await countingUpstream(holding.handler);
    const proxy = await proxyTo(upstream.url, { upstreamMaxConnections: 2 });
    const held = [1, 2].map((i) => httpRequest(`${proxy.url}/api/held/${i}`));
    await until(() => holding.held.length === 2, 'two requests held at the upstream');
    await connectionsBecome(proxy, '1.1', 2, 0);
    holding.releaseAll();
    await Promise.all(held);
    await connectionsBecome(proxy, '1.1', 0, 2);
    upstream.server.closeIdleConnections();
    await connectionsBecome(proxy, '1.1', 0, 0);
  });

  it('records an upstream request the client abandoned as error_type="cancelled", and frees its connection', async () => {
    const holding = holdingUpstream();
    const { upstream } = await countingUpstream(holding.handler);
    const proxy = await proxyTo(upstream.url);
    await abandonedGet(`${proxy.url}/api/held/gone`, () => holding.held.length === 1);
    const text = await settle(proxy.metrics, (t) => total(t, `${DURATION}_count`, { error_type: 'cancelled' }) === 1);
    expect(total(text, `${DURATION}_count`, { error_type: 'cancelled', http_response_status_code: '' })).toBe(1);
    expect(total(text, `${DURATION}_count`)).toBe(1);
    // the aborted request's connection is not counted active any more
    expect(openConnections(text, '1.1').active).toBe(0);
    expect(total(text, 'metrics_proxy_upstream_errors_total')).toBe(0);
  });
});

describe('http_client_* and the connect duration, on the HTTP/2 leg', () => {
  it('records requests, their wait, one connect per session and the session active then idle, as network_protocol_version="2"', async () => {
    let release: (() => void) | undefined;
    const upstream = await startH2Upstream((stream, headers) => {
      const answer = () => {
        stream.respond({ ':status': 200 });
        stream.end('ok');
      };
      if (String(headers[':path']).startsWith('/api/held')) release = answer;
      else setTimeout(answer, 200);
    });
    const proxy = await proxyTo(upstream.url, { upstreamProtocol: 'http2' });
    for (let i = 0; i < 3; i++) expect((await httpRequest(`${proxy.url}/api/slow/${i}`)).status).toBe(200);
    let text = await connectionsBecome(proxy, '2', 0, 1);
    const ok = { http_request_method: 'GET', http_response_status_code: '200', error_type: '', network_protocol_version: '2' };
    expect(sampleValue(text, `${DURATION}_count`, ok)).toBe(3);
    expect(sampleValue(text, `${DURATION}_sum`, ok)).toBeGreaterThanOrEqual(3 * 0.19);
    expect(sampleValue(text, `${QUEUE}_count`, { http_request_method: 'GET', network_protocol_version: '2' })).toBe(3);
    expect(sampleValue(text, `${CONNECT}_count`, { network_protocol_version: '2', error_type: '' })).toBe(1);
    expect(total(text, `${DURATION}_count`, { network_protocol_version: '1.1' })).toBe(0);

    const held = httpRequest(`${proxy.url}/api/held/1`);
    await until(() => release !== undefined, 'the held stream at the upstream');
    await connectionsBecome(proxy, '2', 1, 0);
    release?.();
    expect((await held).status).toBe(200);
    await connectionsBecome(proxy, '2', 0, 1);
    await upstream.close();
    text = await connectionsBecome(proxy, '2', 0, 0);
    expect(total(text, `${CONNECT}_count`, { network_protocol_version: '2' })).toBe(1);
  });

  it('records refused sessions with error_type="connect_refused"', async () => {
    const proxy = await proxyTo(await deadUpstreamUrl(), { upstreamProtocol: 'http2' });
    for (let i = 0; i < 2; i++) expect((await httpRequest(`${proxy.url}/api/items/${i}`)).status).toBe(502);
    const text = await proxy.metrics();
    expect(sampleValue(text, `${CONNECT}_count`, { network_protocol_version: '2', error_type: 'connect_refused' })).toBe(2);
    const failed = { http_request_method: 'GET', http_response_status_code: '', error_type: 'connect_refused', network_protocol_version: '2' };
    expect(sampleValue(text, `${DURATION}_count`, failed)).toBe(2);
    expect(openConnections(text, '2')).toEqual({ active: 0, idle: 0 });
  });
});
