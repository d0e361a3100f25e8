/**
 * One port for HTTP/1.1 and cleartext HTTP/2 (h2c with prior knowledge): every new connection of
 * the HTTP/1.1 server is read until its first bytes tell which protocol it speaks, then handed,
 * bytes put back, to Node's HTTP/1.1 connection handling or to the HTTP/2 server. Node's
 * `http2.createServer` speaks only h2c and `allowHTTP1` exists only for TLS, so the choice is ours.
 */
import type { Server } from 'node:http';
import type { Http2Server } from 'node:http2';
import type { Socket } from 'node:net';

/** RFC 9113 §3.4: every HTTP/2 connection opens with these 24 bytes. */
export const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export type Verdict = 'http1' | 'http2' | 'undecided';

/** What the first bytes of a connection say; `undecided` while they are a proper prefix of the preface. */
export function sniff(first: Buffer): Verdict {
  const n = Math.min(first.length, HTTP2_PREFACE.length);
  if (first.compare(HTTP2_PREFACE, 0, n, 0, n) !== 0) return 'http1';
  return n === HTTP2_PREFACE.length ? 'http2' : 'undecided';
}

export type ConnectionHandler = (socket: Socket) => void;

export interface ProtocolSplit {
  /** Node's own HTTP/1.1 connection handling, for connections this module hands back (an Upgrade replayed). */
  readonly http1: ConnectionHandler;
  /** Destroys the connections still being sniffed (at shutdown: they belong to no server yet). */
  destroySniffing(): void;
}

/** Reads a connection's first bytes, then hands it over; a connection silent past `timeoutMs` is closed. */
class Sniffer {
  private buffered: Buffer | undefined = undefined;
  private readonly timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly split: { http1: ConnectionHandler; http2: ConnectionHandler; pending: Set<Sniffer> },
    timeoutMs: number,
  ) {
    socket.on('data', this.onData);
    // The server allows half-open connections (for HTTP/1.1): a client that leaves before a byte is closed here.
    socket.on('end', this.onGone);
    socket.on('error', this.onGone);
    socket.on('close', this.onGone);
    this.timer = timeoutMs > 0 ? setTimeout(() => socket.destroy(), timeoutMs).unref() : undefined;
    split.pending.add(this);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private readonly onData = (chunk: Buffer): void => {
    const seen = this.buffered === undefined ? chunk : Buffer.concat([this.buffered, chunk]);
    const verdict = sniff(seen);
    if (verdict === 'undecided') {
      this.buffered = seen;
      return;
    }
    this.release();
    const { socket } = this;
    // Paused, with the bytes put back: the next owner reads them first, then the rest of the stream.
    // The HTTP/2 session takes the socket's handle and reads what is buffered itself.
    socket.pause();
    socket.unshift(seen);
    if (verdict === 'http2') {
      this.split.http2(socket);
    } else {
      this.split.http1(socket);
      socket.resume();
    }
  };

  private readonly onGone = (): void => {
    this.release();
    this.socket.destroy();
  };

  private release(): void {
    clearTimeout(this.timer);
    this.split.pending.delete(this);
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onGone);
    this.socket.off('error', this.onGone);
    this.socket.off('close', this.onGone);
  }
}

/**
 * Puts the sniffer in front of `server`'s connection handling: HTTP/1.1 connections go on to Node's
 * own listener, HTTP/2 ones to `http2Server`. `timeoutMs` bounds a connection that sends nothing.
 */
export function splitProtocols(server: Server, http2Server: Http2Server, timeoutMs: number): ProtocolSplit {
  // Node's HTTP/1.1 handling is the server's own 'connection' listener: taken off, called for HTTP/1.1 only.
  const own = server.listeners('connection') as ConnectionHandler[];
  server.removeAllListeners('connection');
  const http1: ConnectionHandler = (socket) => {
    for (const listener of own) listener.call(server, socket);
  };
  const http2: ConnectionHandler = (socket) => {
    http2Server.emit('connection', socket);
  };
  const pending = new Set<Sniffer>();
  server.on('connection', (socket: Socket) => new Sniffer(socket, { http1, http2, pending }, timeoutMs));
  return {
    http1,
    destroySniffing() {
      for (const sniffer of pending) sniffer.destroy();
    },
  };
}
