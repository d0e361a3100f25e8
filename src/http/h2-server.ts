/**
 * The HTTP/2 side of a listener: Node's `http2` server, never listening itself (connections come
 * from the HTTP/1.1 server's preface sniffer, see preface.ts), bounded like a production server,
 * and drained with GOAWAY. Requests reach the same router as HTTP/1.1 ones through Node's
 * compatibility API, so the proxy's own paths answer over HTTP/2 unchanged.
 */
import {
  type Http2Server,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Session,
  type ServerHttp2Stream,
  createServer,
} from 'node:http2';

export interface Http2Limits {
  /** SETTINGS_MAX_CONCURRENT_STREAMS: streams a client may have open at once on one connection. */
  readonly maxConcurrentStreams: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE, the HTTP/2 counterpart of the HTTP/1.1 head limit. */
  readonly maxHeaderListSize: number;
  /** A connection with no open stream for this long gets GOAWAY; 0 = off. */
  readonly idleTimeoutMs: number;
}

export type Http2RequestListener = (req: Http2ServerRequest, res: Http2ServerResponse) => void;

export interface Http2Front {
  readonly server: Http2Server;
  /** Connections (sessions) open now. */
  readonly sessions: () => number;
  /** GOAWAY to every connection: streams in flight finish, new ones are refused; cut after `graceMs`. */
  closeAll(graceMs: number): Promise<void>;
}

/** One client connection: its open streams and the timer that closes it once it has none for long enough. */
class SessionWatch {
  private open = 0;
  private idleTimer: NodeJS.Timeout | undefined = undefined;

  constructor(
    readonly session: Http2Session,
    private readonly idleTimeoutMs: number,
  ) {
    this.armIdle();
  }

  streamOpened(): void {
    this.open += 1;
    if (this.idleTimer !== undefined) {
      clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
    }
  }

  streamClosed(): void {
    this.open -= 1;
    if (this.open === 0) this.armIdle();
  }

  stop(): void {
    clearTimeout(this.idleTimer);
  }

  private armIdle(): void {
    if (this.idleTimeoutMs <= 0 || this.session.closed) return;
    this.idleTimer = setTimeout(() => this.session.close(), this.idleTimeoutMs).unref();
  }
}

/** A connection-level failure (a peer that breaks the protocol, a reset socket): the session is destroyed by Node. */
function ignoreSessionError(): void {}

function watchSessions(server: Http2Server, limits: Http2Limits, watched: Set<SessionWatch>, isClosing: () => boolean): void {
  server.on('session', (session: Http2Session) => {
    session.on('error', ignoreSessionError);
    const watch = new SessionWatch(session, limits.idleTimeoutMs);
    watched.add(watch);
    session.on('stream', (stream: ServerHttp2Stream) => {
      watch.streamOpened();
      stream.once('close', () => watch.streamClosed());
    });
    session.once('close', () => {
      watch.stop();
      watched.delete(watch);
    });
    // Between the drain's start and the listener's close a connection may still come: it is told to go away.
    if (isClosing()) session.close();
  });
}

/**
 * GOAWAY, then resolves when the session has closed. Node's `close(callback)` drops the callback of a
 * session already closing (the client sent GOAWAY, or the idle timer closed it): wait for 'close' then.
 */
function closeSession(session: Http2Session): Promise<void> {
  if (session.destroyed) return Promise.resolve();
  return new Promise<void>((resolve) => {
    session.once('close', () => resolve());
    if (!session.closed) session.close();
  });
}

export function createHttp2Front(onRequest: Http2RequestListener, limits: Http2Limits): Http2Front {
  const server = createServer({
    settings: { maxConcurrentStreams: limits.maxConcurrentStreams, maxHeaderListSize: limits.maxHeaderListSize },
    maxHeaderListPairs: 2_000,
  });
  const watched = new Set<SessionWatch>();
  let closing = false;
  watchSessions(server, limits, watched, () => closing);
  server.on('request', onRequest);
  return {
    server,
    sessions: () => watched.size,
    closeAll(graceMs) {
      closing = true;
      const closed = [...watched].map(({ session }) => closeSession(session));
      if (closed.length === 0) return Promise.resolve();
      const cut = setTimeout(() => {
        for (const { session } of watched) session.destroy();
      }, graceMs);
      return Promise.all(closed).then(() => clearTimeout(cut));
    },
  };
}
