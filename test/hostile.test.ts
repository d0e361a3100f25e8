/**
 * Hostile clients and hostile upstreams, over real sockets. Every case checks
 * three things: the exact outcome, what reached the upstream (requests it
 * handled and, where nothing may arrive, the bytes it read), and that a fresh
 * connection still gets a normal 200 afterwards with no uncaught exception in
 * between. The proxy runs in the test process, so an exception that would
 * kill it in production leaves it serving here: `watchCrashes` catches it.
 */
import type { IncomingMessage, RequestListener } from 'node:http';
import { type Socket, connect, createServer as createNetServer } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import WebSocket from 'ws';
import { type Proxy, type Upstream, httpRequest, rawExchange, sampleValue, startProxy, startServer, startUpstream } from './helpers.js';

// ---------------------------------------------------------------- helpers

/** Uncaught exceptions and rejections raised while the current test runs. */
function watchCrashes(): unknown[] {
  const crashes: unknown[] = [];
  const onCrash = (err: unknown): void => {
    crashes.push(err);
  };
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);
  onTestFinished(() => {
    process.off('uncaughtException', onCrash);
    process.off('unhandledRejection', onCrash);
  });
  return crashes;
}

interface Received {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
}

interface Rig {
  readonly upstream: Upstream;
  readonly proxy: Proxy;
  /** Requests the upstream handled, with their bodies, in arrival order. */
  readonly received: Received[];
  /**
   * Bytes the upstream read, over all its connections. The proxy may open an upstream connection for
   * a request whose framing llhttp rejects only after Node dispatched it; 0 here means nothing got through.
   */
  bytesForwarded(): number;
  readonly crashes: unknown[];
}

/** A fresh upstream (records every request and answers 200 `ok`) behind a fresh proxy. */
async function startRig(): Promise<Rig> {
  const crashes = watchCrashes();
  const received: Received[] = [];
  const handler: RequestListener = (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('latin1') });
      res.writeHead(200, { 'content-type': 'text/plain', 'x-echo-url': req.url ?? '' });
      res.end('ok');
    });
  };
  const upstream = await startUpstream(handler);
  onTestFinished(upstream.close);
  const sockets: Socket[] = [];
  upstream.server.on('connection', (socket: Socket) => sockets.push(socket));
  const proxy = await startProxy(upstream.url);
  onTestFinished(proxy.close);
  const bytesForwarded = (): number => sockets.reduce((sum, socket) => sum + socket.bytesRead, 0);
  return { upstream, proxy, received, bytesForwarded, crashes };
}

interface RawUpstream {
  readonly port: number;
  readonly url: string;
  /** Every request head the upstream read, in arrival order. */
  readonly heads: string[];
}

const AFTER_PATH = '/api/after';
const AFTER_RESPONSE = 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nafter';

/**
 * An upstream speaking raw TCP. Each request head (requests here carry no
 * body) is answered by `misbehave`, except `GET /api/after`, which gets a
 * normal 200 so a test can check the proxy still works afterwards.
 */
async function startRawUpstream(misbehave: (socket: Socket, head: string) => void): Promise<RawUpstream> {
  const heads: string[] = [];
  const server = createNetServer((socket) => {
    socket.on('error', () => {});
    let buffered = '';
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1');
      let end = buffered.indexOf('\r\n\r\n');
      while (end !== -1 && !socket.destroyed) {
        const head = buffered.slice(0, end + 4);
        buffered = buffered.slice(end + 4);
        heads.push(head);
        if (head.startsWith(`GET ${AFTER_PATH} `)) socket.write(AFTER_RESPONSE);
        else misbehave(socket, head);
        end = buffered.indexOf('\r\n\r\n');
      }
    });
  });
  const running = await startServer(server);
  onTestFinished(running.close);
  return { port: running.port, url: running.url, heads };
}

async function proxyTo(url: string): Promise<Proxy> {
  const proxy = await startProxy(url);
  onTestFinished(proxy.close);
  return proxy;
}

/**
 * Like rawExchange, but a reset while we are still writing (the proxy may
 * answer 431 and close before reading a huge head) ends the exchange with
 * whatever arrived instead of failing it.
 */
