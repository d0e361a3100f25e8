/**
 * Interim (1xx) responses from an HTTP/1.1 upstream, written byte by byte by a raw-socket upstream:
 * a 103 Early Hints goes on to the client (HTTP/1.1 as a 103, HTTP/2 as an interim HEADERS frame,
 * nothing to an HTTP/1.0 client) with its end-to-end fields; a 100 Continue nobody asked for is
 * skipped, and the final response relayed as usual, with no error counted; a 101 outside an
 * upgrade stays an upstream protocol error.
 */
import { type IncomingHttpHeaders, request } from 'node:http';
import { type Socket, createServer as createNetServer } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { type Proxy, rawExchange, startProxy, startServer, total } from './helpers.js';
import { h2Session, parseHttp1Answers } from './h2-peers.js';

const EARLY_HINTS = 'HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n';
const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n';
const OK = 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nhello';

/** Resets the upstream's connection (TCP RST), in place of what it would write next. */
const RESET = Symbol('reset');
/** What the upstream writes for a path: each string in turn, 20 ms apart. */
type Script = ReadonlyArray<string | typeof RESET>;

interface RawUpstream {
  readonly url: string;
  readonly connections: () => number;
  /** The request paths, in arrival order. */
  readonly requests: string[];
}

/** An upstream that answers each request (head, then Content-Length bytes of body) with its path's script. */
async function rawUpstream(scripts: Readonly<Record<string, Script>>): Promise<RawUpstream> {
  let connections = 0;
  const requests: string[] = [];
  const server = createNetServer((socket) => {
    connections++;
    socket.on('error', () => {});
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buffered.subarray(0, end).toString('latin1');
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (buffered.length < end + 4 + length) return;
        buffered = buffered.subarray(end + 4 + length);
        const path = head.split(' ')[1] ?? '';
        requests.push(path);
        play(socket, scripts[path] ?? ['HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n']);
      }
    });
  });
  const running = await startServer(server);
  onTestFinished(running.close);
  return { url: running.url, connections: () => connections, requests };
}

function play(socket: Socket, script: Script): void {
  const [first, ...rest] = script;
  if (first === undefined || socket.destroyed) return;
  if (first === RESET) {
    socket.resetAndDestroy();
    return;
  }
  socket.write(first);
  if (rest.length > 0) setTimeout(play, 20, socket, rest);
}

async function proxyTo(url: string): Promise<Proxy> {
  const proxy = await startProxy(url);
  onTestFinished(proxy.close);
  return proxy;
}

interface Observed {
  readonly interim: Array<{ status: number; headers: IncomingHttpHeaders }>;
  readonly status: number;
  readonly body: string;
}

