/**
 * HTTP/1.1 requests that offer an upgrade the proxy does not make: `Upgrade: h2c` as Java's
 * java.net.http.HttpClient and `curl --http2` send it, or any other token. The proxy answers them over
 * HTTP/1.1 like any request (never 101, never 400), keeps the upgrade offer from the upstream, and the
 * connection goes on: a second request, a pipelined one, a request body. Node before 24.9 hands every
 * such request to the 'upgrade' listener with the HTTP parser detached, so each case runs on both
 * Node versions in CI. WebSocket upgrades still go through.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { type Socket, connect } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { echoHandler, parseExposition, settle, wsSession } from './helpers.js';
import { type Http1Answer, parseHttp1Answers, proxyTo, upstreamWith } from './h2-peers.js';
import { startWsUpstream } from './ws-peers.js';

/** Exactly what Java's HttpClient (HTTP_2 by default) sends for a GET to an http:// URL. */
const JAVA_UPGRADE = 'Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nUpgrade: h2c\r\nUser-Agent: Java-http-client/21\r\n';
/** What curl --http2 sends on http://. */
const CURL_UPGRADE = 'Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nUser-Agent: curl/7.88.1\r\n';
const FOO_UPGRADE = 'Connection: upgrade\r\nUpgrade: foo\r\n';

/** The upstream saw no trace of the upgrade offer. */
function expectNoUpgradeOffer(headers: IncomingHttpHeaders | undefined): void {
  expect(headers).toBeDefined();
  expect(headers?.upgrade).toBeUndefined();
  expect(headers?.['http2-settings']).toBeUndefined();
  expect(headers?.connection ?? '').not.toMatch(/upgrade|http2-settings/i);
}

/**
 * A client connection that sends what it is told and reads answers as they come: `next(n)` resolves
 * once `n` complete answers arrived in all (or rejects when the proxy closes first).
 */
async function rawConnection(port: number): Promise<{ socket: Socket; send(text: string | Buffer): void; answers(n: number): Promise<Http1Answer[]>; closed: Promise<void> }> {
  const socket = connect(port, '127.0.0.1');
  onTestFinished(() => {
    socket.destroy();
  });
  let bytes = Buffer.alloc(0);
  const wakers = new Set<() => void>();
  let ended = false;
  socket.on('data', (c: Buffer) => {
    bytes = Buffer.concat([bytes, c]);
    for (const wake of wakers) wake();
  });
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) =>
    socket.once('close', () => {
      ended = true;
      for (const wake of wakers) wake();
      resolve();
    }),
  );
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const complete = (): Http1Answer[] | undefined => {
    try {
      return parseHttp1Answers(bytes);
    } catch {
      return undefined; // an answer still arriving
    }
  };
  return {
    socket,
    closed,
    send: (text) => socket.write(text),
    answers: (n) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => done(new Error(`fewer than ${n} answers within 5 s: ${bytes.toString('latin1')}`)), 5_000);
        const done = (err?: Error): void => {
          clearTimeout(timer);
          wakers.delete(check);
          if (err === undefined) resolve(complete() ?? []);
          else reject(err);
        };
        const check = (): void => {
          if ((complete()?.length ?? 0) >= n) done();
          else if (ended) done(new Error(`connection closed after ${complete()?.length ?? 0} of ${n} answers: ${bytes.toString('latin1')}`));
        };
        wakers.add(check);
        check();
      }),
  };
}

