/**
 * Requests that wait for a pooled upstream connection and are given up before they get one (the
 * client left, or the response timeout answered): they leave the queue at once, never reach the
 * upstream, and never cost a connection. Counted on the upstream's side: TCP connections accepted
 * and requests (or HTTP/2 streams) received. The metrics stay exact: the pending gauge drops when
 * the client leaves, each given-up request has its time in queue and a `cancelled` (or timeout)
 * upstream attempt, and the client's request is a 499.
 */
import { type ClientRequest, type IncomingMessage, type ServerResponse, request } from 'node:http';
import { type ServerHttp2Stream, createServer as createH2Server } from 'node:http2';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { ProxyConfig } from '../src/index.js';
import { type Abort, UpstreamHandler, createUpstreamPool } from '../src/proxy/upstream-pool.js';
import { type Proxy, httpRequest, sampleValue, settle, startProxy, startServer, startUpstream, total, until } from './helpers.js';
import { h2Get } from './h2-peers.js';

const PENDING = 'metrics_proxy_upstream_pending_requests';
const QUEUE = 'http_client_request_time_in_queue_seconds';
const DURATION = 'http_client_request_duration_seconds';
const SERVER = 'http_server_request_duration_seconds';
const ABANDONED = 200;

/**
 * An HTTP/1.1 upstream that counts connections and requests, and holds `/api/held/*` until `release()`
 * (`/api/streaming/*` too, after its head and a first chunk); the rest it answers at once.
 */
async function countingUpstream() {
  const held: ServerResponse[] = [];
  let connections = 0;
  const upstream = await startUpstream((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    if (req.url?.startsWith('/api/streaming/') === true) res.writeHead(200).write('first chunk');
    if (req.url?.startsWith('/api/held/') === true || req.url?.startsWith('/api/streaming/') === true) held.push(res);
    else res.end('ok');
  });
  upstream.server.on('connection', () => connections++);
  onTestFinished(upstream.close);
  return {
    upstream,
    connections: () => connections,
    requests: () => upstream.seen.length,
    held: () => held.length,
    release: () => held.splice(0).forEach((res) => res.end('done')),
  };
}

async function proxyTo(url: string, overrides: Partial<ProxyConfig>): Promise<Proxy> {
  const proxy = await startProxy(url, overrides);
  onTestFinished(proxy.close);
  return proxy;
}

/** A GET on a connection of its own, which the test cuts later; never settles a promise. */
function openRequest(url: string): ClientRequest {
  const req = request(url, { agent: false });
  req.on('error', () => {});
  req.end();
  return req;
}

async function metricBecomes(proxy: Proxy, read: (text: string) => number | undefined, value: number, timeoutMs = 10_000): Promise<string> {
  const text = await settle(proxy.metrics, (t) => read(t) === value, timeoutMs);
  expect(read(text)).toBe(value);
  return text;
}

const clientsLeft = (text: string): number => total(text, `${SERVER}_count`, { http_response_status_code: '499' });

describe('requests abandoned while they wait for an HTTP/1.1 connection', () => {
  it(`${ABANDONED} of them: no connection opened or closed for them, none reaches the upstream, the proxy serves on`, async () => {
    const upstream = await countingUpstream();
    const proxy = await proxyTo(upstream.upstream.url, { upstreamMaxConnections: 4 });
    const busy = [0, 1, 2, 3].map((i) => httpRequest(`${proxy.url}/api/held/busy-${i}`));
    await until(() => upstream.held() === 4, 'four requests held at the upstream');
    const leaving = Array.from({ length: ABANDONED }, (_v, i) => openRequest(`${proxy.url}/api/held/leaving-${i}`));
    await metricBecomes(proxy, (t) => sampleValue(t, PENDING), ABANDONED);

    for (const req of leaving) req.destroy();
    // Out of the queue as soon as the clients are gone, long before any connection is free.
    let text = await metricBecomes(proxy, clientsLeft, ABANDONED);
    expect(sampleValue(text, PENDING)).toBe(0);
    const get = { http_request_method: 'GET', network_protocol_version: '1.1' };
    expect(sampleValue(text, `${QUEUE}_count`, get)).toBe(4 + ABANDONED);
    expect(sampleValue(text, `${DURATION}_count`, { ...get, http_response_status_code: '', error_type: 'cancelled' })).toBe(ABANDONED);
    expect(total(text, 'metrics_proxy_upstream_errors_total')).toBe(0);

    upstream.release();
    expect((await Promise.all(busy)).map((r) => r.status)).toEqual([200, 200, 200, 200]);
    // The proxy keeps serving, on the same connections.
    const after = await Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map((i) => httpRequest(`${proxy.url}/api/after-${i}`)));
    expect(after.map((r) => r.status)).toEqual(Array(8).fill(200));
    expect(upstream.connections()).toBe(4);
    expect(upstream.requests()).toBe(4 + 8);
    expect(upstream.upstream.seen.some((r) => r.url?.includes('leaving') === true)).toBe(false);
    text = await proxy.metrics();
    expect(sampleValue(text, PENDING)).toBe(0);
    expect(sampleValue(text, `${QUEUE}_count`, get)).toBe(4 + ABANDONED + 8);
  });

  it('requests the response timeout answers while they wait: 504, and no connection is touched for them', async () => {
    const upstream = await countingUpstream();
    const proxy = await proxyTo(upstream.upstream.url, { upstreamMaxConnections: 1, upstreamTimeoutMs: 400 });
    // The first one holds the one connection with a response that has begun (no response timeout for it).
    const first = httpRequest(`${proxy.url}/api/streaming/first`);
    await until(() => upstream.held() === 1, 'the first request at the upstream');
    const waiting = await Promise.all(Array.from({ length: 20 }, (_v, i) => httpRequest(`${proxy.url}/api/held/waiting-${i}`)));
    expect(waiting.map((r) => r.status)).toEqual(Array(20).fill(504));
    const text = await metricBecomes(proxy, (t) => sampleValue(t, PENDING), 0);
    expect(sampleValue(text, 'metrics_proxy_upstream_errors_total', { error_type: 'response_timeout' })).toBe(20);
    upstream.release();
    expect((await first).body.toString()).toBe('first chunkdone');
    expect((await httpRequest(`${proxy.url}/api/after`)).status).toBe(200);
    expect(upstream.connections()).toBe(1);
    expect(upstream.upstream.seen.map((r) => r.url)).toEqual(['/api/streaming/first', '/api/after']);
  });
});

