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
import type { IncomingMessage } from 'node:http';
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

/** Hands an upgrade request's connection back to HTTP/1.1 handling, as if it had asked for no upgrade. */
export function replayWithoutUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, http1: (socket: Socket) => void): void {
  const replay = headWithoutUpgrade(req);
  socket.pause();
  socket.unshift(head.length === 0 ? replay : Buffer.concat([replay, head]));
  http1(socket as Socket);
  socket.resume();
}