function sendRaw(port: number, payload: string, waitMs = 2_000): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(), waitMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
    socket.write(payload, 'latin1');
  });
}

interface RawResponse {
  readonly status: number;
  readonly reason: string;
  /** Lower-cased names, in order, repeated names kept. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly body: string;
}

/** The first response in raw bytes; status NaN when there is none (the connection was just cut). */
function parseResponse(raw: string): RawResponse {
  const end = raw.indexOf('\r\n\r\n');
  const head = end === -1 ? raw : raw.slice(0, end);
  const [statusLine = '', ...lines] = head.split('\r\n');
  const match = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(statusLine);
  const headers = lines.map((line): readonly [string, string] => {
    const colon = line.indexOf(':');
    return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()];
  });
  return {
    status: match === null ? Number.NaN : Number(match[1]),
    reason: match?.[2] ?? '',
    headers,
    body: end === -1 ? '' : raw.slice(end + 4),
  };
}

function headerValues(res: RawResponse, name: string): string[] {
  return res.headers.filter(([n]) => n === name).map(([, v]) => v);
}

/** A fresh connection still gets a normal 200 through the proxy, and nothing crashed on the way. */
async function expectStillServing(proxy: Proxy, crashes: readonly unknown[], body = 'ok'): Promise<void> {
  const res = await httpRequest(`${proxy.url}${AFTER_PATH}`);
  expect(res.status).toBe(200);
  expect(res.body.toString()).toBe(body);
  expect(crashes).toEqual([]);
}

async function errorCount(proxy: Proxy, type: 'api' | 'ws'): Promise<number | undefined> {
  return sampleValue(await proxy.metrics(), 'apiErrorCount', { type });
}

/** `text` as one chunk of a chunked body, followed by the last chunk. */
function chunked(text: string): string {
  return `${Buffer.byteLength(text, 'latin1').toString(16)}\r\n${text}\r\n0\r\n\r\n`;
}

/** A complete request that must never reach the upstream unless the client really framed it as a request. */
const SMUGGLED = 'GET /api/smuggled HTTP/1.1\r\nhost: x\r\n\r\n';

// ---------------------------------------------------------------- 1. smuggling

