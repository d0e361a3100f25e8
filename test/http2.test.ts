/**
 * HTTP/2 clients on the proxy's one port (h2c with prior knowledge): its own paths, forwarding to an
 * HTTP/1.1 upstream (and to an HTTP/2 one with --upstream-protocol http2), the HTTP/2 options
 * (concurrent streams, header list size, idle timeout), flow control both ways, the protocol label
 * of the standard family. The drain is in http2-drain.test.ts, hostile clients in
 * http2-hostile.test.ts, real client programs in http2-clients.test.ts, the real bin in http2-bin.test.ts.
 */
import { createHash, randomBytes } from 'node:crypto';
import { type IncomingMessage, createServer } from 'node:http';
import { constants } from 'node:http2';
import { describe, expect, it, onTestFinished } from 'vitest';
import { echoHandler, httpRequest, plateau, pumpBody, settle, startServer, total, until } from './helpers.js';
import {
  FLAG,
  FRAME,
  SETTING,
  holdingUpstream,
  collectResponse,
  describeFrames,
  expectServing,
  h2Get,
  h2Request,
  h2Session,
  headersFrames,
  isStatus200,
  proxyTo,
  rawH2Client,
  remoteSettingsArrived,
  requestHeaders,
  settingsOf,
  startH2Upstream,
  upstreamWith,
} from './h2-peers.js';

const MiB = 1024 * 1024;
const DURATION_COUNT = 'http_server_request_duration_seconds_count';

describe("the proxy's own paths over HTTP/2", () => {
  // Under prefix / the status page moves next to the metrics path (/status belongs to the service).
  it.each(['/metrics', '/healthz', '/readyz', '/metrics/status'])('answers %s itself on the main port, never forwarding it (prefix /)', async (path) => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url, { apiPrefix: '/' });
    const res = await h2Get(proxy.url, path);
    expect(res.status).toBe(200);
    expect(res.body.length).toBeGreaterThan(0);
    if (path === '/metrics') expect(res.body.toString()).toContain('apiCount');
    if (path === '/healthz') expect(JSON.parse(res.body.toString())).toEqual({ ok: true });
    expect(upstream.seen).toHaveLength(0);
  });

  it.each(['/metrics', '/healthz', '/readyz', '/status'])('answers %s on the admin port (metricsPort), where the main port reserves /metrics', async (path) => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url, { apiPrefix: '/', metricsPort: 0 });
    const res = await h2Get(proxy.adminUrl as string, path);
    expect(res.status).toBe(200);
    if (path === '/metrics') expect(res.body.toString()).toContain('apiCount');
    expect((await h2Get(proxy.url, '/metrics')).status).toBe(404);
    expect(upstream.seen).toHaveLength(0);
  });

  it.each([
    ['a path outside the prefix', 'GET', '/elsewhere', 404],
    ['a path escaping the prefix', 'GET', '/api/%2e%2e/admin', 400],
    ['a POST to the metrics path', 'POST', '/metrics', 405],
  ])('answers %s like HTTP/1.1 does, never forwarding it', async (_what, method, path, status) => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url);
    const session = await h2Session(proxy.url);
    const res = await h2Request(session, { ':method': method, ':path': path }, method === 'POST' ? 'x' : undefined);
    expect(res.status).toBe(status);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(upstream.seen).toHaveLength(0);
  });
});

