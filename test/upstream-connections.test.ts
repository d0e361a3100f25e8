/**
 * Upstream connections over real sockets: reuse that never turns an upstream's
 * idle close into an error (with and without its Keep-Alive hint), retries
 * only where they are safe, and a bounded pool whose waiting requests show in
 * a metric and stay bounded by the response timeout.
 */
import type { IncomingMessage } from 'node:http';
import { request } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { ProxyConfig } from '../src/index.js';
import { type Proxy, type Upstream, httpRequest, sampleValue, settle, startProxy, startUpstream, until } from './helpers.js';

/** How much later than its idle timeout the closing upstream's timer may run. */
const TIMER_SLACK_MS = 400;

interface ClosingUpstream {
  readonly upstream: Upstream;
  /** `METHOD url` of every request that reached the upstream, answered or not. */
  readonly arrived: string[];
  /** Requests the upstream closed the connection under instead of answering. */
  dropped(): number;
}

/**
 * An upstream that closes connections idle for `idleMs` itself, as servers do (Node 20's own
 * keepAliveTimeout closes about a second late, so it is not used): a timer closes an idle connection
 * a little after `idleMs`, and a request arriving on a connection idle for `idleMs` or more is not
 * answered, its connection is closed under it: the timer fired while the request was on its way.
 * With `hintSeconds`, every response says `Keep-Alive: timeout=<hintSeconds>`.
 */
async function startClosingUpstream(idleMs: number, hintSeconds?: number): Promise<ClosingUpstream> {
  const idleSince = new Map<Socket, number>();
  const timers = new Map<Socket, NodeJS.Timeout>();
  const arrived: string[] = [];
  let dropped = 0;
  const upstream = await startUpstream((req: IncomingMessage, res) => {
    arrived.push(`${req.method} ${req.url}`);
    const socket = req.socket;
    clearTimeout(timers.get(socket));
    const since = idleSince.get(socket);
    if (since !== undefined && performance.now() - since >= idleMs) {
      dropped++;
      socket.destroy();
      return;
    }
    idleSince.delete(socket);
    req.resume();
    req.on('end', () => {
      res.writeHead(200, hintSeconds === undefined ? {} : { 'keep-alive': `timeout=${hintSeconds}` });
      res.end('ok');
    });
    res.on('finish', () => {
      idleSince.set(socket, performance.now());
      timers.set(socket, setTimeout(() => socket.destroy(), idleMs + TIMER_SLACK_MS).unref());
    });
  });
  // 0: Node neither closes idle connections nor announces `Keep-Alive: timeout=` on its own.
  upstream.server.keepAliveTimeout = 0;
  onTestFinished(async () => {
    for (const timer of timers.values()) clearTimeout(timer);
    await upstream.close();
  });
  return { upstream, arrived, dropped: () => dropped };
}

async function proxyTo(url: string, overrides: Partial<ProxyConfig> = {}): Promise<Proxy> {
  const proxy = await startProxy(url, overrides);
  onTestFinished(proxy.close);
  return proxy;
}

/** `count` requests one after another, each sent `gapMs` after the previous answer; resolves with the statuses. */
async function spaced(proxy: Proxy, method: string, count: number, gapMs: number, tag: string): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < count; i++) {
    if (i > 0) await delay(gapMs);
    const res = await httpRequest(`${proxy.url}/api/${tag}/${i}`, method === 'POST' ? { method, body: `body ${tag} ${i}` } : { method });
    statuses.push(res.status);
  }
  return statuses;
}

describe('the pool metrics', () => {
  it('exist from start-up in the standard family: the pending gauge, and retries for the six methods that can be retried', async () => {
    const closing = await startClosingUpstream(1_000);
    const text = await (await proxyTo(closing.upstream.url)).metrics();
    expect(sampleValue(text, 'metrics_proxy_upstream_pending_requests')).toBe(0);
    for (const method of ['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']) {
      expect(sampleValue(text, 'metrics_proxy_upstream_retries_total', { http_request_method: method }), method).toBe(0);
    }
    expect(text).not.toMatch(/metrics_proxy_upstream_retries_total\{http_request_method="(POST|PATCH)"\}/);
    const seedOnly = await (await proxyTo(closing.upstream.url, { metricFamilies: ['seed'] })).metrics();
    expect(seedOnly).not.toContain('metrics_proxy_upstream_');
  });
});

