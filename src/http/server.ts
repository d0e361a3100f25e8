/** The listening HTTP servers: client-side timeouts, binding with clear errors, and a close that leaves nothing open. */
import { type IncomingMessage, type Server, type ServerOptions, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { ListenError } from '../errors.js';

export interface ServerListeners {
  readonly onRequest: (req: IncomingMessage, res: ServerResponse) => void;
  readonly onUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
}

export interface ClientLimits {
  /** Idle keep-alive connections close after this; above load balancers' usual 60 s avoids the reuse race. */
  readonly keepAliveTimeoutMs: number;
  /** A request exchange with no bytes moving either way for this long is cut; 0 = off. */
  readonly idleTimeoutMs: number;
  /** Larger request heads get 431. */
  readonly maxHeaderSize: number;
  /** The request listener arms the client idle timer itself, only on requests it does not forward. */
  readonly idleSetByRouter?: boolean;
}

const CLIENT_IDLE_MARGIN_MS = 1_000;

/** The client-side idle timeout: later than the upstream one, which should fire first and blame the right side. */
export function clientIdleMs(limits: Pick<ClientLimits, 'idleTimeoutMs'>): number {
  return limits.idleTimeoutMs === 0 ? 0 : limits.idleTimeoutMs + CLIENT_IDLE_MARGIN_MS;
}

/** Slowloris: a request head must arrive within this; kept above keepAliveTimeout as Node's docs advise. */
export function headTimeoutMs(limits: Pick<ClientLimits, 'keepAliveTimeoutMs'>): number {
  return limits.keepAliveTimeoutMs + 1_000;
}

export function createHttpServer({ onRequest, onUpgrade }: ServerListeners, limits: ClientLimits): Server {
  // Not `shouldUpgradeCallback` (Node >= 24.9): measured on 24.21, a request it declines loses the
  // requests pipelined behind it. Every upgrade reaches the 'upgrade' listener, which replays the
  // ones the proxy declines (listener.ts), the same on every Node version.
  const options: ServerOptions = {
    // llhttp in strict mode rejects CL+TE, duplicate CL, bare LF and obs-fold: never relax it.
    insecureHTTPParser: false,
    maxHeaderSize: limits.maxHeaderSize,
    // No cap on a whole request: a large upload is legitimate; stalls are caught by the idle timeout.
    requestTimeout: 0,
    headersTimeout: headTimeoutMs(limits),
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
