/**
 * HTTP/2 peers for the h2c tests. Node's own client where its behaviour is the point (a well-behaved
 * client); the frame-level peers of h2-frames.ts (re-exported here) where Node's client would protect
 * the server from itself: it queues streams beyond the peer's SETTINGS_MAX_CONCURRENT_STREAMS, stops
 * sending after a GOAWAY, sends END_STREAM before its RST_STREAM, and may refuse oversized header
 * lists locally, so a test using it could pass without the proxy doing anything. Also HTTP/2 and
 * dual-protocol upstreams, a reader for raw HTTP/1.1 answers, and the proxy and HTTP/1.1 upstream
 * the HTTP/2 and gRPC tests start. Everything started here is closed in onTestFinished.
 */
import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
  connect as connectH2,
  constants,
  createServer as createH2Server,
} from 'node:http2';
import { type IncomingMessage, type RequestListener, type ServerResponse, createServer as createHttpServer } from 'node:http';
import { connect, createServer as createNetServer } from 'node:net';
import { expect, onTestFinished } from 'vitest';
import type { ProxyConfig } from '../src/index.js';
import { type Proxy, type Running, type Upstream, echoHandler, httpRequest, startProxy, startServer, startUpstream } from './helpers.js';
import { PREFACE } from './h2-frames.js';

export * from './h2-frames.js';

// ---------------------------------------------------------------------------------------------
// The proxy and an HTTP/1.1 upstream, for one test

/** An HTTP/1.1 upstream answering with `handler` (an echo by default); closed when the test ends. */
export async function upstreamWith(handler: RequestListener = echoHandler): Promise<Upstream> {
  const upstream = await startUpstream(handler);
  onTestFinished(upstream.close);
  return upstream;
}

/** A proxy in front of `url`, with `overrides` over the defaults; closed when the test ends. */
export async function proxyTo(url: string, overrides: Partial<ProxyConfig> = {}): Promise<Proxy> {
  const proxy = await startProxy(url, overrides);
  onTestFinished(proxy.close);
  return proxy;
}

/** The proxy still answers both protocols. */
export async function expectServing(proxy: Proxy): Promise<void> {
  expect((await h2Get(proxy.url, '/api/still-there')).status).toBe(200);
  expect((await httpRequest(`${proxy.url}/api/still-there`)).status).toBe(200);
}

// ---------------------------------------------------------------------------------------------
// Node's client

const settingsReceived = new WeakMap<ClientHttp2Session, Promise<void>>();

/** Resolves once the peer's first SETTINGS frame has arrived on a session opened with h2Session. */
export function remoteSettingsArrived(session: ClientHttp2Session): Promise<void> {
  return settingsReceived.get(session) ?? Promise.reject(new Error('not a session of h2Session'));
}

/** An h2c session to `url` (prior knowledge), connected; destroyed when the test ends. */
export async function h2Session(url: string, options: Parameters<typeof connectH2>[1] = {}): Promise<ClientHttp2Session> {
  const session = connectH2(url, options);
  const arrived = new Promise<void>((resolve) => session.once('remoteSettings', () => resolve()));
  settingsReceived.set(session, arrived);
  // A session error also fails each stream: tests read it there.
  session.on('error', () => {});
  onTestFinished(() => {
    if (!session.destroyed) session.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    session.once('connect', () => resolve());
    session.once('error', reject);
    session.once('close', () => reject(new Error(`h2 session to ${url} closed before it connected`)));
  });
  return session;
}

export interface H2Response {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  /** The trailers, when a trailing HEADERS frame came. */
  readonly trailers: IncomingHttpHeaders | undefined;
  /** The response HEADERS frame carried END_STREAM: a trailers-only (gRPC) or bodiless answer. */
  readonly endedWithHeaders: boolean;
}

/** One stream on `session`; resolves when it ends, rejects if it fails (reset, session error). */
export function h2Request(session: ClientHttp2Session, headers: OutgoingHttpHeaders, body?: Buffer | string): Promise<H2Response> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': body === undefined ? 'GET' : 'POST', ...headers }, { endStream: body === undefined });
    collectResponse(stream).then(resolve, reject);
    if (body !== undefined) stream.end(body);
  });
}

