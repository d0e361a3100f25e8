/**
 * Real servers on port 0, a capturing logger, and a parser for the
 * Prometheus text format. Every start* returns a `close`; tests register it
 * with onTestFinished/afterAll so nothing outlives its test.
 */
import { type IncomingMessage, type RequestListener, type ServerResponse, createServer, request } from 'node:http';
import { type AddressInfo, type Server as NetServer, type Socket, connect, createServer as createNetServer } from 'node:net';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import WebSocket from 'ws';
import { type App, ConfigError, type ProxyConfig, DEFAULTS, buildApp } from '../src/index.js';

export interface Running {
  readonly url: string;
  readonly port: number;
  readonly close: () => Promise<void>;
}

/** Listens on 127.0.0.1 (port 0 unless given); `close` also destroys open connections, upgraded ones included. */
export async function startServer(server: NetServer, port = 0): Promise<Running> {
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${bound}`,
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        if (!server.listening) {
          resolve();
          return;
        }
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

export interface Upstream extends Running {
  readonly server: ReturnType<typeof createServer>;
  /** Every request the upstream saw, in arrival order. */
  readonly seen: IncomingMessage[];
}

export async function startUpstream(handler: RequestListener, port = 0): Promise<Upstream> {
  const seen: IncomingMessage[] = [];
  const server = createServer((req, res) => {
    seen.push(req);
    handler(req, res);
  });
  const running = await startServer(server, port);
  return { ...running, server, seen };
}

/** An upstream that answers every request with JSON describing what it received. */
export function echoHandler(req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-echo-method': req.method ?? '', 'x-echo-url': req.url ?? '' });
    res.end(body);
  });
}

export interface LogCapture {
  readonly logger: Logger;
  readonly lines: Array<Record<string, unknown>>;
}

export function captureLogs(level: pino.Level = 'debug'): LogCapture {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level }, destination), lines };
}

export interface Proxy extends Running {
  readonly app: App;
  /** The admin listener's base URL, when metricsPort is set. */
  readonly adminUrl: string | undefined;
  readonly logs: LogCapture['lines'];
  readonly metrics: () => Promise<string>;
}

export async function startProxy(upstreamUrl: string, overrides: Partial<ProxyConfig> = {}): Promise<Proxy> {
  const capture = captureLogs();
  const config: ProxyConfig = {
    ...DEFAULTS,
    port: 0,
    host: '127.0.0.1',
    ...overrides,
    upstream: new URL(upstreamUrl),
    demo: false,
  };
  const app = buildApp(config, { logger: capture.logger });
  const { port, admin } = await app.listen();
  const url = `http://127.0.0.1:${port}`;
  return {
    app,
    url,
    port,
    adminUrl: admin === undefined ? undefined : `http://127.0.0.1:${admin.port}`,
    logs: capture.lines,
    close: () => app.close(1_000),
    metrics: async () => {
      const base = admin === undefined ? url : `http://127.0.0.1:${admin.port}`;
      const headers: Record<string, string> = config.metricsToken === undefined ? {} : { authorization: `Bearer ${config.metricsToken}` };
      return (await fetch(`${base}${config.metricsPath}`, { headers })).text();
    },
  };
}

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Parses the Prometheus text exposition format (0.0.4) into samples; throws on a malformed line. */
export function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match === null) throw new Error(`malformed exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1] as string] = (pair[2] as string).replace(/\\(.)/g, (_m, c: string) => (c === 'n' ? '\n' : c));
    }
    const raw = match[3] as string;
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw);
    samples.push({ name: match[1] as string, labels, value });
  }
  return samples;
}

/** The value of the one sample with this name and exactly these labels, or undefined. */
export function sampleValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels);
  const found = parseExposition(text).filter(
    (s) => s.name === name && Object.keys(s.labels).length === wanted.length && wanted.every(([k, v]) => s.labels[k] === v),
  );
  if (found.length > 1) throw new Error(`more than one sample ${name} ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

/** The sum of every sample named `name` whose labels include `labels` (and maybe others). */
export function total(text: string, name: string, labels: Record<string, string> = {}): number {
  return parseExposition(text)
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}

/** Sends raw bytes on a fresh connection and resolves with everything the server sent until it closed (or `waitMs`). */
export function rawExchange(port: number, payload: string | Buffer, waitMs = 2_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(), waitMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
    socket.write(payload);
  });
}

export interface SimpleResponse {
  readonly status: number;
  readonly headers: IncomingMessage['headers'];
  readonly body: Buffer;
}