describe('forwarding HTTP/2 requests to an HTTP/1.1 upstream (the default)', () => {
  it('forwards path, query, method and headers, and relays status and headers without connection-specific ones', async () => {
    const upstream = await upstreamWith((req, res) => {
      req.resume();
      res.writeHead(201, {
        'x-upstream': 'yes',
        'set-cookie': ['a=1', 'b=2'],
        connection: 'keep-alive, x-secret',
        'x-secret': 'hop-by-hop',
        'keep-alive': 'timeout=5',
        'transfer-encoding': 'chunked',
      });
      res.write('part one, ');
      res.end('part two');
    });
    const proxy = await proxyTo(upstream.url);
    const session = await h2Session(proxy.url);
    const res = await h2Request(session, { ':path': '/api/items?x=1&y=%20z&x=2', 'x-custom': 'kept', ':authority': 'service.example:8443' });
    // Http2ServerResponse refuses connection-specific headers: relaying them would throw or reset the stream.
    expect(res.status).toBe(201);
    expect(res.body.toString()).toBe('part one, part two');
    expect(res.headers['x-upstream']).toBe('yes');
    expect(res.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    for (const name of ['connection', 'x-secret', 'keep-alive', 'transfer-encoding']) expect(res.headers[name], name).toBeUndefined();
    const seen = upstream.seen[0];
    expect(seen?.httpVersion).toBe('1.1');
    expect(seen?.method).toBe('GET');
    expect(seen?.url).toBe('/api/items?x=1&y=%20z&x=2');
    expect(seen?.headers.host).toBe('service.example:8443');
    expect(seen?.headers['x-custom']).toBe('kept');
    expect(seen?.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen?.headers['x-forwarded-proto']).toBe('http');
    // No pseudo-header may leak into HTTP/1.1 header fields.
    expect(Object.keys(seen?.headers ?? {}).filter((name) => name.startsWith(':'))).toEqual([]);
  });

  it.each([
    ['without content-length', {}],
    ['with content-length', { 'content-length': String(MiB) }],
  ])('echoes a 1 MiB binary POST body byte for byte (%s)', async (_how, headers) => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url);
    const body = randomBytes(MiB);
    const session = await h2Session(proxy.url);
    const res = await h2Request(session, { ':method': 'POST', ':path': '/api/echo', ...headers }, body);
    expect(res.status).toBe(200);
    expect(res.headers['x-echo-method']).toBe('POST');
    expect(res.body.equals(body)).toBe(true);
  });

  it('relays the trailers of a chunked HTTP/1.1 response as HTTP/2 trailers', async () => {
    const upstream = await upstreamWith((req, res) => {
      req.resume();
      res.writeHead(200, { trailer: 'x-checksum', 'content-type': 'text/plain' });
      res.write('body');
      res.addTrailers({ 'x-checksum': 'abc123' });
      res.end();
    });
    const proxy = await proxyTo(upstream.url);
    const res = await h2Get(proxy.url, '/api/trailers');
    expect(res.body.toString()).toBe('body');
    expect(res.trailers?.['x-checksum']).toBe('abc123');
  });

  it('keeps 64 concurrent streams of one connection apart', async () => {
    const upstream = await upstreamWith((req, res) => {
      // Answers in reverse order of arrival, so a mix-up between streams cannot go unnoticed.
      const delay = 64 - Number(/\/(\d+)$/.exec(req.url ?? '')?.[1] ?? 0);
      req.resume();
      setTimeout(() => res.writeHead(200, { 'x-path': req.url ?? '' }).end(`answer for ${req.url ?? ''}`), delay);
    });
    const proxy = await proxyTo(upstream.url);
    const session = await h2Session(proxy.url);
    const paths = Array.from({ length: 64 }, (_v, i) => `/api/streams/${i}`);
    const answers = await Promise.all(paths.map((path) => h2Request(session, { ':path': path })));
    expect(answers.map((a) => a.body.toString())).toEqual(paths.map((p) => `answer for ${p}`));
    expect(answers.map((a) => a.headers['x-path'])).toEqual(paths);
  });

  it('counts an HTTP/2 request with network_protocol_version="2" and an HTTP/1.1 one with "1.1", each once in apiCount', async () => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url);
    const before = await proxy.metrics();
    expect((await h2Get(proxy.url, '/api/x')).status).toBe(200);
    expect((await httpRequest(`${proxy.url}/api/x`)).status).toBe(200);
    const after = await settle(proxy.metrics, (t) => total(t, 'apiCount', { method: 'GET' }) - total(before, 'apiCount', { method: 'GET' }) >= 2);
    expect(total(after, 'apiCount', { method: 'GET' }) - total(before, 'apiCount', { method: 'GET' })).toBe(2);
    expect(total(after, DURATION_COUNT, { http_request_method: 'GET', network_protocol_version: '2' })).toBe(1);
    expect(total(after, DURATION_COUNT, { http_request_method: 'GET', network_protocol_version: '1.1' })).toBe(1);
  });

  it('sends an HTTP/2 client’s request upstream over HTTP/2 with --upstream-protocol http2, and an HTTP/1.1 client’s too', async () => {
    const upstream = await startH2Upstream((stream, headers) => {
      stream.respond({ ':status': 200, 'x-seen-path': String(headers[':path']) });
      stream.end('over h2');
    });
    const proxy = await proxyTo(upstream.url, { upstreamProtocol: 'http2' });
    const fromH2 = await h2Get(proxy.url, '/api/h2?q=1');
    expect(fromH2.status).toBe(200);
    expect(fromH2.body.toString()).toBe('over h2');
    const fromH1 = await httpRequest(`${proxy.url}/api/h1`);
    expect(fromH1.status).toBe(200);
    expect(fromH1.body.toString()).toBe('over h2');
    expect(upstream.seen.map((h) => h[':path'])).toEqual(['/api/h2?q=1', '/api/h1']);
  });
});

