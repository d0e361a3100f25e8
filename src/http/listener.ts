/**
 * One listening port, three ways in: HTTP/1.1, HTTP/2 with prior knowledge (h2c, found by its
 * connection preface), and HTTP/1.1 requests asking for an upgrade the proxy does not take, which
 * are answered as plain requests. WebSocket upgrades go to the upgrade listener.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { type Http2Front, type Http2Limits, type Http2RequestListener, createHttp2Front } from './h2-server.js';
import { splitProtocols } from './preface.js';
import { type ClientLimits, closeServer, createHttpServer, headTimeoutMs } from './server.js';
import { isWebSocketUpgrade, replayWithoutUpgrade } from './upgrade.js';

export interface ListenerHandlers {
  readonly onRequest: (req: IncomingMessage, res: ServerResponse) => void;
  /** WebSocket upgrades only: every other upgrade is answered as a plain request. */
  readonly onUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
  readonly onHttp2Request: Http2RequestListener;
}

export interface Listener {
  /** The server that listens; HTTP/2 connections are handed from it to `http2`. */
  readonly server: Server;
  readonly http2: Http2Front;
  /** Stops accepting; HTTP/1.1 connections close after their response, HTTP/2 ones get GOAWAY; cut after `graceMs`. */
  close(graceMs: number): Promise<void>;
}

export interface ListenerLimits extends ClientLimits {
  readonly maxConcurrentStreams: Http2Limits['maxConcurrentStreams'];
  /** An HTTP/2 connection with no open stream for this long gets GOAWAY; 0 = off. */
  readonly http2IdleTimeoutMs: number;
}

function ignoreSocketError(): void {}

export function createListener(handlers: ListenerHandlers, limits: ListenerLimits): Listener {
  const http2 = createHttp2Front(handlers.onHttp2Request, {
    maxConcurrentStreams: limits.maxConcurrentStreams,
    // The same bound as an HTTP/1.1 head: SETTINGS_MAX_HEADER_LIST_SIZE counts name + value + 32 per field.
    maxHeaderListSize: limits.maxHeaderSize,
    idleTimeoutMs: limits.http2IdleTimeoutMs,
  });
  // Node's HTTP/1.1 handling, known once the sniffer is in front of it (below).
  const http1 = { handle: (socket: Socket): void => void socket.destroy() };
  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (isWebSocketUpgrade(req)) {
      handlers.onUpgrade(req, socket, head);
      return;
    }
    // Node took its error listener off the socket: a reset while the replay waits must not throw.
    socket.on('error', ignoreSocketError);
    replayWithoutUpgrade(req, socket, head, http1.handle);
  };
  const server = createHttpServer({ onRequest: handlers.onRequest, onUpgrade }, limits);
  // A client that sends nothing is closed after the same time as a request head that never ends.
  const split = splitProtocols(server, http2.server, headTimeoutMs(limits));
  http1.handle = split.http1;
  return {
    server,
    http2,
    async close(graceMs) {
      split.destroySniffing();
      await Promise.all([closeServer(server, graceMs), http2.closeAll(graceMs)]);
    },
  };
}