describe('request smuggling', () => {
  // `head`: llhttp rejects the framing as soon as the head is complete, so not one byte of the request
  // may reach the upstream. `body`: the head is valid and the body is not; a streaming proxy may already
  // have sent the head (as with a client that aborts mid-upload), but no complete request, and nothing
  // hidden in the body, may reach the upstream.
  const refused = [
    ['Content-Length and Transfer-Encoding', 'head', 'content-length: 6\r\ntransfer-encoding: chunked\r\n', `0\r\n\r\nG${SMUGGLED}`],
    ['Transfer-Encoding and Content-Length', 'head', 'transfer-encoding: chunked\r\ncontent-length: 4\r\n', chunked(SMUGGLED)],
    ['two different Content-Lengths', 'head', 'content-length: 2\r\ncontent-length: 41\r\n', `ab${SMUGGLED}`],
    ['two equal Content-Lengths', 'head', `content-length: ${SMUGGLED.length}\r\ncontent-length: ${SMUGGLED.length}\r\n`, SMUGGLED],
    ['a Content-Length list', 'head', `content-length: ${SMUGGLED.length}, ${SMUGGLED.length}\r\n`, SMUGGLED],
    ['Transfer-Encoding: xchunked', 'head', 'transfer-encoding: xchunked\r\n', chunked(SMUGGLED)],
    ['Transfer-Encoding with a space before the colon', 'head', 'transfer-encoding : chunked\r\n', chunked(SMUGGLED)],
    ['Transfer-Encoding: chunked, identity', 'head', 'transfer-encoding: chunked, identity\r\n', chunked(SMUGGLED)],
    ['Transfer-Encoding: identity', 'head', 'transfer-encoding: identity\r\n', chunked(SMUGGLED)],
    ['Transfer-Encoding twice', 'head', 'transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n', chunked(SMUGGLED)],
    ['Transfer-Encoding after a vertical tab', 'head', 'transfer-encoding:\x0bchunked\r\n', chunked(SMUGGLED)],
    ['Transfer-Encoding folded onto the next line', 'head', 'transfer-encoding:\r\n chunked\r\n', chunked(SMUGGLED)],
    ['a chunk size with junk', 'body', 'transfer-encoding: chunked\r\n', `27x\r\n${SMUGGLED}\r\n0\r\n\r\n`],
    ['chunks delimited by bare LF', 'body', 'transfer-encoding: chunked\r\n', `27\n${SMUGGLED}\n0\n\n`],
  ] as const;

  // Warm: the proxy's pool already holds an idle upstream connection, as it nearly always does in
  // production, so anything the proxy writes for the refused request goes straight to the upstream.
  describe.each(['cold', 'warm'] as const)('with a %s upstream connection', (state) => {
    it.each(refused)('refuses %s with 400 (rejected at the %s) and forwards nothing', async (_name, rejectedAt, framing, body) => {
      const rig = await startRig();
      const warmUp = state === 'warm' ? ['/api/warm'] : [];
      for (const path of warmUp) expect((await httpRequest(`${rig.proxy.url}${path}`)).status).toBe(200);
      const bytesBefore = rig.bytesForwarded();
      const answer = await rawExchange(rig.proxy.port, `POST /api/x HTTP/1.1\r\nhost: x\r\n${framing}\r\n${body}`);
      expect(parseResponse(answer).status).toBe(400);
      expect(rig.received.map((r) => r.url)).toEqual(warmUp);
      if (rejectedAt === 'head') {
        expect(rig.upstream.seen.map((r) => r.url)).toEqual(warmUp);
        expect(rig.bytesForwarded() - bytesBefore).toBe(0);
      }
      await expectStillServing(rig.proxy, rig.crashes);
      expect(rig.received.map((r) => r.url)).toEqual([...warmUp, AFTER_PATH]);
      expect(rig.upstream.seen.map((r) => r.url)).not.toContain('/api/smuggled');
    });
  });

  // llhttp accepts these spellings (the last token is still `chunked`); what matters is that the
  // upstream then receives exactly the one request the client framed, with the body it framed.
  it.each([
    ['Transfer-Encoding: CHUNKED', 'transfer-encoding: CHUNKED\r\n'],
    ['Transfer-Encoding after a tab', 'transfer-encoding:\tchunked\r\n'],
    ['Transfer-Encoding with trailing whitespace', 'transfer-encoding: chunked \r\n'],
    ['Transfer-Encoding: gzip, chunked', 'transfer-encoding: gzip, chunked\r\n'],
  ])('an obfuscated %s is either refused or forwarded as exactly one well-framed request', async (_name, framing) => {
    const rig = await startRig();
    const answer = await rawExchange(
      rig.proxy.port,
      `POST /api/x HTTP/1.1\r\nhost: x\r\n${framing}connection: close\r\n\r\n${chunked(SMUGGLED)}`,
    );
    const { status } = parseResponse(answer);
    if (status === 400) {
      expect(rig.bytesForwarded()).toBe(0);
    } else {
      expect(status).toBe(200);
      expect(rig.received.map((r) => `${r.method} ${r.url}`)).toEqual(['POST /api/x']);
      expect(rig.received[0]?.body).toBe(SMUGGLED);
    }
    await expectStillServing(rig.proxy, rig.crashes);
    expect(rig.received.some((r) => r.url === '/api/smuggled')).toBe(false);
  });

  it.each([
    ['hidden in a Content-Length body', `content-length: ${SMUGGLED.length}\r\n`, SMUGGLED],
    ['hidden in a chunked body', 'transfer-encoding: chunked\r\n', chunked(SMUGGLED)],
  ])('a request %s is forwarded as body bytes, never as a request', async (_name, framing, body) => {
    const rig = await startRig();
    const answer = await rawExchange(rig.proxy.port, `POST /api/x HTTP/1.1\r\nhost: x\r\n${framing}connection: close\r\n\r\n${body}`);
    expect(parseResponse(answer).status).toBe(200);
    expect(rig.received.map((r) => `${r.method} ${r.url}`)).toEqual(['POST /api/x']);
    expect(rig.received[0]?.body).toBe(SMUGGLED);
    await expectStillServing(rig.proxy, rig.crashes);
    expect(rig.received.map((r) => r.url)).toEqual(['/api/x', AFTER_PATH]);
  });

  it('forwards exactly the requests a pipelining client really framed, in order', async () => {
    const rig = await startRig();
    const answer = await rawExchange(
      rig.proxy.port,
      'POST /api/one HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello' +
        'POST /api/two HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nworld\r\n0\r\n\r\n' +
        'GET /api/three HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n',
    );
    expect(answer.match(/^HTTP\/1\.1 200 /gm)).toHaveLength(3);
    expect(rig.received.map((r) => `${r.method} ${r.url} ${r.body}`)).toEqual(['POST /api/one hello', 'POST /api/two world', 'GET /api/three ']);
    await expectStillServing(rig.proxy, rig.crashes);
  });

  // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing; the server must
  // close the connection after it, since a front end may have framed those bytes differently.
  it('closes the connection after an HTTP/1.0 request with Transfer-Encoding (no pipelined request reaches the upstream)', async () => {
    const rig = await startRig();
    const answer = await rawExchange(
      rig.proxy.port,
      'POST /api/x HTTP/1.0\r\nhost: x\r\nconnection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n' + SMUGGLED,
    );
    const { status } = parseResponse(answer);
    if (status === 400) expect(rig.bytesForwarded()).toBe(0);
    else expect(rig.received.map((r) => `${r.method} ${r.url}`)).toEqual(['POST /api/x']);
    expect(rig.upstream.seen.map((r) => r.url)).not.toContain('/api/smuggled');
    await expectStillServing(rig.proxy, rig.crashes);
    expect(rig.received.some((r) => r.url === '/api/smuggled')).toBe(false);
  });
});