/** Declines the connection it is given (as an exchange whose client has left does), or takes it and reads the answer. */
class TestHandler extends UpstreamHandler {
  readonly done: Promise<string>;
  private settle: (outcome: string) => void = () => {};
  private status = 0;

  constructor(private readonly decline: boolean) {
    super();
    this.done = new Promise((resolve) => (this.settle = resolve));
  }

  protected override declinesConnection(): boolean {
    return this.decline;
  }
  protected upstreamAssigned(_abort: Abort): void {}
  protected upstreamBodySent(): void {}
  protected upstreamRequestSent(): void {}
  protected upstreamResponseStarted(): void {}
  protected upstreamHeaders(status: number): boolean {
    this.status = status;
    return true;
  }
  protected upstreamData(): boolean {
    return true;
  }
  protected upstreamComplete(): void {
    this.settle(String(this.status));
  }
  protected upstreamFailed(): void {
    this.settle('failed');
  }
}

describe('a request declined when undici hands it a connection', () => {
  it('leaves the connection untouched: the next request goes out on it', async () => {
    const upstream = await countingUpstream();
    const pool = createUpstreamPool({
      upstream: new URL(upstream.upstream.url),
      maxConnections: 1,
      keepAliveTimeoutMs: 10_000,
      connectTimeoutMs: 2_000,
      onStrayError: (err) => expect.fail(String(err)),
    });
    onTestFinished(() => pool.close());
    const request = (path: string) => ({ method: 'GET', path, headers: ['host', 'upstream'], body: null, servername: pool.servername });
    // The first request opens the connection, and is declined on it (undici's queue, not ours: there is a slot).
    const declined = new TestHandler(true);
    pool.dispatch(request('/api/declined'), declined);
    expect(await declined.done).toBe('failed');
    const taken = new TestHandler(false);
    pool.dispatch(request('/api/taken'), taken);
    expect(await taken.done).toBe('200');
    expect(upstream.connections()).toBe(1);
    expect(upstream.upstream.seen.map((r) => r.url)).toEqual(['/api/taken']);
  });
});

describe('calls abandoned while they wait for an HTTP/2 stream', () => {
  it('never open a stream, nor a session', async () => {
    const held: ServerHttp2Stream[] = [];
    let sessions = 0;
    let streams = 0;
    const server = createH2Server({ settings: { maxConcurrentStreams: 1 } });
    server.on('connection', () => sessions++);
    server.on('session', (session) => session.on('error', () => {}));
    server.on('stream', (stream, headers) => {
      streams++;
      stream.on('error', () => {});
      if (String(headers[':path']).startsWith('/api/held/')) held.push(stream);
      else stream.respond({ ':status': 200 }, { endStream: true });
    });
    const running = await startServer(server);
    onTestFinished(running.close);
    const proxy = await proxyTo(running.url, { upstreamProtocol: 'http2' });
    // Four sessions (the pool's bound) of one stream each, all held.
    const busy = [0, 1, 2, 3].map((i) => httpRequest(`${proxy.url}/api/held/busy-${i}`));
    await until(() => held.length === 4, 'four streams held at the upstream');
    const leaving = Array.from({ length: 50 }, (_v, i) => openRequest(`${proxy.url}/api/held/leaving-${i}`));
    await metricBecomes(proxy, (t) => sampleValue(t, PENDING), 50);
    for (const req of leaving) req.destroy();
    const text = await metricBecomes(proxy, clientsLeft, 50);
    expect(sampleValue(text, PENDING)).toBe(0);
    for (const stream of held.splice(0)) stream.respond({ ':status': 200 }, { endStream: true });
    expect((await Promise.all(busy)).map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect((await h2Get(proxy.url, '/api/after')).status).toBe(200);
    expect(sessions).toBe(4);
    expect(streams).toBe(5);
  });
});
