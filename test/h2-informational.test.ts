/**
 * Interim (1xx) responses from an HTTP/2 upstream (`upstreamProtocol: 'http2'`), sent by a real
 * node:http2 server with `stream.additionalHeaders` (or frame by frame where the test needs exact
 * frames): a 103 Early Hints goes on to the client as from an HTTP/1.1 upstream (test/informational.test.ts),
 * through the same header policy, as a 103 to an HTTP/1.1 client, as an interim HEADERS frame to an
 * HTTP/2 one, not at all to an HTTP/1.0 one; a 100 or 102 is dropped; the final response is relayed
 * and counted once, as its own status.
 */
import { type IncomingHttpHeaders, request } from 'node:http';
import { type OutgoingHttpHeaders, type ServerHttp2Stream, constants } from 'node:http2';
import { describe, expect, it } from 'vitest';
import { type Proxy, rawExchange, settle, total } from './helpers.js';
import {
  FRAME,
  collectResponse,
  h2Session,
  headersFrames,
  parseHttp1Answers,
  proxyTo as startProxyTo,
  rstStreamFrame,
  startH2Upstream,
  startRawH2Upstream,
} from './h2-peers.js';

const HINT = { ':status': 103, link: '</a.css>; rel=preload' } as const;
const SERVER_DURATION = 'http_server_request_duration_seconds_count';
const CLIENT_DURATION = 'http_client_request_duration_seconds_count';

/** Sends each interim head of `interim`, then a 200 with `hello`. */
function answer(stream: ServerHttp2Stream, interim: readonly OutgoingHttpHeaders[]): void {
  for (const head of interim) stream.additionalHeaders(head);
  stream.respond({ ':status': 200, 'content-type': 'text/plain' });
  stream.end('hello');
}

/** An HTTP/2 upstream answering each path with its interim heads, then 200 `hello`; a proxy in front of it over HTTP/2. */
async function proxyToH2(interimByPath: Readonly<Record<string, readonly OutgoingHttpHeaders[]>>): Promise<Proxy> {
  const upstream = await startH2Upstream((stream, headers) => answer(stream, interimByPath[String(headers[':path'])] ?? []));
  return startProxyTo(upstream.url, { upstreamProtocol: 'http2' });
}

interface Observed {
  readonly interim: Array<{ status: number; headers: IncomingHttpHeaders }>;
  readonly status: number;
  readonly body: string;
}