describe('upstream connection reuse', () => {
  it('never answers 502 to a GET when the upstream closes idle connections without saying so (one retry, fresh connection)', async () => {
    const idleMs = 100;
    const closing = await startClosingUpstream(idleMs);
    const proxy = await proxyTo(closing.upstream.url);
    // Four clients, each sending its next GET just after the upstream's idle timeout: the proxy
    // (which keeps idle connections 4 s) reuses connections the upstream is closing.
    const statuses = (await Promise.all([0, 1, 2, 3].map((c) => spaced(proxy, 'GET', 15, idleMs + 10, `get-${c}`)))).flat();
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect(closing.dropped()).toBeGreaterThan(0);
    const text = await proxy.metrics();
    expect(sampleValue(text, 'metrics_proxy_upstream_retries_total', { http_request_method: 'GET' })).toBe(closing.dropped());
    expect(sampleValue(text, 'apiErrorCount', { type: 'api' })).toBe(0);
    expect(sampleValue(text, 'apiCount', { method: 'GET' })).toBe(60);
    // every GET reached the upstream once, or twice when its first connection was closed under it
    expect(closing.arrived).toHaveLength(60 + closing.dropped());
  });

  it('never sends a POST twice: one closed under it fails with 502, and is not retried', async () => {
    const idleMs = 100;
    const closing = await startClosingUpstream(idleMs);
    const proxy = await proxyTo(closing.upstream.url);
    const statuses = await spaced(proxy, 'POST', 12, idleMs + 10, 'post');
    const posts = closing.arrived.filter((line) => line.startsWith('POST '));
    expect(new Set(posts).size).toBe(posts.length);
    expect(closing.dropped()).toBeGreaterThan(0);
    expect(statuses.filter((s) => s === 502)).toHaveLength(closing.dropped());
    const text = await proxy.metrics();
    expect(sampleValue(text, 'metrics_proxy_upstream_retries_total', { http_request_method: 'POST' })).toBeUndefined();
    expect(sampleValue(text, 'metrics_proxy_upstream_errors_total', { error_type: 'reset' })).toBe(closing.dropped());
  });

  it('honours the Keep-Alive: timeout= hint: connections close before the upstream closes them, no retry needed', async () => {
    const closing = await startClosingUpstream(2_000, 2);
    // Without the hint the proxy would keep idle connections for 10 s here and reuse them after 2.1 s.
    const proxy = await proxyTo(closing.upstream.url, { upstreamKeepAliveTimeoutMs: 10_000 });
    const round = (n: number) => Promise.all([0, 1, 2, 3].map((c) => httpRequest(`${proxy.url}/api/round-${n}/${c}`)));
    expect((await round(1)).map((r) => r.status)).toEqual([200, 200, 200, 200]);
    await delay(2_100);
    expect((await round(2)).map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect(closing.dropped()).toBe(0);
    expect(sampleValue(await proxy.metrics(), 'metrics_proxy_upstream_retries_total', { http_request_method: 'GET' })).toBe(0);
  });

  it('closes idle connections after --upstream-keep-alive-timeout when there is no hint', async () => {
    const closing = await startClosingUpstream(600);
    const proxy = await proxyTo(closing.upstream.url, { upstreamKeepAliveTimeoutMs: 300 });
    expect((await httpRequest(`${proxy.url}/api/a`)).status).toBe(200);
    await delay(450);
    expect((await httpRequest(`${proxy.url}/api/b`)).status).toBe(200);
    // the second request went on a new connection: the proxy had closed the first one itself
    expect(closing.dropped()).toBe(0);
    expect(new Set(closing.upstream.seen.map((r) => r.socket)).size).toBe(2);
    expect(sampleValue(await proxy.metrics(), 'metrics_proxy_upstream_retries_total', { http_request_method: 'GET' })).toBe(0);
  });
});

/** An upstream that holds every request until `release()`; `open()` is how many it holds right now. */
async function startHoldingUpstream() {
  const held: Array<() => void> = [];
  let open = 0;
  let peak = 0;
  const upstream = await startUpstream((req, res) => {
    open++;
    peak = Math.max(peak, open);
    res.on('close', () => open--);
    if (req.url?.startsWith('/api/hang') === true) return;
    held.push(() => res.end('done'));
  });
  onTestFinished(upstream.close);
  return {
    upstream,
    open: () => open,
    peak: () => peak,
    held: () => held.length,
    release: () => held.splice(0).forEach((answer) => answer()),
  };
}

describe('a bounded upstream pool', () => {
  it('opens at most --upstream-max-connections; the others wait, shown in metrics_proxy_upstream_pending_requests', async () => {
    const holding = await startHoldingUpstream();
    const proxy = await proxyTo(holding.upstream.url, { upstreamMaxConnections: 2 });
    const answers = Promise.all([0, 1, 2, 3, 4].map((i) => httpRequest(`${proxy.url}/api/held/${i}`)));
    await until(() => holding.held() === 2, 'two requests at the upstream');
    const pending = await settle(
      async () => sampleValue(await proxy.metrics(), 'metrics_proxy_upstream_pending_requests'),
      (value) => value === 3,
    );
    expect(pending).toBe(3);
    expect(holding.open()).toBe(2);
    while ((await Promise.race([answers.then(() => 'done'), delay(20).then(() => 'waiting')])) === 'waiting') holding.release();
    expect((await answers).map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(holding.peak()).toBe(2);
    expect(new Set(holding.upstream.seen.map((r) => r.socket)).size).toBeLessThanOrEqual(2);
    expect(sampleValue(await proxy.metrics(), 'metrics_proxy_upstream_pending_requests')).toBe(0);
  });

  it('bounds the wait for a connection by the response timeout, counted from arrival', async () => {
    const holding = await startHoldingUpstream();
    const proxy = await proxyTo(holding.upstream.url, { upstreamMaxConnections: 1, upstreamTimeoutMs: 300 });
    const started = performance.now();
    const timed = (i: number) => httpRequest(`${proxy.url}/api/hang/${i}`).then((res) => ({ res, ms: performance.now() - started }));
    const answers = await Promise.all([0, 1, 2].map(timed));
    for (const { res, ms } of answers) {
      expect(res.status).toBe(504);
      expect(JSON.parse(res.body.toString())).toEqual({ ok: false, msg: 'upstream response timed out' });
      // one after another on the one connection would take 900 ms and more
      expect(ms).toBeLessThan(750);
    }
    expect(holding.peak()).toBe(1);
    const text = await settle(proxy.metrics, (t) => sampleValue(t, 'metrics_proxy_upstream_pending_requests') === 0);
    expect(sampleValue(text, 'metrics_proxy_upstream_pending_requests')).toBe(0);
    expect(sampleValue(text, 'metrics_proxy_upstream_errors_total', { error_type: 'response_timeout' })).toBe(3);
  });

  it('drops a waiting request whose client leaves: 499, and the upstream never sees it', async () => {
    const holding = await startHoldingUpstream();
    const proxy = await proxyTo(holding.upstream.url, { upstreamMaxConnections: 1 });
    const first = httpRequest(`${proxy.url}/api/held/first`);
    await until(() => holding.held() === 1, 'the first request at the upstream');
    const leaving = request(`${proxy.url}/api/held/leaving`, { agent: false });
    leaving.on('error', () => {});
    leaving.end();
    await settle(
      async () => sampleValue(await proxy.metrics(), 'metrics_proxy_upstream_pending_requests'),
      (value) => value === 1,
    );
    leaving.destroy();
    await settle(
      async () => sampleValue(await proxy.metrics(), 'http_server_request_duration_seconds_count', {
        http_request_method: 'GET',
        http_response_status_code: '499',
        http_route: '/api/held/leaving',
        error_type: '',
        network_protocol_version: '1.1',
      }),
      (value) => value === 1,
    );
    holding.release();
    expect((await first).status).toBe(200);
    const after = httpRequest(`${proxy.url}/api/held/after`);
    await until(() => holding.held() === 1, 'the next request at the upstream');
    holding.release();
    expect((await after).status).toBe(200);
    expect(holding.upstream.seen.map((r) => r.url)).toEqual(['/api/held/first', '/api/held/after']);
  });
});