describe('upgrade offers the proxy does not take', () => {
  it.each([
    ['h2c as Java’s HttpClient sends it', JAVA_UPGRADE],
    ['h2c as curl --http2 sends it', CURL_UPGRADE],
    ['an unknown protocol', FOO_UPGRADE],
  ])('answers a GET offering %s over HTTP/1.1 and forwards it without the offer', async (_what, offer) => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url);
    const conn = await rawConnection(proxy.port);
    conn.send(`GET /api/upgrade-offer?q=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n${offer}\r\n`);
    const [answer] = await conn.answers(1);
    expect(answer?.status).toBe(200);
    expect(answer?.headers['x-echo-url']).toBe('/api/upgrade-offer?q=1');
    expect(answer?.headers.upgrade).toBeUndefined();
    expect(upstream.seen).toHaveLength(1);
    expectNoUpgradeOffer(upstream.seen[0]?.headers);
  });

  it.each([
    ['h2c (Java)', JAVA_UPGRADE],
    ['foo', FOO_UPGRADE],
  ])('keeps the connection for a second request after an offer of %s', async (_what, offer) => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url);
    const conn = await rawConnection(proxy.port);
    conn.send(`GET /api/first HTTP/1.1\r\nHost: 127.0.0.1\r\n${offer}\r\n`);
    await conn.answers(1);
    conn.send('GET /api/second HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    const answers = await conn.answers(2);
    expect(answers.map((a) => [a.status, a.headers['x-echo-url']])).toEqual([
      [200, '/api/first'],
      [200, '/api/second'],
    ]);
    expect(upstream.seen.map((r) => r.url)).toEqual(['/api/first', '/api/second']);
  });

  it('answers a request pipelined behind an h2c offer in the same TCP write, in order', async () => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url);
    const conn = await rawConnection(proxy.port);
    conn.send(
      `GET /api/offer HTTP/1.1\r\nHost: 127.0.0.1\r\n${JAVA_UPGRADE}\r\n` +
        'GET /api/pipelined HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' +
        'GET /api/third HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n',
    );
    const answers = await conn.answers(3);
    expect(answers.map((a) => [a.status, a.headers['x-echo-url']])).toEqual([
      [200, '/api/offer'],
      [200, '/api/pipelined'],
      [200, '/api/third'],
    ]);
    expect(upstream.seen.map((r) => r.url)).toEqual(['/api/offer', '/api/pipelined', '/api/third']);
    for (const req of upstream.seen) expectNoUpgradeOffer(req.headers);
  });

  it.each([
    ['a plain request', ''],
    ['another h2c offer', JAVA_UPGRADE],
  ])('answers an h2c offer pipelined behind %s whose answer is still on its way, in order', async (_what, firstOffer) => {
    const upstream = await upstreamWith((req, res) => {
      // The first answer takes a while, so the offer behind it is read while that answer is pending.
      if (req.url === '/api/slow') setTimeout(() => echoHandler(req, res), 200);
      else echoHandler(req, res);
    });
    const proxy = await proxyTo(upstream.url);
    const conn = await rawConnection(proxy.port);
    conn.send(
      `GET /api/slow HTTP/1.1\r\nHost: 127.0.0.1\r\n${firstOffer}\r\n` +
        `GET /api/offer HTTP/1.1\r\nHost: 127.0.0.1\r\n${JAVA_UPGRADE}\r\n` +
        'GET /api/last HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n',
    );
    const answers = await conn.answers(3);
    expect(answers.map((a) => [a.status, a.headers['x-echo-url']])).toEqual([
      [200, '/api/slow'],
      [200, '/api/offer'],
      [200, '/api/last'],
    ]);
  });

  it.each([
    ['Content-Length', (body: string) => `Content-Length: ${body.length}\r\n\r\n${body}`],
    ['chunked', (body: string) => `Transfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`],
  ])('forwards the %s body of a POST offering h2c intact, then serves the next request', async (_framing, frame) => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url);
    const conn = await rawConnection(proxy.port);
    const body = randomBytes(48 * 1024).toString('base64');
    conn.send(`POST /api/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n${JAVA_UPGRADE}${frame(body)}`);
    conn.send('GET /api/after-body HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    const answers = await conn.answers(2);
    expect(answers[0]?.status).toBe(200);
    expect(answers[0]?.body.toString()).toBe(body);
    expect(answers[1]?.headers['x-echo-url']).toBe('/api/after-body');
    expect(upstream.seen.map((r) => r.method)).toEqual(['POST', 'GET']);
    expectNoUpgradeOffer(upstream.seen[0]?.headers);
  });

  it('answers an h2c offer on its own paths and outside the prefix itself, as without the offer', async () => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url);
    const conn = await rawConnection(proxy.port);
    // One at a time: pipelining behind a pending answer has a test of its own.
    conn.send(`GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n${JAVA_UPGRADE}\r\n`);
    await conn.answers(1);
    conn.send(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n${CURL_UPGRADE}\r\n`);
    await conn.answers(2);
    conn.send(`GET /elsewhere HTTP/1.1\r\nHost: 127.0.0.1\r\n${FOO_UPGRADE}\r\n`);
    const answers = await conn.answers(3);
    expect(answers.map((a) => a.status)).toEqual([200, 200, 404]);
    expect(answers[0]?.body.toString()).toContain('apiCount');
    expect(upstream.seen).toHaveLength(0);
  });

  it('answers an h2c offer to /metrics on the admin port (a Java scraper) over HTTP/1.1', async () => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url, { metricsPort: 0 });
    const conn = await rawConnection(Number(new URL(proxy.adminUrl as string).port));
    conn.send(`GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n${JAVA_UPGRADE}\r\n`);
    await conn.answers(1);
    conn.send(`GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n${JAVA_UPGRADE}\r\n`);
    const answers = await conn.answers(2);
    expect(answers.map((a) => a.status)).toEqual([200, 200]);
    expect(answers[0]?.body.toString()).toContain('apiCount');
  });

  it('counts a forwarded request that offered h2c once, as HTTP/1.1', async () => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url);
    const conn = await rawConnection(proxy.port);
    conn.send(`GET /api/counted HTTP/1.1\r\nHost: 127.0.0.1\r\n${JAVA_UPGRADE}\r\n`);
    await conn.answers(1);
    const text = await settle(proxy.metrics, (t) => parseExposition(t).some((s) => s.name === 'apiCount' && s.value > 0));
    const samples = parseExposition(text);
    expect(samples.find((s) => s.name === 'apiCount' && s.labels.method === 'GET')?.value).toBe(1);
    const byVersion = samples.filter((s) => s.name === 'http_server_request_duration_seconds_count' && s.value > 0);
    expect(byVersion.map((s) => s.labels.network_protocol_version)).toEqual(['1.1']);
  });
});

describe('WebSocket upgrades alongside', () => {
  it('still proxies a WebSocket session, and an h2c offer on the next connection is still answered normally', async () => {
    const upstream = await startWsUpstream((ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
    const proxy = await proxyTo(upstream.url);
    await wsSession(proxy, 3);
    const conn = await rawConnection(proxy.port);
    conn.send(`GET /api/after-ws HTTP/1.1\r\nHost: 127.0.0.1\r\n${JAVA_UPGRADE}\r\n`);
    const [answer] = await conn.answers(1);
    // The upstream's own answer to a plain GET: the offer was forwarded as an ordinary request.
    expect(answer?.status).toBe(426);
  });
});