// ---------------------------------------------------------------- 2. hop-by-hop

describe('hop-by-hop headers', () => {
  it.each([
    // Every row ends the client connection with `close`, so the exchange ends when the answer is complete.
    ['Connection and a header it names', 'connection: close, X-Secret\r\nx-secret: s\r\n', ['x-secret']],
    ['a header named in a second Connection line', 'connection: close\r\nconnection: x-secret\r\nx-secret: s\r\n', ['x-secret']],
    ['Keep-Alive', 'connection: close\r\nkeep-alive: timeout=5, max=100\r\n', ['keep-alive']],
    ['Proxy-Authorization', 'connection: close\r\nproxy-authorization: Basic Zm9vOmJhcg==\r\n', ['proxy-authorization']],
    ['Proxy-Connection', 'connection: close\r\nproxy-connection: keep-alive\r\n', ['proxy-connection']],
    ['TE', 'connection: close\r\nte: trailers\r\n', ['te']],
    ['Trailer', 'connection: close\r\ntrailer: x-checksum\r\n', ['trailer']],
    ['Upgrade on a request that is not an upgrade', 'connection: close\r\nupgrade: foo\r\n', ['upgrade']],
    [
      'Upgrade: websocket without Connection: upgrade',
      'connection: close\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n',
      ['upgrade'],
    ],
  ])('does not forward %s', async (_name, lines, stripped) => {
    const rig = await startRig();
    const answer = await rawExchange(rig.proxy.port, `GET /api/h HTTP/1.1\r\nhost: x\r\n${lines}x-kept: yes\r\n\r\n`);
    expect(parseResponse(answer).status).toBe(200);
    expect(rig.received).toHaveLength(1);
    const seen = rig.received[0]?.headers ?? {};
    expect(seen['x-kept']).toBe('yes');
    for (const name of stripped) expect(seen[name], name).toBeUndefined();
    // Only the proxy's own hop to the upstream: its pool says keep-alive, nothing the client listed.
    expect(seen.connection).toBe('keep-alive');
    await expectStillServing(rig.proxy, rig.crashes);
  });

  it('answers a request with a non-websocket Upgrade as a plain request: Upgrade and its Connection token not forwarded', async () => {
    const rig = await startRig();
    const answer = await rawExchange(rig.proxy.port, 'GET /api/h HTTP/1.1\r\nhost: x\r\nconnection: upgrade, x-kept\r\nupgrade: foo\r\nx-kept: no\r\n\r\n');
    expect(parseResponse(answer).status).toBe(200);
    const seen = rig.received[0]?.headers ?? {};
    expect(rig.received.map((r) => r.url)).toEqual(['/api/h']);
    expect(seen.upgrade).toBeUndefined();
    expect(seen['x-kept']).toBeUndefined();
    expect(seen.connection).toBe('keep-alive');
    await expectStillServing(rig.proxy, rig.crashes);
  });

  it('does not relay hop-by-hop headers of the upstream response', async () => {
    const crashes = watchCrashes();
    const upstream = await startRawUpstream((socket) =>
      socket.write(
        'HTTP/1.1 200 OK\r\n' +
          'keep-alive: timeout=99\r\n' +
          'proxy-authenticate: Basic realm="upstream"\r\n' +
          'trailer: x-checksum\r\n' +
          'connection: keep-alive, X-Up-Secret\r\n' +
          'x-up-secret: s\r\n' +
          'proxy-connection: keep-alive\r\n' +
          'te: trailers\r\n' +
          'upgrade: h2c\r\n' +
          'x-kept: yes\r\n' +
          'content-length: 2\r\n\r\nok',
      ),
    );
    const proxy = await proxyTo(upstream.url);
    const res = parseResponse(await rawExchange(proxy.port, 'GET /api/h HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'));
    expect(res.status).toBe(200);
    expect(res.body).toBe('ok');
    expect(headerValues(res, 'x-kept')).toEqual(['yes']);
    for (const name of ['keep-alive', 'proxy-authenticate', 'trailer', 'x-up-secret', 'proxy-connection', 'te', 'upgrade']) {
      expect(headerValues(res, name), name).toEqual([]);
    }
    // The proxy's own answer to this client's `Connection: close`, not the upstream's list.
    expect(headerValues(res, 'connection')).toEqual(['close']);
    await expectStillServing(proxy, crashes, 'after');
  });
});