/** One request with node:http (fetch would hide hop-by-hop headers and refuse some methods). */
export function httpRequest(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: Buffer | string } = {},
): Promise<SimpleResponse> {
  const headers = { ...options.headers };
  // Node's client sends a DELETE/GET body with no framing at all unless told its length.
  if (options.body !== undefined && headers['content-length'] === undefined) {
    headers['content-length'] = String(Buffer.byteLength(options.body));
  }
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Resolves once `predicate` holds, checking on every event-loop turn; for state changed by another socket's events. */
export async function until(predicate: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Polls an asynchronous reading until it satisfies `accept` (or the deadline), and returns the last reading. */
export async function settle<T>(read: () => Promise<T>, accept: (value: T) => boolean, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let value = await read();
  while (!accept(value) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
    value = await read();
  }
  return value;
}

/**
 * Polls `read` until it has not changed for `stableMs` (or `timeoutMs` passed) and returns the last
 * reading: how far a producer got before backpressure stopped it.
 */
export async function plateau(read: () => number, stableMs = 500, timeoutMs = 10_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = read();
  let since = Date.now();
  while (Date.now() < deadline && Date.now() - since < stableMs) {
    await new Promise((r) => setTimeout(r, 25));
    const now = read();
    if (now !== last) {
      last = now;
      since = Date.now();
    }
  }
  return last;
}

/** What `outcome` resolves with, or `late` when it has not within `ms`: a deadline the failed assertion names. */
export async function within<T>(outcome: Promise<T>, ms: number, late: string): Promise<T | string> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(late), ms);
  });
  try {
    return await Promise.race([outcome, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** One WebSocket session through the proxy at `path`: `messages` echoed round trips, then a normal close. */
export async function wsSession(proxy: Proxy, messages: number, path = '/api/chat'): Promise<void> {
  const ws = new WebSocket(`${proxy.url.replace('http', 'ws')}${path}`);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  for (let i = 0; i < messages; i++) {
    ws.send(`message ${i}`);
    await new Promise((resolve) => ws.once('message', resolve));
  }
  const closed = new Promise((resolve) => ws.once('close', resolve));
  ws.close(1000);
  await closed;
}

/** The ConfigError `fn` throws; fails the test when it throws nothing or something else. */
export function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

/** An upstream answering 500 under /api/fail and echoing everywhere else. */
export function failOrEchoHandler(req: IncomingMessage, res: ServerResponse): void {
  if (req.url?.startsWith('/api/fail') === true) {
    req.resume();
    res.writeHead(500).end();
    return;
  }
  echoHandler(req, res);
}

export interface ReservedPort extends Running {
  /** Lets the process exit with the port still reserved. */
  readonly unref: () => void;
}

/**
 * A port on 127.0.0.1 that refuses connections and that no other test can be given meanwhile. A
 * listener on port 0 accepts one connection of its own and stops listening: the accepted socket
 * keeps the port bound, so the kernel never hands it to a port-0 listener (a port merely freed, it
 * may give to the next listener of a parallel test), and a connection to it meets no listener. A
 * server of the test's own may still listen on it explicitly (`startUpstream(handler, port)`), and
 * the port stays reserved when that server closes. `close` frees it.
 */
export async function reservePort(): Promise<ReservedPort> {
  const listener = createNetServer();
  const accepted = new Promise<Socket>((resolve) => listener.once('connection', resolve));
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (listener.address() as AddressInfo).port;
  const client = connect(port, '127.0.0.1').on('error', () => {});
  const holder = (await accepted).on('error', () => {});
  listener.close(); // stops listening at once; the accepted connection stays
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    unref: () => {
      client.unref();
      holder.unref();
    },
    close: async () => {
      const closed = new Promise((resolve) => holder.once('close', resolve));
      client.destroy();
      holder.destroy();
      await closed;
    },
  };
}

let deadPort: Promise<ReservedPort> | undefined;

/** The address of an upstream that is gone: connections to it are refused for as long as this process lives. */
export async function deadUpstreamUrl(): Promise<string> {
  // One reserved port per test process, shared: it is never given back, and never keeps the process alive.
  deadPort ??= reservePort().then((reserved) => {
    reserved.unref();
    return reserved;
  });
  return (await deadPort).url;
}

/** The text of a `ws` message, whatever shape `ws` delivered it in. */
export function wsText(data: WebSocket.RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}

/**
 * Writes `total` bytes to `res` in 64 KiB chunks (of `fill`) as fast as its reader takes them,
 * waiting for 'drain' whenever a write says so, then ends it. `onWrite` hears each chunk's size as
 * it is handed over, so a test can see how far a slow reader let it get.
 */
export function pumpBody(res: ServerResponse, total: number, onWrite: (bytes: number) => void, fill = 1): void {
  const chunk = Buffer.alloc(64 * 1024, fill);
  let written = 0;
  const pump = (): void => {
    while (written < total) {
      written += chunk.length;
      onWrite(chunk.length);
      if (!res.write(chunk)) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  pump();
}