/** A request with node:http, recording its 'information' events (Node's client reports every 1xx there). */
function observe(url: string, headers: Record<string, string> = {}, body?: string): Promise<Observed> {
  return new Promise((resolve, reject) => {
    const interim: Observed['interim'] = [];
    const req = request(url, { method: body === undefined ? 'GET' : 'POST', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ interim, status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    req.on('information', (info) => interim.push({ status: info.statusCode, headers: info.headers }));
    req.on('error', reject);
    req.end(body);
  });
}

async function expectNoErrorCounted(proxy: Proxy): Promise<void> {
  const text = await proxy.metrics();
  expect(total(text, 'apiErrorCount', { type: 'api' })).toBe(0);
  expect(total(text, 'metrics_proxy_upstream_errors_total')).toBe(0);
}

describe('103 Early Hints', () => {
  it('goes on to an HTTP/1.1 client with its Link, then the final response and its body', async () => {
    const upstream = await rawUpstream({ '/api/page': [EARLY_HINTS, OK] });
    const proxy = await proxyTo(upstream.url);
    const seen = await observe(`${proxy.url}/api/page`);
    expect(seen.interim).toEqual([{ status: 103, headers: { link: '</style.css>; rel=preload' } }]);
    expect([seen.status, seen.body]).toEqual([200, 'hello']);
    await expectNoErrorCounted(proxy);
  });

  it('carries its end-to-end fields, not the hop-by-hop ones nor Content-Length; several link-values in one field go on', async () => {
    const hints = [
      'HTTP/1.1 103 Early Hints',
      'Link: </a.css>; rel=preload; as=style, </b.js>; rel=preload; as=script',
      'Link: <https://cdn.example/c.woff2>; rel=preconnect',
      'X-Hint: kept',
      'Connection: x-hop',
      'X-Hop: dropped',
      'Keep-Alive: timeout=5',
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n');
    const upstream = await rawUpstream({ '/api/page': [hints, OK] });
    const proxy = await proxyTo(upstream.url);
    const answers = parseHttp1Answers(Buffer.from(await rawExchange(proxy.port, 'GET /api/page HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'), 'latin1'));
    expect(answers.map((a) => a.status)).toEqual([103, 200]);
    expect(answers[0]?.headers).toEqual({
      link: '</a.css>; rel=preload; as=style, </b.js>; rel=preload; as=script, <https://cdn.example/c.woff2>; rel=preconnect',
      'x-hint': 'kept',
    });
    expect(answers[1]?.body.toString()).toBe('hello');
  });

  it('each of several 103s goes on, in order, and the final response after them (one write, or a tick apart)', async () => {
    const second = 'HTTP/1.1 103 Early Hints\r\nLink: </app.js>; rel=preload; as=script\r\n\r\n';
    const upstream = await rawUpstream({ '/api/apart': [EARLY_HINTS, second, OK], '/api/together': [EARLY_HINTS + second + OK] });
    const proxy = await proxyTo(upstream.url);
    for (const path of ['/api/apart', '/api/together']) {
      const seen = await observe(`${proxy.url}${path}`);
      expect(seen.interim.map((i) => [i.status, i.headers.link])).toEqual([
        [103, '</style.css>; rel=preload'],
        [103, '</app.js>; rel=preload; as=script'],
      ]);
      expect([seen.status, seen.body]).toEqual([200, 'hello']);
    }
    await expectNoErrorCounted(proxy);
  });

  it('goes to an HTTP/2 client as an interim HEADERS frame', async () => {
    const upstream = await rawUpstream({ '/api/page': [EARLY_HINTS, OK] });
    const proxy = await proxyTo(upstream.url);
    const session = await h2Session(proxy.url);
    const stream = session.request({ ':path': '/api/page' });
    const interim: IncomingHttpHeaders[] = [];
    stream.on('headers', (headers) => interim.push(headers));
    const final = await new Promise<IncomingHttpHeaders>((resolve) => stream.once('response', resolve));
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    expect(interim.map((h) => [h[':status'], h.link])).toEqual([[103, '</style.css>; rel=preload']]);
    expect([final[':status'], Buffer.concat(chunks).toString()]).toEqual([200, 'hello']);
  });

  it('is not sent to an HTTP/1.0 client, which knows no 1xx', async () => {
    const upstream = await rawUpstream({ '/api/page': [EARLY_HINTS, OK] });
    const proxy = await proxyTo(upstream.url);
    const answers = parseHttp1Answers(Buffer.from(await rawExchange(proxy.port, 'GET /api/page HTTP/1.0\r\nhost: x\r\n\r\n'), 'latin1'));
    expect(answers.map((a) => [a.status, a.body.toString()])).toEqual([[200, 'hello']]);
  });

  it('then an upstream reset: the client gets the 103, then 502 as it would without it', async () => {
    const upstream = await rawUpstream({ '/api/page': [EARLY_HINTS, RESET] });
    const proxy = await proxyTo(upstream.url);
    const seen = await observe(`${proxy.url}/api/page`);
    expect(seen.interim.map((i) => i.status)).toEqual([103]);
    expect(seen.status).toBe(502);
    expect(JSON.parse(seen.body)).toEqual({ ok: false, msg: 'upstream closed the connection' });
    expect(total(await proxy.metrics(), 'metrics_proxy_upstream_errors_total', { error_type: 'reset' })).toBe(1);
  });
  it('does not stop --upstream-timeout: a 103 and then silence gets the 103, then 504', async () => {
    const upstream = await rawUpstream({ '/api/page': [EARLY_HINTS] });
    const proxy = await startProxy(upstream.url, { upstreamTimeoutMs: 300 });
    onTestFinished(proxy.close);
    const seen = await observe(`${proxy.url}/api/page`);
    expect(seen.interim.map((i) => i.status)).toEqual([103]);
    expect(seen.status).toBe(504);
    expect(total(await proxy.metrics(), 'metrics_proxy_upstream_errors_total', { error_type: 'response_timeout' })).toBe(1);
  });
});

describe('a 100 Continue the proxy never asked for', () => {
  it('before the response to a GET is skipped: 200, no error counted, the connection kept', async () => {
    const upstream = await rawUpstream({ '/api/get': [CONTINUE, OK], '/api/next': [OK] });
    const proxy = await proxyTo(upstream.url);
    const seen = await observe(`${proxy.url}/api/get`);
    expect(seen).toEqual({ interim: [], status: 200, body: 'hello' });
    expect((await observe(`${proxy.url}/api/next`)).status).toBe(200);
    expect(upstream.connections()).toBe(1);
    await expectNoErrorCounted(proxy);
  });

  it('in the same write as the response, or before a 103: skipped, and the 103 goes on', async () => {
    const upstream = await rawUpstream({ '/api/together': [CONTINUE + OK], '/api/hints': [CONTINUE, EARLY_HINTS, OK] });
    const proxy = await proxyTo(upstream.url);
    expect(await observe(`${proxy.url}/api/together`)).toEqual({ interim: [], status: 200, body: 'hello' });
    const seen = await observe(`${proxy.url}/api/hints`);
    expect([seen.interim.map((i) => i.status), seen.status, seen.body]).toEqual([[103], 200, 'hello']);
    await expectNoErrorCounted(proxy);
  });

  it('with Expect: 100-continue from the client: the client gets the one 100 Node sends it, not a second', async () => {
    const upstream = await rawUpstream({ '/api/upload': [CONTINUE, OK] });
    const proxy = await proxyTo(upstream.url);
    const answers = parseHttp1Answers(
      Buffer.from(
        await rawExchange(proxy.port, 'PUT /api/upload HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbody'),
        'latin1',
      ),
    );
    expect(answers.map((a) => a.status)).toEqual([100, 200]);
    expect(upstream.requests).toEqual(['/api/upload']);
    await expectNoErrorCounted(proxy);
  });
});

describe('a 101 Switching Protocols to a request that asked for no upgrade', () => {
  it.each([
    ['with Upgrade and Connection: upgrade', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n'],
    ['without them', 'HTTP/1.1 101 Switching Protocols\r\n\r\n'],
  ])('%s is an upstream protocol error: 502', async (_name, switching) => {
    const upstream = await rawUpstream({ '/api/get': [switching] });
    const proxy = await proxyTo(upstream.url);
    const seen = await observe(`${proxy.url}/api/get`);
    expect([seen.interim, seen.status]).toEqual([[], 502]);
    expect(JSON.parse(seen.body)).toEqual({ ok: false, msg: 'upstream sent an invalid HTTP response' });
    expect(total(await proxy.metrics(), 'metrics_proxy_upstream_errors_total', { error_type: 'protocol' })).toBe(1);
  });
});