export function collectResponse(stream: ClientHttp2Stream): Promise<H2Response> {
  return new Promise((resolve, reject) => {
    let headers: IncomingHttpHeaders | undefined;
    let trailers: IncomingHttpHeaders | undefined;
    let endedWithHeaders = false;
    const chunks: Buffer[] = [];
    stream.on('response', (h, flags) => {
      headers = h;
      endedWithHeaders = (flags & constants.NGHTTP2_FLAG_END_STREAM) !== 0;
    });
    stream.on('trailers', (t: IncomingHttpHeaders) => {
      trailers = t;
    });
    stream.on('data', (c: Buffer) => chunks.push(c));
    let failure: Error | undefined;
    stream.on('error', (err: Error) => {
      failure = err;
    });
    // Decided on 'close', when rstCode is known: a reset also emits 'error' (ERR_HTTP2_STREAM_ERROR) first.
    stream.on('close', () => {
      if (headers === undefined || failure !== undefined || stream.rstCode !== constants.NGHTTP2_NO_ERROR) {
        const why = `stream closed with code ${stream.rstCode} (response ${headers === undefined ? 'never came' : 'cut'})${failure === undefined ? '' : `: ${failure.message}`}`;
        reject(Object.assign(new Error(why), { rstCode: stream.rstCode, cause: failure }));
        return;
      }
      resolve({ status: Number(headers[':status']), headers, body: Buffer.concat(chunks), trailers, endedWithHeaders });
    });
  });
}

/** One GET on a session of its own. */
export async function h2Get(url: string, path: string, headers: OutgoingHttpHeaders = {}): Promise<H2Response> {
  const session = await h2Session(url);
  try {
    return await h2Request(session, { ':path': path, ...headers });
  } finally {
    session.close();
  }
}

/**
 * The rapid reset attack (CVE-2023-44487) on one session: opens streams and cancels each at once, until
 * `limit` streams, `ms` passed, or the session closed (the proxy sent GOAWAY); returns how many.
 */
export async function rapidReset(session: ClientHttp2Session, limit: number, ms: number): Promise<number> {
  const deadline = Date.now() + ms;
  let opened = 0;
  while (opened < limit && Date.now() < deadline && !session.closed && !session.destroyed) {
    for (let i = 0; i < 100 && opened < limit; i++) {
      try {
        const stream = session.request({ ':path': `/api/attack/${opened}` });
        stream.on('error', () => {});
        stream.close(constants.NGHTTP2_CANCEL);
        opened++;
      } catch {
        break; // the proxy sent GOAWAY or closed the session
      }
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  return opened;
}

// ---------------------------------------------------------------------------------------------
// An HTTP/2 upstream

export interface H2Upstream extends Running {
  /** The request headers of every stream, in arrival order. */
  readonly seen: IncomingHttpHeaders[];
}

/** An h2c (prior knowledge) upstream calling `handler` for every stream; closed when the test ends. */
export async function startH2Upstream(handler: (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void): Promise<H2Upstream> {
  const seen: IncomingHttpHeaders[] = [];
  const sessions = new Set<ServerHttp2Session>();
  const server = createH2Server();
  server.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    session.on('error', () => {});
    session.once('close', () => sessions.delete(session));
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    seen.push(headers);
    handler(stream, headers);
  });
  const running = await startServer(server);
  const close = async (): Promise<void> => {
    for (const session of sessions) session.destroy();
    await running.close();
  };
  onTestFinished(close);
  return { ...running, close, seen };
}

/**
 * One upstream port for both legs of the proxy: HTTP/1.1 requests go to `http1`, and connections that
 * open with the HTTP/2 preface are piped to `h2Port` (a grpc-js server, which speaks only HTTP/2).
 * Closed when the test ends.
 */
export async function startDualUpstream(http1: RequestListener, h2Port: number): Promise<Running> {
  const httpServer = createHttpServer(http1);
  const server = createNetServer((socket) => {
    socket.on('error', () => {});
    let first = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      first = Buffer.concat([first, chunk]);
      const n = Math.min(first.length, PREFACE.length);
      const looksLikePreface = first.subarray(0, n).equals(PREFACE.subarray(0, n));
      if (looksLikePreface && n < PREFACE.length) return; // not decided yet
      socket.off('data', onData);
      socket.pause();
      if (looksLikePreface) {
        const backend = connect(h2Port, '127.0.0.1');
        backend.on('error', () => socket.destroy());
        socket.once('close', () => backend.destroy());
        backend.once('close', () => socket.destroy());
        backend.write(first);
        socket.pipe(backend).pipe(socket);
      } else {
        socket.unshift(first);
        httpServer.emit('connection', socket);
      }
      socket.resume();
    };
    socket.on('data', onData);
  });
  const running = await startServer(server);
  onTestFinished(running.close);
  return running;
}

