/**
 * The soak run's upstream, in-process on 127.0.0.1:0: fast 200s, an echo,
 * 500s, a slow streamed body (target of mid-response aborts), a stalled
 * response (target of aborts before the headers) and a WebSocket echo. It
 * counts what it saw, so a count mismatch can be placed on the right side.
 */
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocketServer } from 'ws';
import { wsText } from '../helpers.js';

export const PATHS = {
  fast: '/api/fast',
  echo: '/api/echo',
  fail: '/api/fail',
  slow: '/api/slow',
  stall: '/api/stall',
  ws: '/api/ws',
} as const;

/** A text message the WebSocket echo answers by closing the session itself (1000) instead of echoing. */
export const WS_CLOSE_REQUEST = 'soak: close please';

/** /api/slow: headers and a first chunk at once, then one chunk per tick. */
const SLOW_CHUNKS = 10;
const SLOW_CHUNK_BYTES = 1024;
const SLOW_TICK_MS = 25;
/** /api/stall: the response headers come this late (clients abort before). */
const STALL_MS = 300;

export interface UpstreamCounts {
  /** HTTP requests by method, as they arrived. */
  readonly requests: Record<string, number>;
  /** HTTP requests whose client (the proxy) went away before the response finished. */
  cancelled: number;
  wsConnections: number;
  wsMessages: number;
}

export interface SoakUpstream {
  readonly url: string;
  readonly counts: UpstreamCounts;
  /** Resolves when a request to /api/stall?id=<id> has arrived here. */
  whenStallSeen(id: string): Promise<void>;
  forgetStall(id: string): void;
  /** Closes idle keep-alive connections (the proxy's pooled upstream sockets). */
  closeIdleConnections(): void;
  close(): Promise<void>;
}

export async function startSoakUpstream(): Promise<SoakUpstream> {
  const counts: UpstreamCounts = { requests: {}, cancelled: 0, wsConnections: 0, wsMessages: 0 };
  const stallWaiters = new Map<string, () => void>();
  const sockets = new Set<Socket>();

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const method = req.method ?? '?';
    counts.requests[method] = (counts.requests[method] ?? 0) + 1;
    res.once('close', () => {
      if (!res.writableFinished) counts.cancelled += 1;
    });
    const url = new URL(req.url ?? '/', 'http://upstream');
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      switch (url.pathname) {
        case PATHS.fast:
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end('{"ok":true}');
          return;
        case PATHS.echo:
          res.writeHead(200, { 'content-type': 'application/octet-stream' });
          res.end(Buffer.concat(chunks));
          return;
        case PATHS.fail:
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end('{"ok":false,"msg":"soak: deliberate failure"}');
          return;
        case PATHS.slow:
          streamSlowly(res);
          return;
        case PATHS.stall:
          stall(res, url.searchParams.get('id') ?? '');
          return;
        default:
          res.writeHead(404, { 'content-type': 'application/json' });
          res.end('{"ok":false,"msg":"soak upstream: no such path"}');
      }
    });
  }

  function stall(res: ServerResponse, id: string): void {
    stallWaiters.get(id)?.();
    stallWaiters.delete(id);
    const timer = setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true,"stalled":true}');
    }, STALL_MS);
    res.once('close', () => clearTimeout(timer));
  }

  const server = createServer(handle);
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  const wss = new WebSocketServer({ server, path: PATHS.ws });
  wss.on('connection', (ws) => {
    counts.wsConnections += 1;
    ws.on('error', () => {});
    ws.on('message', (data, isBinary) => {
      counts.wsMessages += 1;
      // A server-initiated close, by the book: close frame, wait for the client's, then end TCP.
      if (!isBinary && wsText(data) === WS_CLOSE_REQUEST) ws.close(1000, 'upstream done');
      else ws.send(data, { binary: isBinary });
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    counts,
    whenStallSeen: (id) => new Promise<void>((resolve) => stallWaiters.set(id, resolve)),
    forgetStall: (id) => void stallWaiters.delete(id),
    closeIdleConnections: () => server.closeIdleConnections(),
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate();
        wss.close();
        if (!server.listening) {
          resolve();
          return;
        }
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

function streamSlowly(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream' });
  const chunk = Buffer.alloc(SLOW_CHUNK_BYTES, 0x61);
  res.write(chunk);
  let sent = 1;
  const timer = setInterval(() => {
    if (res.destroyed) return;
    res.write(chunk);
    sent += 1;
    if (sent >= SLOW_CHUNKS) {
      clearInterval(timer);
      res.end();
    }
  }, SLOW_TICK_MS);
  res.once('close', () => clearInterval(timer));
}

export const SLOW_BODY_BYTES = SLOW_CHUNKS * SLOW_CHUNK_BYTES;