/** A GET with node:http, recording its 'information' events (Node's client reports every 1xx there). */
function observe(url: string): Promise<Observed> {
  return new Promise((resolve, reject) => {
    const interim: Observed['interim'] = [];
    const req = request(url, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ interim, status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    req.on('information', (info) => interim.push({ status: info.statusCode, headers: info.headers }));
    req.on('error', reject);
    req.end();
  });
}

/** One GET on the proxy's HTTP/2 side: the interim heads it got (node:http2's 'headers'), then the response. */
async function observeH2(proxy: Proxy, path: string): Promise<{ interim: IncomingHttpHeaders[]; status: number; body: string }> {
  const session = await h2Session(proxy.url);
  const stream = session.request({ ':path': path });
  const interim: IncomingHttpHeaders[] = [];
  stream.on('headers', (headers) => interim.push(headers));
  const response = await collectResponse(stream);
  return { interim, status: response.status, body: response.body.toString() };
}

/** The one request counted, as a 200 both sides of the proxy (the upstream leg over HTTP/2), and no error. */
async function expectOne200Counted(proxy: Proxy): Promise<void> {
  const text = await settle(proxy.metrics, (t) => total(t, SERVER_DURATION) >= 1 && total(t, CLIENT_DURATION) >= 1);
  expect(total(text, 'apiCount')).toBe(1);
  expect(total(text, 'apiCount', { method: 'GET' })).toBe(1);
  expect(total(text, SERVER_DURATION)).toBe(1);
  expect(total(text, SERVER_DURATION, { http_response_status_code: '200', error_type: '' })).toBe(1);
  expect(total(text, CLIENT_DURATION)).toBe(1);
  expect(total(text, CLIENT_DURATION, { http_response_status_code: '200', network_protocol_version: '2' })).toBe(1);
  expect(total(text, 'apiErrorCount', { type: 'api' })).toBe(0);
  expect(total(text, 'metrics_proxy_upstream_errors_total')).toBe(0);
}

describe('a 103 Early Hints from an HTTP/2 upstream', () => {
  it('goes on to an HTTP/1.1 client with its Link, then the 200 and its body; one request counted, as a 200', async () => {
    const proxy = await proxyToH2({ '/api/page': [HINT] });
    const seen = await observe(`${proxy.url}/api/page`);
    expect(seen).toEqual({ interim: [{ status: 103, headers: { link: '</a.css>; rel=preload' } }], status: 200, body: 'hello' });
    await expectOne200Counted(proxy);
  });

  it('goes on to an HTTP/2 client as an interim HEADERS frame', async () => {
    const proxy = await proxyToH2({ '/api/page': [HINT] });
    const seen = await observeH2(proxy, '/api/page');
    expect(seen.interim.map((h) => [h[':status'], h.link])).toEqual([[103, '</a.css>; rel=preload']]);
    expect([seen.status, seen.body]).toEqual([200, 'hello']);
    await expectOne200Counted(proxy);
  });

  // A 103 with Content-Length never gets this far: nghttp2 resets the stream (RFC 9110 §8.6 forbids it in a 1xx).
  it('passes the header policy of an HTTP/1.1 upstream\'s 103: link-values split, end-to-end fields kept, Proxy-Authenticate not', async () => {
    const hints = {
      ':status': 103,
      link: ['</a.css>; rel=preload; as=style, </b.js>; rel=preload; as=script', '<https://cdn.example/c.woff2>; rel=preconnect'],
      'x-hint': 'kept',
      'proxy-authenticate': 'Basic',
    };
    const proxy = await proxyToH2({ '/api/page': [hints] });
    const bytes = await rawExchange(proxy.port, 'GET /api/page HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    const answers = parseHttp1Answers(Buffer.from(bytes, 'latin1'));
    expect(answers.map((a) => a.status)).toEqual([103, 200]);
    expect(answers[0]?.headers).toEqual({
      link: '</a.css>; rel=preload; as=style, </b.js>; rel=preload; as=script, <https://cdn.example/c.woff2>; rel=preconnect',
      'x-hint': 'kept',
    });
    expect(answers[1]?.body.toString()).toBe('hello');
  });

  it('each of several goes on, in order, before the final response', async () => {
    const proxy = await proxyToH2({ '/api/page': [HINT, { ':status': 103, link: '</app.js>; rel=preload; as=script' }] });
    const seen = await observe(`${proxy.url}/api/page`);
    expect(seen.interim.map((i) => [i.status, i.headers.link])).toEqual([
      [103, '</a.css>; rel=preload'],
      [103, '</app.js>; rel=preload; as=script'],
    ]);
    expect([seen.status, seen.body]).toEqual([200, 'hello']);
    await expectOne200Counted(proxy);
  });

  it('is not sent to an HTTP/1.0 client, which knows no 1xx', async () => {
    const proxy = await proxyToH2({ '/api/page': [HINT] });
    const answers = parseHttp1Answers(Buffer.from(await rawExchange(proxy.port, 'GET /api/page HTTP/1.0\r\nhost: x\r\n\r\n'), 'latin1'));
    expect(answers.map((a) => [a.status, a.body.toString()])).toEqual([[200, 'hello']]);
  });

  it.each([
    ['INTERNAL_ERROR', constants.NGHTTP2_INTERNAL_ERROR],
    ['REFUSED_STREAM', constants.NGHTTP2_REFUSED_STREAM],
  ])('then a reset (%s): the client gets the 103, then 502; the request is not sent again', async (_name, code) => {
    const upstream = await startRawH2Upstream((req, connection) => {
      connection.send(Buffer.concat([headersFrames(req.streamId, [[':status', '103'], ['link', '</a.css>; rel=preload']], { endStream: false }), rstStreamFrame(req.streamId, code)]));
    });
    const proxy = await startProxyTo(upstream.url, { upstreamProtocol: 'http2' });
    const seen = await observe(`${proxy.url}/api/page`);
    expect([seen.interim.map((i) => i.status), seen.status]).toEqual([[103], 502]);
    // A 103 says the upstream took the request up: REFUSED_STREAM after it is no licence to send it twice.
    expect(upstream.frames.filter((f) => f.type === FRAME.HEADERS).length).toBe(1);
  });
});

describe('another 1xx from an HTTP/2 upstream', () => {
  it.each([
    ['100 Continue', 100],
    ['102 Processing', 102],
  ])('%s before the response to a GET is dropped: the 200 and its exact body, to both protocols, counted as a 200', async (_name, status) => {
    const proxy = await proxyToH2({ '/api/get': [{ ':status': status }] });
    expect(await observe(`${proxy.url}/api/get`)).toEqual({ interim: [], status: 200, body: 'hello' });
    await expectOne200Counted(proxy);
    expect(await observeH2(proxy, '/api/get')).toEqual({ interim: [], status: 200, body: 'hello' });
  });

  it('a 100 before a 103: the 100 dropped, the 103 goes on', async () => {
    const proxy = await proxyToH2({ '/api/hints': [{ ':status': 100 }, HINT] });
    const seen = await observe(`${proxy.url}/api/hints`);
    expect(seen).toEqual({ interim: [{ status: 103, headers: { link: '</a.css>; rel=preload' } }], status: 200, body: 'hello' });
    await expectOne200Counted(proxy);
  });
});