describe('flow control', () => {
  it('stops reading the upstream while an HTTP/2 client does not read a 64 MiB response, then relays all of it', { timeout: 60_000 }, async () => {
    const size = 64 * MiB;
    let written = 0;
    const upstream = await upstreamWith((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-length': String(size) });
      pumpBody(res, size, (bytes) => (written += bytes), 7);
    });
    const proxy = await proxyTo(upstream.url);
    const session = await h2Session(proxy.url);
    const stream = session.request({ ':path': '/api/big' });
    stream.pause();
    await new Promise((resolve) => stream.once('response', resolve));
    const stalled = await plateau(() => written);
    // Socket buffers and windows on each hop hold a few MiB at most; without backpressure all 64 MiB go.
    expect(stalled).toBeLessThan(16 * MiB);
    let received = 0;
    stream.on('data', (c: Buffer) => (received += c.length));
    const ended = new Promise((resolve) => stream.once('end', resolve));
    stream.resume();
    await ended;
    expect(received).toBe(size);
  });

  it('stops reading an HTTP/2 upload while the upstream does not read it, then forwards all of it', { timeout: 60_000 }, async () => {
    const size = 64 * MiB;
    let upstreamReq: IncomingMessage | undefined;
    const upstream = await upstreamWith((req, res) => {
      upstreamReq = req;
      req.pause();
      const hash = createHash('sha256');
      let bytes = 0;
      req.on('data', (c: Buffer) => {
        bytes += c.length;
        hash.update(c);
      });
      req.on('end', () => res.writeHead(200).end(`${bytes} ${hash.digest('hex')}`));
    });
    const proxy = await proxyTo(upstream.url);
    const session = await h2Session(proxy.url);
    const stream = session.request({ ':method': 'POST', ':path': '/api/upload' }, { endStream: false });
    const answer = collectResponse(stream);
    const chunk = randomBytes(64 * 1024);
    const expected = createHash('sha256');
    let accepted = 0;
    const pump = (): void => {
      while (accepted < size) {
        accepted += chunk.length;
        expected.update(chunk);
        const more = stream.write(chunk);
        if (accepted >= size) {
          stream.end();
          return;
        }
        if (!more) {
          stream.once('drain', pump);
          return;
        }
      }
    };
    pump();
    await until(() => upstreamReq !== undefined, 'the upload at the upstream');
    const stalled = await plateau(() => accepted);
    expect(stalled).toBeLessThan(16 * MiB);
    upstreamReq?.resume();
    const res = await answer;
    expect(res.body.toString()).toBe(`${size} ${expected.digest('hex')}`);
  });
});

