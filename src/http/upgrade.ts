/**
 * Upgrades the proxy does not take. RFC 9110 §7.8 lets a server ignore an `Upgrade` it does not
 * want, and RFC 9113 dropped the h2c upgrade, so a request asking for `h2c` (Java's HttpClient does
 * on every `http://` request), or for anything but `websocket`, is answered as a plain HTTP/1.1
 * request. Every request with an `Upgrade` reaches the 'upgrade' listener with its connection's
 * parser gone, so the request head is written back (without the upgrade) in front of the bytes that
 * followed it, and the connection goes through Node's HTTP/1.1 handling again: body, keep-alive and
 * pipelining as usual. (Node 24.9's `shouldUpgradeCallback` would decline it too, but loses the
 * requests pipelined behind it: measured on 24.21.)
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/** The upgrade the proxy forwards: the `Upgrade` header names the `websocket` protocol. */
export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  const upgrade = req.headers.upgrade;
  return upgrade !== undefined && /(^|,)\s*websocket\s*(,|$)/i.test(upgrade);
}

/** Header names that belong to the declined upgrade and are left out of the replayed head. */
const UPGRADE_FIELDS = new Set(['upgrade', 'http2-settings']);

/** `Connection` without the tokens of the declined upgrade; undefined when nothing is left. */
function connectionWithoutUpgrade(value: string): string | undefined {
  const kept = value
    .split(',')
    .map((token) => token.trim())
    .filter((token) => token !== '' && !UPGRADE_FIELDS.has(token.toLowerCase()));
  return kept.length === 0 ? undefined : kept.join(', ');
}

/** The request head as the client sent it, less the upgrade. Values were validated by llhttp: no CR or LF. */
export function headWithoutUpgrade(req: IncomingMessage): Buffer {
  let head = `${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/${req.httpVersion}\r\n`;
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    const lower = name.toLowerCase();
    if (UPGRADE_FIELDS.has(lower)) continue;
    const value = lower === 'connection' ? connectionWithoutUpgrade(raw[i + 1] as string) : raw[i + 1];
    if (value !== undefined) head += `${name}: ${value}\r\n`;
  }
  return Buffer.from(`${head}\r\n`, 'latin1');
}

/**
 * The response Node has attached to a connection while an answer to an earlier request is still
 * going out. Node keeps it in the socket's `_httpMessage` (set while a response is pending, cleared
 * when it finishes); no public API says whether a connection has an answer pending.
 */
function pendingResponse(socket: Duplex): ServerResponse | undefined {
  const message = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
  return message === null || message === undefined || message.writableFinished ? undefined : message;
}

/**
 * Hands an upgrade request's connection back to HTTP/1.1 handling, as if it had asked for no
 * upgrade. Node announces an upgrade as soon as it has read it, even pipelined behind a request
 * whose answer is still going out: the replay waits for that answer (and any queued behind it), so
 * answers leave in the order the requests came. Node reads nothing more from the socket meanwhile.
 */
export function replayWithoutUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, http1: (socket: Socket) => void): void {
  const pending = pendingResponse(socket);
  if (pending !== undefined) {
    const retry = (): void => {
      pending.off('finish', retry);
      pending.off('close', retry);
      // Node hands the socket to the next queued response right after 'finish': look again then.
      setImmediate(() => replayWithoutUpgrade(req, socket, head, http1));
    };
    pending.once('finish', retry);
    pending.once('close', retry);
    return;
  }
  if (socket.destroyed) return;
  const replay = headWithoutUpgrade(req);
  socket.pause();
  socket.unshift(head.length === 0 ? replay : Buffer.concat([replay, head]));
  http1(socket as Socket);
  socket.resume();
}
