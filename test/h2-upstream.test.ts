/**
 * The HTTP/2 upstream leg (src/proxy/h2-upstream.ts), driven directly through the UpstreamPool
 * interface with a handler that records every hook, against real node:http2 servers on port 0:
 * h2c in process, TLS (trusted through NODE_EXTRA_CA_CERTS, which Node reads at start-up) in a
 * child process, as test/upstream-tls.test.ts does it.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import {
  type IncomingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
  type Settings,
  constants,
  createSecureServer,
  createServer as createH2Server,
} from 'node:http2';
import { type AddressInfo, type Socket, createServer as createNetServer } from 'node:net';
import { PassThrough } from 'node:stream';
import { createServer as createTlsServer } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';
import { UpstreamTimeoutError } from '../src/errors.js';
import { type H2UpstreamPoolOptions, createH2UpstreamPool } from '../src/proxy/h2-upstream.js';
import { classifyUpstreamError } from '../src/proxy/upstream-errors.js';
import { type Abort, UpstreamHandler, type UpstreamPool, type UpstreamRequest } from '../src/proxy/upstream-pool.js';
import { deadUpstreamUrl, startServer, until } from './helpers.js';
import { startBlackholeUpstream } from './ws-peers.js';

const { NGHTTP2_CANCEL, NGHTTP2_NO_ERROR } = constants;
const CERT = fileURLToPath(new URL('./fixtures/self-signed.crt', import.meta.url));
const KEY = fileURLToPath(new URL('./fixtures/self-signed.key', import.meta.url));
const H2_UPSTREAM_MODULE = fileURLToPath(new URL('../src/proxy/h2-upstream.ts', import.meta.url));
const POOL_MODULE = fileURLToPath(new URL('../src/proxy/upstream-pool.ts', import.meta.url));

interface Hooks {
  /** Called in onConnect, e.g. to abort at once as an exchange whose client left does. */
  readonly assigned?: (recorder: Recorder) => void;
  /** What onData returns; true by default. */
  readonly data?: (chunk: Buffer, recorder: Recorder) => boolean;
}

/** A handler that records every hook the pool calls, and resolves `finished` on the first onComplete or onError. */
class Recorder extends UpstreamHandler {
  readonly events: string[] = [];
  readonly chunks: Buffer[] = [];
  readonly errors: Error[] = [];
  status = 0;
  raw: Buffer[] = [];
  trailers: Buffer[] | null | undefined = undefined;
  bytesSent = 0;
  opening: boolean | undefined = undefined;
  abort: Abort | undefined = undefined;
  resume: (() => void) | undefined = undefined;
  readonly finished: Promise<void>;
  private readonly pool: UpstreamPool;
  private readonly hooks: Hooks;
  private settle: () => void = () => {};

  constructor(pool: UpstreamPool, hooks: Hooks = {}) {
    super();
    this.pool = pool;
    this.hooks = hooks;
    this.finished = new Promise((resolve) => (this.settle = resolve));
  }

  get body(): string {
    return Buffer.concat(this.chunks).toString();
  }

  header(name: string, from: Buffer[] | null | undefined = this.raw): string[] {
    const values: string[] = [];
    for (let i = 0; from && i + 1 < from.length; i += 2) if (from[i]?.toString() === name) values.push(String(from[i + 1]));
    return values;
  }

  protected override upstreamAssigned(abort: Abort): void {
    this.events.push('connect');
    this.abort = abort;
    this.opening = this.pool.opening;
    this.hooks.assigned?.(this);
  }

  protected override upstreamBodySent(bytes: number): void {
    if (this.events.at(-1) !== 'body') this.events.push('body');
    this.bytesSent += bytes;
  }

  protected override upstreamRequestSent(): void {
    this.events.push('sent');
  }

  protected override upstreamResponseStarted(): void {
    this.events.push('started');
  }

  protected override upstreamHeaders(status: number, raw: Buffer[], resume: () => void): boolean {
    this.events.push('headers');
    this.status = status;
    this.raw = raw;
    this.resume = resume;
    return true;
  }

  protected override upstreamData(chunk: Buffer): boolean {
    if (this.events.at(-1) !== 'data') this.events.push('data');
    this.chunks.push(chunk);
    return this.hooks.data?.(chunk, this) ?? true;
  }