describe('--http2-max-concurrent-streams', () => {
  it('advertises 100 streams by default and the configured number otherwise', async () => {
    const upstream = await upstreamWith();
    const byDefault = await proxyTo(upstream.url);
    const configured = await proxyTo(upstream.url, { http2MaxConcurrentStreams: 7 });
    for (const [proxy, expected] of [
      [byDefault, 100],
      [configured, 7],
    ] as const) {
      const client = await rawH2Client(proxy.port);
      const settings = await client.waitFor((f) => f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0, 'the proxy’s SETTINGS');
      expect(settingsOf(settings).get(SETTING.MAX_CONCURRENT_STREAMS)).toBe(expected);
    }
  });

  it('never has more streams of one client at the upstream than the limit', async () => {
    let inFlight = 0;
    let most = 0;
    const upstream = await upstreamWith((req, res) => {
      inFlight++;
      most = Math.max(most, inFlight);
      req.resume();
      setTimeout(() => {
        inFlight--;
        res.writeHead(200).end();
      }, 30);
    });
    const proxy = await proxyTo(upstream.url, { http2MaxConcurrentStreams: 2 });
    const session = await h2Session(proxy.url);
    await remoteSettingsArrived(session);
    const answers = await Promise.all(Array.from({ length: 8 }, (_v, i) => h2Request(session, { ':path': `/api/limited/${i}` })));
    expect(answers.map((a) => a.status)).toEqual(Array.from({ length: 8 }, () => 200));
    expect(most).toBe(2);
  });

  it('refuses the streams a client opens beyond the limit against the SETTINGS it acknowledged, forwarding none of them', async () => {
    const hold = holdingUpstream();
    const upstream = await upstreamWith(hold.handler);
    onTestFinished(() => hold.releaseAll());
    const proxy = await proxyTo(upstream.url, { http2MaxConcurrentStreams: 2 });
    const client = await rawH2Client(proxy.port);
    const settings = await client.waitFor((f) => f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0, 'the proxy’s SETTINGS');
    expect(settingsOf(settings).get(SETTING.MAX_CONCURRENT_STREAMS)).toBe(2);
    const streams = [1, 3, 5, 7, 9];
    client.send(Buffer.concat(streams.map((id) => headersFrames(id, requestHeaders(`/api/held/${id}`)))));
    // nghttp2 treats this as a connection error (GOAWAY) where RFC 9113 §5.1.2 allows a stream error
    // (RST_STREAM REFUSED_STREAM or PROTOCOL_ERROR on each stream over the limit): either refuses them.
    const refused = (id: number): boolean =>
      client.frames.some(
        (f) =>
          (f.type === FRAME.RST_STREAM && f.streamId === id) || (f.type === FRAME.GOAWAY && (f.payload.readUInt32BE(0) & 0x7fff_ffff) < id),
      );
    await client.waitFor(() => [5, 7, 9].every(refused), 'the refusals');
    hold.releaseAll();
    await expectServing(proxy);
    const forwarded = upstream.seen.map((r) => r.url ?? '');
    expect(forwarded.length, forwarded.join(' ')).toBeLessThanOrEqual(2);
    expect(forwarded.filter((url) => /\/(5|7|9)$/.test(url))).toEqual([]);
  });

  it('serves the next streams once earlier ones finish (the limit is on open streams, not a total)', async () => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url, { http2MaxConcurrentStreams: 2 });
    const session = await h2Session(proxy.url);
    for (let i = 0; i < 10; i++) expect((await h2Request(session, { ':path': `/api/seq/${i}` })).status).toBe(200);
    expect(upstream.seen).toHaveLength(10);
  });
});

