/**
 * One listening port, three ways in: HTTP/1.1, HTTP/2 with prior knowledge (h2c, found by its
 * connection preface), and HTTP/1.1 requests asking for an upgrade the proxy does not take, which
 * are answered as plain requests. WebSocket upgrades go to the upgrade listener.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { type Http2Front, type Http2Limits, type Http2RequestListener, createHttp2Front } from './h2-server.js';
import { type HeadDeadline, type ProtocolSplit, splitProtocols } from './preface.js';
import { type ClientLimits, HEAD_TIMED_OUT, closeServer, createHttpServer, refuseHead } from './server.js';
import { isWebSocketUpgrade, replayWithoutUpgrade } from './upgrade.js';

export interface ListenerHandlers {
  readonly onRequest: (req: IncomingMessage, res: ServerResponse) => void;
  /** WebSocket upgrades only: every other upgrade is answered as a plain request. */
  readonly onUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
  readonly onHttp2Request: Http2RequestListener;
  /** Where refused and timed-out request heads are reported; without it they are not logged. */
  readonly log?: Logger | undefined;
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

/** A new connection's first head (HTTP/2: preface and SETTINGS) is timed from its accept, by the sniffer. */
function headDeadline(timeoutMs: number, log: Logger | undefined): HeadDeadline {
  return {
    timeoutMs,
    onHeadTimeout: (socket) => refuseHead(socket, HEAD_TIMED_OUT, log),
    onQuietClose: (reason) => log?.debug({ reason, requestHeaderTimeoutMs: timeoutMs }, 'client stalled: closed without an answer'),
  };
}

export function createListener(handlers: ListenerHandlers, limits: ListenerLimits): Listener {
  const http2 = createHttp2Front(handlers.onHttp2Request, {
    maxConcurrentStreams: limits.maxConcurrentStreams,
    // The same bound as an HTTP/1.1 head: SETTINGS_MAX_HEADER_LIST_SIZE counts name + value + 32 per field.
    maxHeaderListSize: limits.maxHeaderSize,
    idleTimeoutMs: limits.http2IdleTimeoutMs,
  });
  // `split` (Node's HTTP/1.1 handling behind the sniffer, and the first-head deadlines) is set below,
  // before the server listens: these run only on its events.
  const http1 = (socket: Socket): void => split.http1(socket);
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    split.headIn(req.socket);
    handlers.onRequest(req, res);
  };
  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    split.headIn(req.socket);
    if (isWebSocketUpgrade(req)) {
      handlers.onUpgrade(req, socket, head);
      return;
    }
    // Node took its error listener off the socket: a reset while the replay waits must not throw.
    socket.on('error', ignoreSocketError);
    replayWithoutUpgrade(req, socket, head, http1);
  };
  const { log } = handlers;
  const server = createHttpServer({ onRequest, onUpgrade, log }, limits);
  const split: ProtocolSplit = splitProtocols(server, http2.server, headDeadline(limits.requestHeaderTimeoutMs, log));
  return {
    server,
    http2,
    async close(graceMs) {
      split.destroySniffing();
      await Promise.all([closeServer(server, graceMs), http2.closeAll(graceMs)]);
    },
  };
}
