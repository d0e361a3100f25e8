/**
 * One port for HTTP/1.1 and cleartext HTTP/2 (h2c with prior knowledge): every new connection of
 * the HTTP/1.1 server is read until its first bytes tell which protocol it speaks, then handed,
 * bytes put back, to Node's HTTP/1.1 connection handling or to the HTTP/2 server. Node's
 * `http2.createServer` speaks only h2c and `allowHTTP1` exists only for TLS, so the choice is ours.
 *
 * The sniffer also holds a new connection to the head timeout from its accept, as nginx and HAProxy
 * do: its first request head (HTTP/1.1), or its preface and SETTINGS (HTTP/2), must be in by then.
 * Node times the later heads of a keep-alive connection itself, from their first byte (server.ts).
 */
import type { Server } from 'node:http';
import type { Http2Server, Http2Session } from 'node:http2';
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

/** Why a connection was closed at its deadline without an answer. */
export type QuietClose = 'nothing sent' | 'no HTTP/2 SETTINGS';

export interface HeadDeadline {
  /** From the accept; 0 = none. */
  readonly timeoutMs: number;
  /** Past the deadline with part of an HTTP/1.1 head in (or bytes that may begin one): answer 408 and close. */
  readonly onHeadTimeout: (socket: Socket) => void;
  /**
   * Past the deadline with nothing sent (a preconnect, which must not read a 408 as the answer to
   * the request it sends later), or an HTTP/2 connection without SETTINGS: closed here; for the log.
   */
  readonly onQuietClose: (reason: QuietClose) => void;
}

export interface ProtocolSplit {
  /** Node's own HTTP/1.1 connection handling, for connections this module hands back (an Upgrade replayed). */
  readonly http1: ConnectionHandler;
  /** A request or upgrade head is in on `socket`: the connection has met its deadline (cheap when it had already). */
  headIn(socket: Socket): void;
  /** Destroys the connections still being sniffed (at shutdown: they belong to no server yet). */
  destroySniffing(): void;
}

interface SplitState {
  readonly http1: ConnectionHandler;
  /** Hands the connection to the HTTP/2 server; its session, which Node creates at once. */
  readonly http2: (socket: Socket) => Http2Session | undefined;
  /** Every connection whose deadline is still running, by socket. */
  readonly waiting: Map<Socket, Sniffer>;
  readonly deadline: HeadDeadline;
}

/** Where a connection is: being read by the sniffer, or handed over and waiting for its first head (SETTINGS). */
type Stage = 'sniffing' | 'http1' | 'http2';

function ignoreSocketError(): void {}

/** Reads a connection's first bytes, hands it over, and holds it to its deadline until its first head is in. */
class Sniffer {
  private buffered: Buffer | undefined = undefined;
  private stage: Stage = 'sniffing';
  private session: Http2Session | undefined = undefined;
  private readonly timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly split: SplitState,
  ) {
    socket.on('data', this.onData);
    // The server allows half-open connections (for HTTP/1.1): a client that leaves before a byte is closed here.
    socket.on('end', this.onGone);
    socket.on('error', this.onGone);
    socket.on('close', this.onGone);
    const { timeoutMs } = split.deadline;
    this.timer = timeoutMs > 0 ? setTimeout(this.onDeadline, timeoutMs).unref() : undefined;
    split.waiting.set(socket, this);
  }

  get sniffing(): boolean {
    return this.stage === 'sniffing';
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** The deadline is met (or moot: the connection has closed). */
  readonly done = (): void => {
    clearTimeout(this.timer);
    this.split.waiting.delete(this.socket);
    this.stopSniffing();
    this.socket.off('close', this.done);
  };

  private readonly onData = (chunk: Buffer): void => {
    const seen = this.buffered === undefined ? chunk : Buffer.concat([this.buffered, chunk]);
    const verdict = sniff(seen);
    if (verdict === 'undecided') {
      this.buffered = seen;
      return;
    }
    // The next owner handles the stream from now on; only the deadline stays, until the head is in.
    this.stopSniffing();
    this.stage = verdict;
    const { socket } = this;
    socket.once('close', this.done);
    // Paused, with the bytes put back: the next owner reads them first, then the rest of the stream.
    // The HTTP/2 session takes the socket's handle and reads what is buffered itself.
    socket.pause();
    socket.unshift(seen);
    if (verdict === 'http2') {
      this.session = this.split.http2(socket);
      this.session?.once('remoteSettings', this.done);
    } else {
      this.split.http1(socket);
      socket.resume();
    }
  };

  private readonly onGone = (): void => {
    this.done();
    this.socket.destroy();
  };

  private readonly onDeadline = (): void => {
    const { socket, stage, split } = this;
    // Node answered a first head itself (417 to an unknown Expect, 400 without Host): that head was in.
    const answered = stage === 'http1' && socket.bytesWritten > 0;
    this.done();
    if (answered) return;
    if (stage === 'http2') {
      this.session?.destroy();
      socket.destroy();
      split.deadline.onQuietClose('no HTTP/2 SETTINGS');
    } else if (stage === 'sniffing' && this.buffered === undefined) {
      socket.destroy();
      split.deadline.onQuietClose('nothing sent');
    } else {
      // Bytes that may begin an HTTP/1.1 head: answered as one. The socket has no other owner yet.
      if (stage === 'sniffing') socket.on('error', ignoreSocketError);
      split.deadline.onHeadTimeout(socket);
    }
  };

  private stopSniffing(): void {
    if (this.stage !== 'sniffing') return;
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onGone);
    this.socket.off('error', this.onGone);
    this.socket.off('close', this.onGone);
  }
}

/**
 * Puts the sniffer in front of `server`'s connection handling: HTTP/1.1 connections go on to Node's
 * own listener, HTTP/2 ones to `http2Server`, each held to `deadline` until its first head is in.
 */
export function splitProtocols(server: Server, http2Server: Http2Server, deadline: HeadDeadline): ProtocolSplit {
  // Node's HTTP/1.1 handling is the server's own 'connection' listener: taken off, called for HTTP/1.1 only.
  const own = server.listeners('connection') as ConnectionHandler[];
  server.removeAllListeners('connection');
  const http1: ConnectionHandler = (socket) => {
    for (const listener of own) listener.call(server, socket);
  };
  // Node's HTTP/2 server creates the session and emits 'session' within its 'connection' listener.
  const http2 = (socket: Socket): Http2Session | undefined => {
    let session: Http2Session | undefined;
    const capture = (created: Http2Session): void => {
      session = created;
    };
    http2Server.once('session', capture);
    http2Server.emit('connection', socket);
    http2Server.off('session', capture);
    return session;
  };
  const waiting = new Map<Socket, Sniffer>();
  const state: SplitState = { http1, http2, waiting, deadline };
  server.on('connection', (socket: Socket) => new Sniffer(socket, state));
  return {
    http1,
    headIn(socket) {
      if (waiting.size !== 0) waiting.get(socket)?.done();
    },
    destroySniffing() {
      for (const sniffer of waiting.values()) if (sniffer.sniffing) sniffer.destroy();
    },
  };
}