describe('--max-header-size for HTTP/2 header lists', () => {
  const bigHeader = (bytes: number): Array<readonly [string, string]> => [['x-big', 'a'.repeat(bytes)]];

  /** An upstream that takes heads up to 256 KiB: whatever the proxy lets through arrives (Node's own 16 KiB would answer 431 itself). */
  async function roomyUpstream(): Promise<{ url: string; seen: IncomingMessage[] }> {
    const seen: IncomingMessage[] = [];
    const server = createServer({ maxHeaderSize: 256 * 1024 }, (req, res) => {
      seen.push(req);
      echoHandler(req, res);
    });
    const running = await startServer(server);
    onTestFinished(running.close);
    return { url: running.url, seen };
  }

  it('refuses a 32 KiB header with the default 16 KiB limit (reset or 431), never forwarding it, and keeps serving', async () => {
    const upstream = await roomyUpstream();
    const proxy = await proxyTo(upstream.url);
    const client = await rawH2Client(proxy.port);
    await client.waitFor((f) => f.type === FRAME.SETTINGS, 'the proxy’s SETTINGS');
    client.send(headersFrames(1, requestHeaders('/api/big-header', 'GET', bigHeader(32 * 1024))));
    const answer = await client.waitFor(
      (f) => (f.streamId === 1 && (f.type === FRAME.RST_STREAM || f.type === FRAME.HEADERS)) || f.type === FRAME.GOAWAY,
      'an answer to the oversized header list',
    );
    expect(isStatus200(answer), describeFrames(client.frames)).toBe(false);
    expect(upstream.seen).toHaveLength(0);
    await expectServing(proxy);
  });

  it('forwards an 8 KiB header intact under the default limit, and a 32 KiB one when --max-header-size is 64 KiB', async () => {
    const upstream = await roomyUpstream();
    const proxy = await proxyTo(upstream.url);
    const larger = await proxyTo(upstream.url, { maxHeaderSize: 64 * 1024 });
    expect((await h2Get(proxy.url, '/api/eight', { 'x-big': 'b'.repeat(8 * 1024) })).status).toBe(200);
    expect(upstream.seen.at(-1)?.headers['x-big']).toBe('b'.repeat(8 * 1024));
    const client = await rawH2Client(larger.port);
    await client.waitFor((f) => f.type === FRAME.SETTINGS, 'the proxy’s SETTINGS');
    client.send(headersFrames(1, requestHeaders('/api/thirty-two', 'GET', bigHeader(32 * 1024))));
    const answer = await client.waitFor((f) => f.streamId === 1 && (f.type === FRAME.HEADERS || f.type === FRAME.RST_STREAM), 'an answer');
    expect(isStatus200(answer), describeFrames(client.frames)).toBe(true);
    expect(upstream.seen.at(-1)?.headers['x-big']).toBe('a'.repeat(32 * 1024));
  });
});

describe('--http2-idle-timeout', () => {
  it('sends GOAWAY and closes a connection with no open stream for that long', async () => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url, { http2IdleTimeoutMs: 300 });
    const session = await h2Session(proxy.url);
    expect((await h2Request(session, { ':path': '/api/once' })).status).toBe(200);
    const idleFrom = Date.now();
    const goaway = new Promise<number>((resolve) => session.once('goaway', (code: number) => resolve(code)));
    await new Promise((resolve) => session.once('close', resolve));
    expect(await goaway).toBe(constants.NGHTTP2_NO_ERROR);
    const waited = Date.now() - idleFrom;
    expect(waited).toBeGreaterThanOrEqual(250);
    expect(waited).toBeLessThan(5_000);
  });

  it('does not close a connection while a stream is open, however quiet, and counts idleness from its end', async () => {
    const upstream = await upstreamWith((req, res) => {
      req.resume();
      // Silent for well over the idle timeout, stream open all along.
      setTimeout(() => res.writeHead(200).end('late but whole'), 1_000);
    });
    const proxy = await proxyTo(upstream.url, { http2IdleTimeoutMs: 200 });
    const session = await h2Session(proxy.url);
    let goawayAt: number | undefined;
    session.once('goaway', () => (goawayAt = Date.now()));
    const res = await h2Request(session, { ':path': '/api/slow' });
    const endedAt = Date.now();
    expect(res.body.toString()).toBe('late but whole');
    expect(goawayAt).toBeUndefined();
    await new Promise((resolve) => session.once('close', resolve));
    expect((goawayAt ?? 0) - endedAt).toBeGreaterThanOrEqual(150);
  });
});