// ---------------------------------------------------------------- 3. malformed requests

describe('malformed requests', () => {
  it.each([
    ['a request line without a target', 'GET\r\n\r\n', [400]],
    ['an unknown HTTP version', 'GET /api/x HTTP/9.9\r\nhost: x\r\n\r\n', [400]],
    ['a method with a space in it', 'GE T /api/x HTTP/1.1\r\nhost: x\r\n\r\n', [400]],
    ['a lower-case method', 'get /api/x HTTP/1.1\r\nhost: x\r\n\r\n', [400]],
    ['a space in the target', 'GET /api/a b HTTP/1.1\r\nhost: x\r\n\r\n', [400]],
    ['a raw non-ASCII byte in the target', 'GET /api/\xff HTTP/1.1\r\nhost: x\r\n\r\n', [400]],
    ['a NUL in a header value', 'GET /api/x HTTP/1.1\r\nhost: x\r\nx-a: a\x00b\r\n\r\n', [400]],
    ['a DEL (0x7f) in a header value', 'GET /api/x HTTP/1.1\r\nhost: x\r\nx-a: a\x7fb\r\n\r\n', [400]],
    ['a control character in a header value', 'GET /api/x HTTP/1.1\r\nhost: x\r\nx-a: a\x01b\r\n\r\n', [400]],
    ['a lone CR in a header value', 'GET /api/x HTTP/1.1\r\nhost: x\r\nx-a: a\rb\r\n\r\n', [400]],
    ['a header name with a space', 'GET /api/x HTTP/1.1\r\nhost: x\r\nx a: b\r\n\r\n', [400]],
    ['bare LF line endings', 'GET /api/x HTTP/1.1\nhost: x\n\n', [400]],
    ['an obs-fold continuation line', 'GET /api/x HTTP/1.1\r\nhost: x\r\nx-a: a\r\n b\r\n\r\n', [400]],
    ['no Host header', 'GET /api/x HTTP/1.1\r\n\r\n', [400]],
    // RFC 9112 §3.2: more than one Host field line must be answered 400.
    ['two Host headers', 'GET /api/x HTTP/1.1\r\nhost: x\r\nhost: y\r\nconnection: close\r\n\r\n', [400]],
    ['a 100 KB target', `GET /api/${'a'.repeat(100 * 1024)} HTTP/1.1\r\nhost: x\r\n\r\n`, [414, 431]],
    ['a 1 MB header', `GET /api/x HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(1024 * 1024)}\r\n\r\n`, [431]],
  ])('answers %s with 4xx, forwards nothing and keeps serving', async (_name, raw, statuses) => {
    const rig = await startRig();
    const { status } = parseResponse(await sendRaw(rig.proxy.port, raw));
    expect(statuses).toContain(status);
    expect(rig.upstream.seen).toHaveLength(0);
    expect(rig.bytesForwarded()).toBe(0);
    await expectStillServing(rig.proxy, rig.crashes);
    expect(rig.upstream.seen.map((r) => r.url)).toEqual([AFTER_PATH]);
  });

  // Node keeps only about the first 1 000 header lines and silently drops the rest; a proxy must not
  // forward such a truncated head (here the truncation hides the `Connection: x-secret` that strips x-secret).
  it('refuses a request with 2000 header fields, or forwards it whole, never truncated', async () => {
    const rig = await startRig();
    rig.upstream.server.maxHeadersCount = 0;
    const filler = Array.from({ length: 2000 }, (_, i) => `h${i}: 1\r\n`).join('');
    const answer = await sendRaw(rig.proxy.port, `GET /api/x HTTP/1.1\r\nhost: x\r\nx-secret: s\r\n${filler}connection: close, x-secret\r\n\r\n`);
    const { status } = parseResponse(answer);
    if (rig.received.length === 0) {
      expect([400, 431]).toContain(status);
      expect(rig.bytesForwarded()).toBe(0);
    } else {
      expect(status).toBe(200);
      const seen = rig.received[0]?.headers ?? {};
      expect(seen['x-secret']).toBeUndefined();
      expect(seen.h1999).toBe('1');
    }
    await expectStillServing(rig.proxy, rig.crashes);
  });

  it.each(['/api/%zz', '/api/%', '/api/%2', '/api/x%00y', '/api/%2e%zz', '/api/%c0%af'])(
    'forwards the invalid percent-encoding in %s verbatim or answers 400',
    async (target) => {
      const rig = await startRig();
      const { status } = parseResponse(await rawExchange(rig.proxy.port, `GET ${target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`));
      if (status === 400) {
        expect(rig.bytesForwarded()).toBe(0);
      } else {
        expect(status).toBe(200);
        expect(rig.received.map((r) => r.url)).toEqual([target]);
      }
      await expectStillServing(rig.proxy, rig.crashes);
    },
  );
});

