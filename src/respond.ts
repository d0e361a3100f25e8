/** The proxy's own answers: small JSON bodies, on a response or on a raw (upgrade) socket. */
import { type IncomingMessage, STATUS_CODES, type ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import type { Duplex } from 'node:stream';

export interface ErrorBody {
  readonly ok: false;
  readonly msg: string;
}

export function errorBody(msg: string): ErrorBody {
  return { ok: false, msg };
}

/** A response to an HTTP/1.1 client, or to an HTTP/2 one through Node's compatibility API. */
export type AnyResponse = ServerResponse | Http2ServerResponse;

export function sendJson(res: AnyResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) {
    // Too late for a clean answer: a broken connection is better than a response that looks complete.
    res.destroy();
    return;
  }
  const text = JSON.stringify(body);
  (res as ServerResponse).writeHead(status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
  });
  res.end(text);
}

/** Answers on a socket that Node handed over for an upgrade, then closes it. */
export function sendJsonOnSocket(socket: Duplex, status: number, body: unknown): void {
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  const text = JSON.stringify(body);
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
      'content-type: application/json; charset=utf-8\r\n' +
      `content-length: ${Buffer.byteLength(text)}\r\n` +
      'connection: close\r\n\r\n' +
      text,
  );
}

/** A handler of one of the proxy's own paths. */
export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

const ALLOW_GET_HEAD = { allow: 'GET, HEAD' };

/** The proxy's own paths are read-only: any other method gets 405 with `Allow`. False when it was answered. */
export function allowGetOrHead(req: IncomingMessage, res: ServerResponse): boolean {
  if (req.method === 'GET' || req.method === 'HEAD') return true;
  sendJson(res, 405, errorBody('method not allowed'), ALLOW_GET_HEAD);
  return false;
}