/** Requests under /api/held/ wait at the upstream until the test releases them; the rest are echoed. */
export function holdingUpstream(): { handler: (req: IncomingMessage, res: ServerResponse) => void; held: ServerResponse[]; releaseAll(): void } {
  const held: ServerResponse[] = [];
  return {
    held,
    handler: (req, res) => {
      if (req.url?.startsWith('/api/held/') !== true) {
        echoHandler(req, res);
        return;
      }
      req.resume();
      held.push(res);
    },
    releaseAll() {
      for (const res of held.splice(0)) if (!res.writableEnded && !res.destroyed) res.writeHead(200).end(`released ${res.req.url ?? ''}`);
    },
  };
}


// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1

export interface Http1Answer {
  readonly status: number;
  /** Header names in lower case; repeated ones joined with ", ". */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}

/**
 * Splits the bytes of an HTTP/1.1 connection into its responses (Content-Length or chunked framing; a
 * response with neither ends with the connection). Throws on bytes that are not a response.
 */
export function parseHttp1Answers(bytes: Buffer): Http1Answer[] {
  const answers: Http1Answer[] = [];
  let at = 0;
  while (at < bytes.length) {
    const end = bytes.indexOf('\r\n\r\n', at, 'latin1');
    if (end === -1) throw new Error(`incomplete response head: ${bytes.subarray(at).toString('latin1')}`);
    const [statusLine = '', ...lines] = bytes.subarray(at, end).toString('latin1').split('\r\n');
    const match = /^HTTP\/1\.[01] (\d{3}) /.exec(statusLine);
    if (match === null) throw new Error(`not a status line: ${JSON.stringify(statusLine)}`);
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    }
    const status = Number(match[1]);
    at = end + 4;
    let body: Buffer;
    if (status < 200 || status === 204 || status === 304) {
      body = Buffer.alloc(0);
    } else if (headers['content-length'] !== undefined) {
      const length = Number(headers['content-length']);
      body = bytes.subarray(at, at + length);
      if (body.length < length) throw new Error(`body cut at ${body.length} of ${length} bytes`);
      at += length;
    } else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
      const chunks: Buffer[] = [];
      for (;;) {
        const lineEnd = bytes.indexOf('\r\n', at, 'latin1');
        if (lineEnd === -1) throw new Error('chunked body cut');
        const size = parseInt(bytes.subarray(at, lineEnd).toString('latin1'), 16);
        at = lineEnd + 2;
        if (size === 0) {
          // No trailers: the empty line follows at once; else the trailer section ends with one.
          const trailerEnd = bytes.subarray(at, at + 2).toString('latin1') === '\r\n' ? at : bytes.indexOf('\r\n\r\n', at, 'latin1') + 2;
          at = trailerEnd + 2;
          break;
        }
        chunks.push(bytes.subarray(at, at + size));
        at += size + 2;
      }
      body = Buffer.concat(chunks);
    } else {
      body = bytes.subarray(at);
      at = bytes.length;
    }
    answers.push({ status, headers, body: Buffer.from(body) });
  }
  return answers;
}