  protected override upstreamComplete(rawTrailers: Buffer[] | null): void {
    this.events.push('complete');
    this.trailers = rawTrailers;
    this.settle();
  }

  protected override upstreamFailed(err: Error): void {
    this.events.push('error');
    this.errors.push(err);
    this.settle();
  }
}

interface H2Upstream {
  readonly url: string;
  readonly port: number;
  /** Every session the server accepted. */
  readonly sessions: ServerHttp2Session[];
  /** Every stream the server saw. */
  readonly streams: ServerHttp2Stream[];
  /** The TCP connections under the sessions (a session's own `socket` may not be destroyed). */
  readonly connections: Socket[];
}

type StreamListener = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, raw: readonly string[]) => void;

/** A node:http2 h2c server on port 0, closed (its sessions destroyed) when the test ends. */
async function startH2Upstream(onStream: StreamListener, settings: Settings = {}): Promise<H2Upstream> {
  const server = createH2Server({ settings });
  const sessions: ServerHttp2Session[] = [];
  const streams: ServerHttp2Stream[] = [];
  const connections: Socket[] = [];
  server.on('connection', (socket: Socket) => connections.push(socket));
  server.on('session', (session) => {
    sessions.push(session);
    session.on('error', () => {});
  });
  // node:http2 passes the raw header list too, which @types/node does not declare.
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, raw?: string[]) => {
    streams.push(stream);
    stream.on('error', () => {});
    onStream(stream, headers, raw ?? []);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTestFinished(
    () =>
      new Promise<void>((resolve) => {
        for (const session of sessions) session.destroy();
        server.close(() => resolve());
      }),
  );
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, port, sessions, streams, connections };
}

function createPool(url: string, options: Partial<H2UpstreamPoolOptions> = {}): UpstreamPool {
  const pool = createH2UpstreamPool({ upstream: new URL(url), connectTimeoutMs: 2_000, onStrayError: (err) => expect.fail(String(err)), ...options });
  onTestFinished(() => pool.close());
  return pool;
}

/** A gRPC-shaped call: POST, `te: trailers`, a Host that must become `:authority`. */
function grpcRequest(pool: UpstreamPool, body: PassThrough | null, extra: Array<string | string[]> = []): UpstreamRequest {
  return {
    method: 'POST',
    path: '/pkg.Echo/Say',
    headers: ['host', 'svc.example', 'content-type', 'application/grpc', 'te', 'trailers', ...extra],
    body,
    servername: pool.servername,
  };
}

function bodyOf(...chunks: string[]): PassThrough {
  const body = new PassThrough();
  for (const chunk of chunks) body.write(chunk);
  body.end();
  return body;
}

function send(pool: UpstreamPool, request: UpstreamRequest, hooks?: Hooks): Recorder {
  const recorder = new Recorder(pool, hooks);
  pool.dispatch(request, recorder);
  return recorder;
}

/** The gRPC-shaped answer: headers, the body, then `grpc-status: 0` trailers. */
function answer(stream: ServerHttp2Stream, body: string | Buffer, headers: Record<string, string | string[]> = {}): void {
  stream.respond({ ':status': 200, 'content-type': 'application/grpc', ...headers }, { waitForTrailers: true });
  stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'ok' }));
  stream.end(body);
}

function kindOf(recorder: Recorder): string {
  expect(recorder.errors).toHaveLength(1);
  return classifyUpstreamError(recorder.errors[0]).kind;
}