// ---------------------------------------------------------------- 4. upstream misbehaviour

/** Resolves with the status of a refused WebSocket handshake; rejects if a session opens. */
function refusedWsStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.once('open', () => {
      ws.terminate();
      reject(new Error('a WebSocket session opened'));
    });
    ws.once('error', reject);
  });
}

const UPGRADE_HEAD = 'GET /api/ws HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n';

describe('upstream misbehaviour', () => {
  it.each([
    ['a wrong Sec-WebSocket-Accept', 'sec-websocket-accept: Ym9ndXMgYWNjZXB0IHZhbHVl\r\n'],
    ['no Sec-WebSocket-Accept', ''],
    // the accept value for the RFC 6455 sample key, which is not the key the client sent
    ['the Sec-WebSocket-Accept of another key', 'sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n'],
  ])('refuses a 101 with %s: 502, no open session, one ws error', async (_name, accept) => {
    const crashes = watchCrashes();
    const upstream = await startRawUpstream((socket) =>
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n${accept}\r\n`),
    );
    const proxy = await proxyTo(upstream.url);
    expect(await refusedWsStatus(`${proxy.url.replace('http', 'ws')}/api/ws`)).toBe(502);
    expect(upstream.heads).toHaveLength(1);
    const metrics = await proxy.metrics();
    expect(sampleValue(metrics, 'apiErrorCount', { type: 'ws' })).toBe(1);
    expect(sampleValue(metrics, 'apiErrorCount', { type: 'api' })).toBe(0);
    expect(sampleValue(metrics, 'apiCount', { method: 'GET' })).toBe(1);
    await expectStillServing(proxy, crashes, 'after');
  });

  // Without a key there is nothing to check the upstream's 101 against: an upstream that answers 101
  // to anything would hand the client a raw tunnel past the proxy's path rules and metrics.
  it('never opens a tunnel for an upgrade request without Sec-WebSocket-Key', async () => {
    const crashes = watchCrashes();
    const upstream = await startRawUpstream((socket) =>
      socket.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\nTUNNEL OPEN'),
    );
    const proxy = await proxyTo(upstream.url);
    const answer = await rawExchange(proxy.port, `${UPGRADE_HEAD}\r\n`);
    const res = parseResponse(answer);
    expect([400, 502]).toContain(res.status);
    expect(answer).not.toContain('TUNNEL OPEN');
    if (res.status === 400) expect(upstream.heads).toEqual([]);
    else expect(await errorCount(proxy, 'ws')).toBe(1);
    await expectStillServing(proxy, crashes, 'after');
  });

  it.each([
    ['a non-numeric status', 'HTTP/1.1 abc OK\r\ncontent-length: 2\r\n\r\nok'],
    ['a four-digit status', 'HTTP/1.1 2000 OK\r\ncontent-length: 2\r\n\r\nok'],
    ['status 099', 'HTTP/1.1 099 Early\r\ncontent-length: 2\r\n\r\nok'],
    ['status 000', 'HTTP/1.1 000 Zero\r\ncontent-length: 2\r\n\r\nok'],
    ['a wrong protocol name', 'HTTX/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok'],
    ['both Content-Length and Transfer-Encoding', 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n'],
    ['two different Content-Lengths', 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok!'],
    ['a NUL in a header value', 'HTTP/1.1 200 OK\r\nx-a: a\x00b\r\ncontent-length: 2\r\n\r\nok'],
    ['bare LF line endings', 'HTTP/1.1 200 OK\ncontent-length: 2\n\nok'],
    ['101 Switching Protocols to a request that asked for no upgrade', 'HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\nTUNNEL OPEN'],
  ])('answers 502 and counts an api error when the upstream sends %s', async (_name, response) => {
    const crashes = watchCrashes();
    const upstream = await startRawUpstream((socket) => socket.write(response, 'latin1'));
    const proxy = await proxyTo(upstream.url);
    const answer = await rawExchange(proxy.port, 'GET /api/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    expect(crashes).toEqual([]);
    const res = parseResponse(answer);
    expect(res.status).toBe(502);
    expect(JSON.parse(res.body)).toEqual({ ok: false, msg: 'upstream sent an invalid HTTP response' });
    expect(answer).not.toContain('TUNNEL OPEN');
    expect(await errorCount(proxy, 'api')).toBe(1);
    await expectStillServing(proxy, crashes, 'after');
  });

  // The head was valid, the bytes after it are not. Acceptable: a clean 502 of the proxy's own, the
  // upstream's complete response, or a cut connection. Not acceptable: a crash, a 502 wearing the
  // upstream's headers, or a response framed by both Content-Length and Transfer-Encoding.
  it.each([
    ['a chunked body with a bad chunk size', 'HTTP/1.1 200 Fine\r\nset-cookie: session=upstream\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n'],
    ['a 204 followed by body bytes', 'HTTP/1.1 204 No Content\r\nset-cookie: session=upstream\r\ncontent-length: 5\r\n\r\nhello'],
    ['a complete response followed by garbage', 'HTTP/1.1 200 Fine\r\nset-cookie: session=upstream\r\ncontent-length: 2\r\n\r\nokGARBAGE'],
  ])('handles %s without crashing or mixing its headers into an error answer', async (_name, response) => {
    const crashes = watchCrashes();
    const upstream = await startRawUpstream((socket) => socket.write(response));
    const proxy = await proxyTo(upstream.url);
    const answer = await rawExchange(proxy.port, 'GET /api/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    expect(crashes).toEqual([]);
    const res = parseResponse(answer);
    if (!Number.isNaN(res.status)) {
      const framing = [...headerValues(res, 'content-length'), ...headerValues(res, 'transfer-encoding')];
      expect(framing.length, `framing headers of ${JSON.stringify(answer)}`).toBeLessThanOrEqual(1);
      if (res.status === 502) {
        expect(res.reason).toBe('Bad Gateway');
        expect(headerValues(res, 'set-cookie')).toEqual([]);
      }
    }
    await expectStillServing(proxy, crashes, 'after');
  });
});

// ---------------------------------------------------------------- 5. method and target abuse

describe('method and target abuse', () => {
  /** Another server the attacker would like to reach through us; it must never get a connection. */
  async function startDecoy(): Promise<{ port: number; connections(): number }> {
    const decoy = await startUpstream((_req, res) => res.end('decoy'));
    onTestFinished(decoy.close);
    let connections = 0;
    decoy.server.on('connection', () => connections++);
    return { port: decoy.port, connections: () => connections };
  }

  it.each([
    ['an absolute-form target', (d: number) => `GET http://127.0.0.1:${d}/api/x?q=1 HTTP/1.1\r\nhost: 127.0.0.1:${d}\r\n`],
    ['an absolute-form target with userinfo', (d: number) => `GET http://u:p@127.0.0.1:${d}/api/x?q=1 HTTP/1.1\r\nhost: x\r\n`],
    ['an absolute-form target with an upper-case scheme', (d: number) => `GET HTTP://127.0.0.1:${d}/api/x?q=1 HTTP/1.1\r\nhost: x\r\n`],
    ['an absolute-form https target', (d: number) => `GET https://127.0.0.1:${d}/api/x?q=1 HTTP/1.1\r\nhost: x\r\n`],
    ['an absolute-form ws target', (d: number) => `GET ws://127.0.0.1:${d}/api/x?q=1 HTTP/1.1\r\nhost: x\r\n`],
    ['a network-path target', (d: number) => `GET //127.0.0.1:${d}/api/x?q=1 HTTP/1.1\r\nhost: x\r\n`],
    ['a Host header naming another server', (d: number) => `GET /api/x?q=1 HTTP/1.1\r\nhost: 127.0.0.1:${d}\r\n`],
  ])('sends %s to our upstream as /api/x or refuses it, never elsewhere', async (_name, head) => {
    const rig = await startRig();
    const decoy = await startDecoy();
    const { status } = parseResponse(await rawExchange(rig.proxy.port, `${head(decoy.port)}connection: close\r\n\r\n`));
    if (status === 200) {
      expect(rig.received.map((r) => r.url)).toEqual(['/api/x?q=1']);
    } else {
      expect([400, 404]).toContain(status);
      expect(rig.bytesForwarded()).toBe(0);
    }
    expect(decoy.connections()).toBe(0);
    await expectStillServing(rig.proxy, rig.crashes);
    expect(decoy.connections()).toBe(0);
  });

  it('answers OPTIONS * with 400 or 404 and forwards nothing', async () => {
    const rig = await startRig();
    const { status } = parseResponse(await rawExchange(rig.proxy.port, 'OPTIONS * HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'));
    expect([400, 404]).toContain(status);
    expect(rig.bytesForwarded()).toBe(0);
    await expectStillServing(rig.proxy, rig.crashes);
  });

  it.each([
    ['another local server', (d: number) => `127.0.0.1:${d}`],
    ['a remote name', () => 'evil.example:443'],
    ['a path under the prefix', () => '/api/x'],
  ])('answers CONNECT to %s with 405 and opens no tunnel', async (_name, target) => {
    const rig = await startRig();
    const decoy = await startDecoy();
    const authority = target(decoy.port);
    const answer = await rawExchange(rig.proxy.port, `CONNECT ${authority} HTTP/1.1\r\nhost: ${authority}\r\n\r\nGET /api/x HTTP/1.1\r\nhost: x\r\n\r\n`);
    expect(parseResponse(answer).status).toBe(405);
    expect(answer.match(/HTTP\/1\.1 /g)).toHaveLength(1);
    expect(rig.bytesForwarded()).toBe(0);
    expect(decoy.connections()).toBe(0);
    await expectStillServing(rig.proxy, rig.crashes);
  });
});
