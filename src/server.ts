/** The listening HTTP server: binding with clear errors, and a close that leaves nothing open. */
import { type IncomingMessage, type ServerResponse, type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { ListenError } from './errors.js';

export interface ServerListeners {
  readonly onRequest: (req: IncomingMessage, res: ServerResponse) => void;
  readonly onUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
}

export function createHttpServer({ onRequest, onUpgrade }: ServerListeners): Server {
  const server = createServer({ insecureHTTPParser: false }, onRequest);
  server.on('upgrade', onUpgrade);
  // CONNECT makes no sense for a reverse proxy; answer instead of silently dropping the socket.
  server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
    socket.on('error', () => {});
    socket.end('HTTP/1.1 405 Method Not Allowed\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
  });
  return server;
}

export function listen(server: Server, port: number, host: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      server.off('listening', onListening);
      reject(new ListenError(`cannot listen on ${host}:${port}: ${describeListenError(err)}`, err));
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

function describeListenError(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'EADDRINUSE':
      return 'address already in use (choose another --port)';
    case 'EACCES':
      return 'permission denied (ports below 1024 need privileges; choose another --port)';
    case 'EADDRNOTAVAIL':
      return 'address not available on this machine (check --host)';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'host name could not be resolved (check --host)';
    default:
      return err.code ?? err.message;
  }
}

/**
 * Stops accepting, lets in-flight requests finish for up to `graceMs`, then
 * cuts whatever is left, including upgraded sockets, which Node does not track.
 */
export function closeServer(server: Server, upgraded: Iterable<Duplex>, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    const timer = setTimeout(() => server.closeAllConnections(), graceMs);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
    for (const socket of upgraded) socket.destroy();
  });
}