describe('the HTTP/2 upstream pool: one call', () => {
  it('sends a unary call with its pseudo-headers and body, and relays headers, body and trailers as raw Buffers', async () => {
    const seen: Array<{ headers: IncomingHttpHeaders; body: string }> = [];
    const upstream = await startH2Upstream((stream, headers) => {
      const parts: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => parts.push(chunk));
      stream.on('end', () => {
        seen.push({ headers, body: Buffer.concat(parts).toString() });
        answer(stream, `echo:${Buffer.concat(parts).toString()}`, { 'set-cookie': ['a=1', 'b=2'], 'x-reply': 'yes' });
      });
    });
    const pool = createPool(upstream.url);
    const first = send(pool, grpcRequest(pool, bodyOf('hello ', 'world')));
    await first.finished;

    expect(first.errors).toEqual([]);
    expect(first.events).toEqual(['connect', 'body', 'sent', 'started', 'headers', 'data', 'complete']);
    expect(first.bytesSent).toBe(11);
    expect(first.status).toBe(200);
    expect(first.body).toBe('echo:hello world');
    expect(first.raw.every((b) => Buffer.isBuffer(b))).toBe(true);
    expect(first.header(':status')).toEqual([]);
    expect(first.header('set-cookie')).toEqual(['a=1', 'b=2']);
    expect(first.header('x-reply')).toEqual(['yes']);
    expect(first.header('grpc-status', first.trailers)).toEqual(['0']);
    expect(first.header('grpc-message', first.trailers)).toEqual(['ok']);
    expect(seen[0]?.body).toBe('hello world');
    expect(seen[0]?.headers).toMatchObject({
      ':method': 'POST',
      ':path': '/pkg.Echo/Say',
      ':scheme': 'http',
      ':authority': 'svc.example',
      te: 'trailers',
      'content-type': 'application/grpc',
    });
    expect(seen[0]?.headers.host).toBeUndefined();

    // A second call reuses the session: not a connection opened for it.
    const second = send(pool, { ...grpcRequest(pool, null), method: 'GET', path: '/x', headers: ['accept', '*/*'] });
    await second.finished;
    expect(second.events).toEqual(['connect', 'sent', 'started', 'headers', 'data', 'complete']);
    expect(first.opening).toBe(true);
    expect(second.opening).toBe(false);
    expect(seen[1]?.headers[':authority']).toBe(`127.0.0.1:${upstream.port}`);
    expect(upstream.sessions).toHaveLength(1);
  });

  it('relays a trailers-only answer (one HEADERS frame with END_STREAM) as headers, then completion without trailers', async () => {
    const upstream = await startH2Upstream((stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5', 'grpc-message': 'not%20found' }, { endStream: true });
    });
    const pool = createPool(upstream.url);
    const call = send(pool, grpcRequest(pool, bodyOf('x')));
    await call.finished;
    expect(call.events.filter((e) => e !== 'body' && e !== 'sent')).toEqual(['connect', 'started', 'headers', 'complete']);
    expect(call.header('grpc-status')).toEqual(['5']);
    expect(call.trailers).toBeNull();
    expect(call.chunks).toEqual([]);
  });

  it('sends -bin metadata and repeated values field by field, and relays them back unchanged', async () => {
    const binary = Buffer.from([0, 1, 2, 250, 255]).toString('base64');
    let received: readonly string[] = [];
    const upstream = await startH2Upstream((stream, headers, raw) => {
      received = raw;
      stream.respond({ ':status': 200, 'x-trace-bin': String(headers['x-trace-bin']), 'x-multi': ['one', 'two'] }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-status-details-bin': binary }));
      stream.end();
    });
    const pool = createPool(upstream.url);
    const call = send(pool, grpcRequest(pool, null, ['x-trace-bin', binary, 'x-multi', ['a', 'b'], 'x-multi', 'c']));
    await call.finished;
    const pairs = (name: string): string[] => received.filter((_v, i) => i % 2 === 1 && received[i - 1] === name);
    expect(pairs('x-trace-bin')).toEqual([binary]);
    expect(pairs('x-multi')).toEqual(['a', 'b', 'c']);
    expect(call.header('x-trace-bin')).toEqual([binary]);
    expect(call.header('x-multi')).toEqual(['one', 'two']);
    expect(call.header('grpc-status-details-bin', call.trailers)).toEqual([binary]);
  });

  it('drops what HTTP/2 forbids and keeps `te` only as trailers', async () => {
    let received: IncomingHttpHeaders = {};
    const upstream = await startH2Upstream((stream, headers) => {
      received = headers;
      answer(stream, '');
    });
    const pool = createPool(upstream.url);
    const extra = ['connection', 'keep-alive', 'keep-alive', 'timeout=5', 'transfer-encoding', 'chunked', 'upgrade', 'h2c', 'http2-settings', 'AAA'];
    const call = send(pool, { ...grpcRequest(pool, null, extra), headers: ['te', 'trailers, deflate', ...extra] });
    await call.finished;
    expect(call.errors).toEqual([]);
    expect(received.te).toBe('trailers');
    for (const name of ['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'http2-settings']) expect(received[name]).toBeUndefined();
  });
});

describe('the HTTP/2 upstream pool: streams both ways', () => {
  it('is full duplex: the answer streams back while the request body is still being sent', async () => {
    const upstream = await startH2Upstream((stream) => {
      stream.respond({ ':status': 200 }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.on('data', (chunk: Buffer) => stream.write(`echo:${chunk.toString()};`));
      stream.on('end', () => stream.end());
    });
    const pool = createPool(upstream.url);
    const body = new PassThrough();
    const call = send(pool, grpcRequest(pool, body));
    body.write('one');
    await until(() => call.body === 'echo:one;', 'the first echo');
    expect(call.events).not.toContain('sent');
    body.write('two');
    await until(() => call.body === 'echo:one;echo:two;', 'the second echo');
    body.end();
    await call.finished;
    expect(call.events).toEqual(['connect', 'body', 'started', 'headers', 'data', 'body', 'data', 'sent', 'complete']);
    expect(call.header('grpc-status', call.trailers)).toEqual(['0']);
  });

  it('pauses the upstream stream while onData says so, and delivers everything after resume', async () => {
    const size = 1024 * 1024;
    const upstream = await startH2Upstream((stream, headers) => {
      if (headers[':path'] === '/ping') answer(stream, 'pong');
      else answer(stream, Buffer.alloc(size, 'x'));
    });
    const pool = createPool(upstream.url);
    let paused = true;
    const big = send(pool, { ...grpcRequest(pool, null), path: '/big' }, { data: () => !paused });
    await until(() => big.chunks.length > 0, 'the first chunk');
    // A round trip on the same connection: what the upstream wrote before it would have come first.
    const ping = send(pool, { ...grpcRequest(pool, null), path: '/ping' });
    await ping.finished;
    expect(ping.body).toBe('pong');
    expect(big.chunks).toHaveLength(1);
    expect(upstream.sessions).toHaveLength(1);
    paused = false;
    big.resume?.();
    await big.finished;
    expect(Buffer.concat(big.chunks).length).toBe(size);
    expect(big.header('grpc-status', big.trailers)).toEqual(['0']);
  });

  it('stops reading the request body while the upstream does not read it, and sends all of it once it does', async () => {
    const size = 2 * 1024 * 1024;
    let upstreamStream: ServerHttp2Stream | undefined;
    let received = 0;
    const upstream = await startH2Upstream((stream) => {
      upstreamStream = stream;
      stream.pause();
      stream.on('data', (chunk: Buffer) => (received += chunk.length));
      stream.on('end', () => answer(stream, String(received)));
    });
    const pool = createPool(upstream.url);
    const body = new PassThrough();
    const call = send(pool, grpcRequest(pool, body));
    for (let i = 0; i < size / 16_384; i++) body.write(Buffer.alloc(16_384, 'y'));
    body.end();
    await until(() => upstreamStream !== undefined && body.isPaused(), 'the request body paused');
    expect(call.bytesSent).toBeLessThan(size);
    upstreamStream?.resume();
    await call.finished;
    expect(call.bytesSent).toBe(size);
    expect(call.body).toBe(String(size));
  });
});

describe('the HTTP/2 upstream pool: cancelling', () => {
  it('abort() before the answer: RST_STREAM(CANCEL) upstream, exactly one onError, and the session serves on', async () => {
    const upstream = await startH2Upstream((stream, headers) => {
      if (headers[':path'] === '/ok') answer(stream, 'fine');
    });
    const pool = createPool(upstream.url);
    const call = send(pool, grpcRequest(pool, new PassThrough()));
    await until(() => upstream.streams.length === 1, 'the stream upstream');
    const closed = new Promise<number>((resolve) => upstream.streams[0]?.once('close', function (this: ServerHttp2Stream) { resolve(this.rstCode); }));
    call.abort?.();
    expect(await closed).toBe(NGHTTP2_CANCEL);
    expect(call.events.filter((e) => e === 'error')).toHaveLength(1);
    expect(call.events).not.toContain('headers');
    const after = send(pool, { ...grpcRequest(pool, null), path: '/ok' });
    await after.finished;
    expect(after.body).toBe('fine');
    // Nothing more reaches the aborted call, ever.
    call.abort?.(new Error('again'));
    expect(call.errors).toHaveLength(1);
    expect(upstream.sessions).toHaveLength(1);
  });

  it('abort(err) mid-answer: the handler gets that very error, and nothing after it', async () => {
    const upstream = await startH2Upstream((stream) => {
      stream.respond({ ':status': 200 });
      stream.write('part');
    });
    const pool = createPool(upstream.url);
    const call = send(pool, grpcRequest(pool, null));
    await until(() => call.chunks.length === 1, 'the first chunk');
    const closed = new Promise<number>((resolve) => upstream.streams[0]?.once('close', function (this: ServerHttp2Stream) { resolve(this.rstCode); }));
    const timeout = new UpstreamTimeoutError('MP_ERR_IDLE_TIMEOUT', 5);
    call.abort?.(timeout);
    expect(call.errors).toEqual([timeout]);
    expect(await closed).toBe(NGHTTP2_CANCEL);
    expect(call.events.at(-1)).toBe('error');
  });

  it('an abort inside onConnect (the client left while the call waited) opens no stream and reports one error', async () => {
    const upstream = await startH2Upstream((stream) => answer(stream, 'ok'));
    const pool = createPool(upstream.url);
    const gone = send(pool, grpcRequest(pool, null), { assigned: (recorder) => recorder.abort?.() });
    await gone.finished;
    expect(gone.events).toEqual(['connect', 'error']);
    const next = send(pool, grpcRequest(pool, null));
    await next.finished;
    expect(upstream.streams).toHaveLength(1);
  });

  it('a request body that fails cancels the upstream stream with the body error', async () => {
    const upstream = await startH2Upstream(() => {});
    const pool = createPool(upstream.url);
    const body = new PassThrough();
    const call = send(pool, grpcRequest(pool, body));
    body.write('some');
    await until(() => upstream.streams.length === 1, 'the stream upstream');
    const closed = new Promise<number>((resolve) => upstream.streams[0]?.once('close', function (this: ServerHttp2Stream) { resolve(this.rstCode); }));
    const err = Object.assign(new Error('aborted'), { code: 'ECONNRESET' });
    body.destroy(err);
    await call.finished;
    expect(call.errors).toEqual([err]);
    expect(await closed).toBe(NGHTTP2_CANCEL);
  });
});

describe('the HTTP/2 upstream pool: upstream failures', () => {
  it('an upstream RST_STREAM mid-answer fails the call as a reset', async () => {
    const upstream = await startH2Upstream((stream) => {
      stream.respond({ ':status': 200 });
      stream.write('part', () => stream.destroy(new Error('upstream gives up')));
    });
    const pool = createPool(upstream.url);
    const call = send(pool, grpcRequest(pool, null));
    await call.finished;
    expect(call.events).toContain('headers');
    expect(call.events).not.toContain('complete');
    expect(kindOf(call)).toBe('reset');
  });

  it('a connection that dies mid-answer fails the call (node:http2 ends such a stream as if complete)', async () => {
    const upstream = await startH2Upstream((stream) => {
      stream.respond({ ':status': 200 });
      stream.write('part', () => upstream.connections.at(-1)?.destroy());
    });
    const pool = createPool(upstream.url);
    const call = send(pool, grpcRequest(pool, null));
    await call.finished;
    expect(call.events).not.toContain('complete');
    expect(kindOf(call)).toBe('reset');
  });

  it('after a GOAWAY the next call opens a new session', async () => {
    const upstream = await startH2Upstream((stream) => answer(stream, 'ok'));
    const pool = createPool(upstream.url);
    await send(pool, grpcRequest(pool, null)).finished;
    const first = upstream.sessions[0];
    const gone = new Promise((resolve) => first?.once('close', resolve));
    first?.close(); // GOAWAY(NO_ERROR)
    await gone;
    const call = send(pool, grpcRequest(pool, null));
    await call.finished;
    expect(call.errors).toEqual([]);
    expect(call.opening).toBe(true);
    expect(upstream.sessions).toHaveLength(2);
  });

  it('a stream above the GOAWAY last-stream-id (refused, never processed) is sent again, transparently', async () => {
    const upstream = await startH2Upstream((stream) => {
      const session = upstream.sessions.at(-1);
      if (upstream.sessions.length === 1 && upstream.streams.length === 2) {
        const [first] = upstream.streams;
        session?.goaway(NGHTTP2_NO_ERROR, first?.id);
        if (first) answer(first, 'first');
      } else if (upstream.sessions.length > 1) {
        answer(stream, 'again');
      }
    });
    const pool = createPool(upstream.url);
    const a = send(pool, grpcRequest(pool, null));
    await until(() => upstream.streams.length === 1, 'the first stream');
    const b = send(pool, grpcRequest(pool, null));
    await Promise.all([a.finished, b.finished]);
    expect(a.body).toBe('first');
    expect(b.errors).toEqual([]);
    expect(b.body).toBe('again');
    expect(b.events.filter((e) => e === 'connect')).toHaveLength(1);
    expect(upstream.sessions).toHaveLength(2);
  });

  it('a refused connection fails the call (and every call waiting with it) as connect_refused', async () => {
    const pool = createPool(await deadUpstreamUrl());
    const calls = [send(pool, grpcRequest(pool, null)), send(pool, grpcRequest(pool, null)), send(pool, grpcRequest(pool, null))];
    await Promise.all(calls.map((c) => c.finished));
    for (const call of calls) {
      expect(call.events).toEqual(['error']);
      expect((call.errors[0] as NodeJS.ErrnoException).code).toBe('ECONNREFUSED');
      expect(kindOf(call)).toBe('connect_refused');
    }
  });

  it('a TCP connect that never completes fails as connect_timeout, on time', async () => {
    const blackhole = await startBlackholeUpstream();
    const pool = createPool(blackhole.url, { connectTimeoutMs: 200 });
    const started = performance.now();
    const call = send(pool, grpcRequest(pool, null));
    await call.finished;
    expect(call.errors[0]).toBeInstanceOf(UpstreamTimeoutError);
    expect(kindOf(call)).toBe('connect_timeout');
    expect(performance.now() - started).toBeGreaterThanOrEqual(190);
  });

  it('the TLS handshake counts as connecting; a silent HTTP/2 preface does not', async () => {
    const silent = createNetServer((socket) => socket.on('error', () => {}));
    const running = await startServer(silent);
    onTestFinished(running.close);
    const tls = createPool(`https://127.0.0.1:${running.port}`, { connectTimeoutMs: 100 });
    const overTls = send(tls, grpcRequest(tls, null));
    await overTls.finished;
    expect(kindOf(overTls)).toBe('connect_timeout');

    const h2c = createPool(running.url, { connectTimeoutMs: 100 });
    const overH2c = send(h2c, grpcRequest(h2c, null));
    await until(() => overH2c.events.includes('connect'), 'a stream');
    // Three connect timeouts later, still waiting for an answer: the response timer is the exchange's.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(overH2c.errors).toEqual([]);
    overH2c.abort?.();
    expect((overH2c.errors[0] as NodeJS.ErrnoException).code).toBe('ABORT_ERR');
  });

  it('an HTTP/1-only upstream answering h2c fails as protocol', async () => {
    const running = await startServer(createHttpServer((_req, res) => res.end('h1')));
    onTestFinished(running.close);
    const pool = createPool(running.url);
    const call = send(pool, grpcRequest(pool, null));
    await call.finished;
    expect(kindOf(call)).toBe('protocol');
  });

  it('an HTTPS upstream with a certificate nobody vouches for fails as tls', async () => {
    const server = createSecureServer({ key: readFileSync(KEY), cert: readFileSync(CERT) });
    const running = await startServer(server);
    onTestFinished(running.close);
    const pool = createPool(`https://localhost:${running.port}`);
    const call = send(pool, grpcRequest(pool, null));
    await call.finished;
    expect(kindOf(call)).toBe('tls');
  });
});

describe('the HTTP/2 upstream pool: sessions', () => {
  it('opens sessions only as the peer limit requires, never more than maxSessions, and queues the rest', async () => {
    const held: ServerHttp2Stream[] = [];
    let released = false;
    let peak = 0;
    const upstream = await startH2Upstream(
      (stream) => {
        const open = upstream.streams.filter((s) => s.session === stream.session && !s.closed).length;
        peak = Math.max(peak, open);
        if (released) answer(stream, 'ok');
        else held.push(stream);
      },
      { maxConcurrentStreams: 2 },
    );
    const pool = createPool(upstream.url, { maxSessions: 4 });
    const calls = Array.from({ length: 10 }, () => send(pool, grpcRequest(pool, null)));
    // Four sessions of two streams each: every slot taken, two calls wait.
    await until(() => upstream.streams.length === 8, 'eight streams');
    expect(upstream.sessions).toHaveLength(4);
    expect(calls.filter((c) => c.events.length === 0)).toHaveLength(2);
    released = true;
    for (const s of held.splice(0)) answer(s, 'ok');
    await Promise.all(calls.map((c) => c.finished));
    expect(calls.map((c) => c.errors.length)).toEqual(Array(10).fill(0));
    expect(upstream.sessions).toHaveLength(4);
    expect(upstream.streams).toHaveLength(10);
    expect(peak).toBeLessThanOrEqual(2);
  });

  it('dispatchFresh sends on a session of its own, closed after the call', async () => {
    const upstream = await startH2Upstream((stream) => answer(stream, 'ok'));
    const pool = createPool(upstream.url);
    await send(pool, grpcRequest(pool, null)).finished;
    const fresh = new Recorder(pool);
    pool.dispatchFresh(grpcRequest(pool, null), fresh);
    await fresh.finished;
    expect(fresh.body).toBe('ok');
    expect(fresh.opening).toBe(true);
    expect(upstream.sessions).toHaveLength(2);
    await until(() => upstream.sessions[1]?.destroyed === true, 'the fresh session closed');
    expect(upstream.sessions[0]?.closed).toBe(false);
  });

  it('closes an idle session after idleTimeoutMs', async () => {
    const upstream = await startH2Upstream((stream) => answer(stream, 'ok'));
    const pool = createPool(upstream.url, { idleTimeoutMs: 50 });
    await send(pool, grpcRequest(pool, null)).finished;
    await until(() => upstream.sessions[0]?.destroyed === true, 'the idle session closed');
    const next = send(pool, grpcRequest(pool, null));
    await next.finished;
    expect(next.opening).toBe(true);
    expect(upstream.sessions).toHaveLength(2);
  });

  it('close() fails what waits and what runs, and resolves once every session is closed', async () => {
    const upstream = await startH2Upstream(() => {}, { maxConcurrentStreams: 1 });
    const pool = createPool(upstream.url, { maxSessions: 1 });
    const running = send(pool, grpcRequest(pool, null));
    const waiting = send(pool, grpcRequest(pool, null));
    await until(() => upstream.streams.length === 1, 'one stream');
    await pool.close();
    await Promise.all([running.finished, waiting.finished]);
    expect(running.events).toEqual(['connect', 'sent', 'error']);
    expect(waiting.events).toEqual(['error']);
    await until(() => upstream.sessions[0]?.closed === true, 'the session closed upstream');
    const late = send(pool, grpcRequest(pool, null));
    expect(late.events).toEqual(['error']);
  });
});

/**
 * Runs `script` in a child Node (with tsx, so it can import src/), and resolves with its stdout once
 * it exits on its own, which it must do within 10 s.
 */
async function runChild(script: string, env: Record<string, string>): Promise<string> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  onTestFinished(() => {
    child.kill('SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const deadline = setTimeout(() => child.kill('SIGKILL'), 10_000);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('exit', (c, s) => resolve([c, s])));
  clearTimeout(deadline);
  expect(stderr).toBe('');
  expect(signal).toBeNull();
  expect(code).toBe(0);
  return stdout;
}

/**
 * A child that sends one call per URL in H2_URLS, prints what it got as JSON lines, closes the pool
 * if H2_CLOSE, and must then exit by itself (its sessions' idle timeout is a minute: only their
 * being unreferenced, or closed, lets it).
 */
const CHILD = `
const { createH2UpstreamPool } = await import(${JSON.stringify(H2_UPSTREAM_MODULE)});
const { UpstreamHandler } = await import(${JSON.stringify(POOL_MODULE)});
class Handler extends UpstreamHandler {
  constructor() { super(); this.out = { status: 0, body: '', trailers: [] }; this.done = new Promise((r) => (this.settle = r)); }
  upstreamAssigned() {}
  upstreamBodySent() {}
  upstreamRequestSent() {}
  upstreamResponseStarted() {}
  upstreamHeaders(status) { this.out.status = status; return true; }
  upstreamData(chunk) { this.out.body += chunk; return true; }
  upstreamComplete(trailers) { this.out.trailers = (trailers ?? []).map(String); this.settle(); }
  upstreamFailed(err) { this.out.error = err.code; this.settle(); }
}
for (const url of process.env.H2_URLS.split(' ')) {
  const pool = createH2UpstreamPool({ upstream: new URL(url), connectTimeoutMs: 2000, idleTimeoutMs: 60000, onStrayError: (err) => console.error(err) });
  const handler = new Handler();
  pool.dispatch({ method: 'POST', path: '/x', headers: ['te', 'trailers'], body: null, servername: pool.servername }, handler);
  await handler.done;
  console.log(JSON.stringify(handler.out));
  if (process.env.H2_CLOSE === '1') await pool.close();
}
`;

describe('the HTTP/2 upstream pool: process and TLS', () => {
  it.each([
    ['close()', '1'],
    ['idle sessions alone', '0'],
  ])('leaves nothing that holds the process open: %s', async (_name, close) => {
    const upstream = await startH2Upstream((stream) => answer(stream, 'ok'));
    const out = await runChild(CHILD, { H2_URLS: upstream.url, H2_CLOSE: close });
    expect(JSON.parse(out)).toEqual({ status: 200, body: 'ok', trailers: ['grpc-status', '0', 'grpc-message', 'ok'] });
  });

  it('over TLS: ALPN h2, SNI on the upstream name (none for an IP), certificates checked; an upstream without h2 is refused', async () => {
    const servernames: Array<string | false> = [];
    const secure = createSecureServer({ key: readFileSync(KEY), cert: readFileSync(CERT) });
    secure.on('session', (session) => session.on('error', () => {}));
    secure.on('stream', (stream) => {
      servernames.push((stream.session?.socket as { servername?: string | false } | undefined)?.servername ?? false);
      answer(stream, 'over tls');
    });
    const h2 = await startServer(secure);
    onTestFinished(h2.close);
    // Without h2 in its ALPN, an upstream answers with an alert; without ALPN at all, the pool refuses it.
    const h1only = await startServer(createHttpsServer({ key: readFileSync(KEY), cert: readFileSync(CERT), ALPNProtocols: ['http/1.1'] }));
    onTestFinished(h1only.close);
    const noAlpn = await startServer(createTlsServer({ key: readFileSync(KEY), cert: readFileSync(CERT) }, (socket) => socket.on('error', () => {})));
    onTestFinished(noAlpn.close);
    const urls = [`https://localhost:${h2.port}`, `https://127.0.0.1:${h2.port}`, `https://localhost:${h1only.port}`, `https://localhost:${noAlpn.port}`];
    const out = await runChild(CHILD, { H2_URLS: urls.join(' '), H2_CLOSE: '1', NODE_EXTRA_CA_CERTS: CERT });
    const [byName, byIp, alert, none] = out.trim().split('\n').map((line) => JSON.parse(line) as { status: number; body: string; error?: string });
    expect(byName).toMatchObject({ status: 200, body: 'over tls' });
    expect(byIp).toMatchObject({ status: 200, body: 'over tls' });
    expect(servernames).toEqual(['localhost', false]);
    expect(alert?.error).toBe('ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL');
    expect(none?.error).toBe('ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL');
    expect(classifyUpstreamError({ code: none?.error }).kind).toBe('tls');
  });
});
