/**
 * The listening HTTP servers: client-side timeouts, the answer to a request head the server cannot
 * take (too slow, too large, malformed), binding with clear errors, and a close that leaves nothing open.
 */
import { type IncomingMessage, type Server, type ServerOptions, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { ListenError } from '../errors.js';
import { errorBody, sendJsonOnSocket } from '../respond.js';

export interface ServerListeners {
  readonly onRequest: (req: IncomingMessage, res: ServerResponse) => void;
  readonly onUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
  /** Where refused request heads are reported; without it they are answered but not logged. */
  readonly log?: Logger | undefined;
}

export interface ClientLimits {
  /** Idle keep-alive connections close after this; above load balancers' usual 60 s avoids the reuse race. */
  readonly keepAliveTimeoutMs: number;
  /** A request head must be in within this: from its first byte here, from the accept for a connection's first (preface.ts). */
  readonly requestHeaderTimeoutMs: number;
  /** A request exchange with no bytes moving either way for this long is cut; 0 = off. */
  readonly idleTimeoutMs: number;
  /** Larger request heads get 431. */
  readonly maxHeaderSize: number;
  /** The request listener arms the client idle timer itself, only on requests it does not forward. */
  readonly idleSetByRouter?: boolean;
}

const CLIENT_IDLE_MARGIN_MS = 1_000;

/**
 * How often Node looks for request heads past `headersTimeout` (its `connectionsCheckingInterval`,
 * 30 s by default): a head timeout fires within this of its value. The check walks only the
 * connections inside a request, not idle keep-alive ones (measured in docs/architecture.md).
 */
export const HEAD_CHECK_INTERVAL_MS = 500;

/** The client-side idle timeout: later than the upstream one, which should fire first and blame the right side. */
export function clientIdleMs(limits: Pick<ClientLimits, 'idleTimeoutMs'>): number {
  return limits.idleTimeoutMs === 0 ? 0 : limits.idleTimeoutMs + CLIENT_IDLE_MARGIN_MS;
}

interface HeadRefusal {
  readonly status: number;
  readonly msg: string;
}

/** Node's own statuses for the heads it cannot take, answered with the proxy's JSON body. */
const REFUSALS: Readonly<Record<string, HeadRefusal>> = {
  ERR_HTTP_REQUEST_TIMEOUT: { status: 408, msg: 'request head timed out' },
  HPE_HEADER_OVERFLOW: { status: 431, msg: 'request head too large' },
  HPE_CHUNK_EXTENSIONS_OVERFLOW: { status: 413, msg: 'chunk extensions too large' },
};
const MALFORMED: HeadRefusal = { status: 400, msg: 'malformed request' };
export const HEAD_TIMED_OUT = REFUSALS.ERR_HTTP_REQUEST_TIMEOUT as HeadRefusal;

/**
 * Whether the connection's current response has begun: a refusal written now would land inside it.
 * (Before that, as in Node's own handling, the refusal is the answer to the request in flight, whose
 * body may be what failed to parse.) Node keeps that response in the socket's `_httpMessage`.
 */
function answerStarted(socket: Duplex): boolean {
  const message = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
  return message !== null && message !== undefined && message.headersSent;
}

/**
 * Answers a head the server will not take and closes the connection: destroyed rather than ended, so
 * Node's parser reads nothing more from it (a late end of the head must not become a request).
 */
export function refuseHead(socket: Duplex, refusal: HeadRefusal, log: Logger | undefined, code?: string): void {
  const answered = socket.writable && !socket.destroyed && !answerStarted(socket);
  if (answered) sendJsonOnSocket(socket, refusal.status, errorBody(refusal.msg));
  socket.destroy();
  if (log === undefined) return;
  // Never the head's bytes: they may hold credentials or a query string.
  if (refusal.status === 408) log.info({ status: 408, answered }, 'client stalled: request head timeout');
  else log.debug({ status: refusal.status, code, answered }, 'request head refused');
}

/**
 * Node's 'clientError': a head past the timeout, too large or malformed; a reset needs no answer. A
 * connection already closed needs none either: the sniffer's deadline (preface.ts) may have cut it
 * just before Node's check, still counting it as open, found the same head late.
 */
function onClientError(log: Logger | undefined): (err: NodeJS.ErrnoException, socket: Duplex) => void {
  return (err, socket) => {
    if (err.code === 'ECONNRESET' || socket.destroyed) {
      socket.destroy();
      return;
    }
    refuseHead(socket, (err.code === undefined ? undefined : REFUSALS[err.code]) ?? MALFORMED, log, err.code);
  };
}

export function createHttpServer({ onRequest, onUpgrade, log }: ServerListeners, limits: ClientLimits): Server {
  // Not `shouldUpgradeCallback` (Node >= 24.9): measured on 24.21, a request it declines loses the
  // requests pipelined behind it. Every upgrade reaches the 'upgrade' listener, which replays the
  // ones the proxy declines (listener.ts), the same on every Node version.
  const options: ServerOptions = {
    // llhttp in strict mode rejects CL+TE, duplicate CL, bare LF and obs-fold: never relax it.
    insecureHTTPParser: false,
    maxHeaderSize: limits.maxHeaderSize,
    // No cap on a whole request: a large upload is legitimate; stalls are caught by the idle timeout.
    requestTimeout: 0,
    // Node times a head from its first byte (a keep-alive connection's idle time before it is not
    // counted) and only at each check: hence the short interval.
    headersTimeout: limits.requestHeaderTimeoutMs,
    connectionsCheckingInterval: HEAD_CHECK_INTERVAL_MS,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
  };
  const server = createServer(options, onRequest);
  // Node silently drops header lines past 2 000 (a `Connection` line among them); the byte limit bounds them instead.
  server.maxHeadersCount = 0;
  // Forwarded exchanges are watched on the upstream socket, which knows whom to blame. The client-side
  // idle timer catches the rest (a slow client on a path the proxy answers itself): on every connection
  // of a server that never forwards, and set per request by the router where it does, since a socket
  // timeout costs a timer refresh on every read and write of a forwarded exchange.
  server.timeout = limits.idleSetByRouter === true ? 0 : clientIdleMs(limits);
  server.on('clientError', onClientError(log));
  server.on('upgrade', onUpgrade);
  // CONNECT makes no sense for a reverse proxy; answer instead of silently dropping the socket.
  server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
    socket.on('error', () => {});
    socket.end('HTTP/1.1 405 Method Not Allowed\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
  });
  return server;
}

export function listen(server: Server, port: number, host: string, option = '--port'): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      server.off('listening', onListening);
      reject(new ListenError(`cannot listen on ${host}:${port}: ${describeListenError(err, option)}`, err));
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve(server.address() as AddressInfo);
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port, host);
  });
}

function describeListenError(err: NodeJS.ErrnoException, option: string): string {
  switch (err.code) {
    case 'EADDRINUSE':
      return `address already in use (choose another ${option})`;
    case 'EACCES':
      return `permission denied (ports below 1024 need privileges; choose another ${option})`;
    case 'EADDRNOTAVAIL':
      return 'address not available on this machine (check the host)';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'host name could not be resolved (check the host)';
    default:
      return err.code ?? err.message;
  }
}

/**
 * Stops accepting and resolves once every connection has ended, or cuts the
 * rest after `graceMs`. Idle keep-alive connections close at once; busy ones
 * close after their current response (the router sends `Connection: close`).
 */
export function closeServer(server: Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    const timer = setTimeout(() => server.closeAllConnections(), graceMs);
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}
