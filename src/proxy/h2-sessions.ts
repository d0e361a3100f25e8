/**
 * One HTTP/2 connection to the upstream and its life, as one phase:
 * - connecting: TCP, and for https TLS with ALPN h2, under a connect timer of
 *   our own (the session is created on the connected socket, so the timer
 *   covers exactly TCP + TLS, never the HTTP/2 preface);
 * - open: takes streams up to the peer's MAX_CONCURRENT_STREAMS, assumed 1
 *   until its first SETTINGS arrive;
 * - draining: a GOAWAY came, or it was retired (idle, closing, stream ids
 *   running out): the streams in flight finish, no new ones start, and it is
 *   destroyed (our GOAWAY, then the socket) once they are over;
 * - closed.
 * The pool (h2-upstream.ts) decides which session a call goes to; each session
 * reports its changes to the pool, its connect time and its state for the
 * open-connections gauge (active while streams are in flight, idle without)
 * included. A session is a call's stream slot.
 */
import { type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders, type Settings, connect as connectH2, constants } from 'node:http2';
import { type Socket, connect as connectTcp } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { TLSSocket } from 'node:tls';
import { UpstreamTimeoutError } from '../errors.js';
import { connectTls } from '../lazy-modules.js';
import { connectionLostError } from './h2-errors.js';
import type { StreamSlot } from './h2-slot.js';

/** Where and how the sessions of a pool connect; resolved once from the options. */
export interface H2Target {
  /** `http://host:port` or `https://…`, as node:http2 wants it. */
  readonly origin: string;
  /** Without IPv6 brackets. */
  readonly host: string;
  readonly port: number;
  readonly tls: boolean;
  /** TLS SNI: the upstream's name, none for an IP address (RFC 6066). */
  readonly servername: string | undefined;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
}

/** What a session tells the pool. */
export interface SessionOwner {
  /** Connected, or the peer's SETTINGS changed its room: waiting calls may go now. */
  sessionReady(session: H2Session): void;
  streamReleased(session: H2Session): void;
  /** It takes no new streams from now on. */
  sessionRetired(session: H2Session): void;
  /** Closed: `err` is why, if anything went wrong (connect failure, session error). */
  sessionClosed(session: H2Session, err: Error | undefined): void;
  /** TCP connect and TLS handshake (with ALPN h2) over after `seconds`: succeeded, or failed with `err`. */
  connectEnded(seconds: number, err: Error | undefined): void;
  /** The session moved in the open-connections gauge: from one state (undefined: not counted) to another. */
  connectionMoved(from: ConnectionState | undefined, to: ConnectionState | undefined): void;
}

export type SessionPhase = 'connecting' | 'open' | 'draining' | 'closed';
/** `http.connection.state`: streams in flight on it, or none. */
export type ConnectionState = 'active' | 'idle';

/** Client stream ids are the odd numbers below 2^31: a session is retired well before they run out. */
const STREAM_BUDGET = 2 ** 30 - 1_024;
const TCP_KEEP_ALIVE_MS = 60_000;
/** How long a closed session's socket may wait for the peer to close its side. */
const LINGER_MS = 1_000;

function noH2Error(selected: string | false | null): Error {
  // The code OpenSSL gives when the upstream answers ALPN without h2; the same for one without ALPN at all.
  return Object.assign(new Error(`the upstream did not select h2 by TLS ALPN (selected: ${selected || 'none'})`), {
    code: 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL',
  });
}

export class H2Session implements StreamSlot {
  phase: SessionPhase = 'connecting';
  /** Streams reserved on it, counted by us (node:http2 queues streams over the peer's limit silently). */
  active = 0;
  /** The peer's MAX_CONCURRENT_STREAMS, once its SETTINGS came. */
  limit = 1;
  settled = false;
  /** No stream on it has ended yet: a call started now is on a connection opened for it. */
  fresh = true;
  /** Opened for one request alone (dispatchFresh), closed after it. */
  readonly dedicated: boolean;
  private readonly target: H2Target;
  private readonly owner: SessionOwner;
  private socket: Socket | undefined = undefined;
  private session: ClientHttp2Session | undefined = undefined;
  private connectTimer: NodeJS.Timeout | undefined = undefined;
  private idleTimer: NodeJS.Timeout | undefined = undefined;
  private lingerTimer: NodeJS.Timeout | undefined = undefined;
  private error: Error | undefined = undefined;
  private opened = 0;
  private connectStartedAt = 0;
  /** Its state in the open-connections gauge; undefined before it is a session and once it closed. */
  private counted: ConnectionState | undefined = undefined;

  constructor(target: H2Target, owner: SessionOwner, dedicated: boolean) {
    this.target = target;
    this.owner = owner;
    this.dedicated = dedicated;
  }

  /** Open (node:http2 agreeing: it may have closed it a moment ago), and under the peer's limit. */
  hasRoom(): boolean {
    return this.phase === 'open' && this.active < this.limit && this.session !== undefined && !this.session.closed && !this.session.destroyed;
  }

  /** Its room is not known yet: connecting, or waiting for the peer's SETTINGS. */
  get pending(): boolean {
    return this.phase === 'connecting' || (this.phase === 'open' && !this.settled);
  }

  get gone(): boolean {
    return this.session === undefined || this.session.destroyed;
  }

  connect(): void {
    const { host, port, servername, tls, connectTimeoutMs } = this.target;
    this.connectStartedAt = performance.now();
    const socket = tls ? connectTls({ host, port, servername, ALPNProtocols: ['h2'] }) : connectTcp({ host, port });
    this.socket = socket;
    socket.once(tls ? 'secureConnect' : 'connect', this.onSocketReady);
    socket.on('error', this.keepError);
    socket.once('close', this.onSocketClose);
    if (connectTimeoutMs > 0) this.connectTimer = setTimeout(this.expireConnect, connectTimeoutMs).unref();
  }

  private readonly expireConnect = (): void => {
    this.socket?.destroy(new UpstreamTimeoutError('MP_ERR_CONNECT_TIMEOUT', this.target.connectTimeoutMs));
  };

  private readonly keepError = (err: Error): void => {
    this.error ??= err;
  };

  /** Closed before it became a session: refused, timed out, TLS or ALPN refused, or shut down. */
  private readonly onSocketClose = (): void => {
    clearTimeout(this.connectTimer);
    this.phase = 'closed';
    this.owner.connectEnded(this.connectSeconds(), this.error ?? connectionLostError());
    this.owner.sessionClosed(this, this.error ?? connectionLostError());
  };

  private readonly onSocketReady = (): void => {
    clearTimeout(this.connectTimer);
    const socket = this.socket as Socket;
    const alpn = this.target.tls ? (socket as TLSSocket).alpnProtocol : 'h2';
    if (alpn !== 'h2') {
      socket.destroy(noH2Error(alpn));
      return;
    }
    socket.off('error', this.keepError);
    socket.off('close', this.onSocketClose);
    this.owner.connectEnded(this.connectSeconds(), undefined);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, TCP_KEEP_ALIVE_MS);
    // Created on the connected socket: node:http2 takes its errors from here on, as the session's.
    const session = connectH2(this.target.origin, { createConnection: () => socket, settings: { enablePush: false } });
    this.session = session;
    session.on('error', this.keepError);
    session.on('close', this.onSessionClose);
    session.on('goaway', this.retire);
    session.on('remoteSettings', this.onRemoteSettings);
    this.phase = 'open';
    this.recount();
    this.owner.sessionReady(this);
    if (this.active === 0) this.idle();
  };

  private connectSeconds(): number {
    return (performance.now() - this.connectStartedAt) / 1000;
  }

  /** Tells the pool when the session's state in the open-connections gauge changed. */
  private recount(): void {
    const state = this.phase === 'closed' || this.session === undefined ? undefined : this.active > 0 ? 'active' : 'idle';
    if (state === this.counted) return;
    this.owner.connectionMoved(this.counted, state);
    this.counted = state;
  }

  private readonly onRemoteSettings = (settings: Settings): void => {
    this.limit = settings.maxConcurrentStreams ?? this.limit;
    this.settled = true;
    if (this.phase === 'open') this.owner.sessionReady(this);
  };

  private readonly onSessionClose = (): void => {
    clearTimeout(this.idleTimer);
    clearTimeout(this.lingerTimer);
    this.phase = 'closed';
    this.recount();
    this.owner.sessionClosed(this, this.error);
  };

  // ---- streams

  reserve(): void {
    if (this.active++ > 0) return;
    this.session?.ref();
    this.recount();
  }

  open(headers: OutgoingHttpHeaders, endStream: boolean): ClientHttp2Stream {
    if (this.session === undefined) throw connectionLostError();
    // A body's END_STREAM is sent by the call once the body really ended (as empty trailers: an empty
    // DATA frame with END_STREAM); node:http2 would send it on its own before any RST_STREAM.
    const stream = this.session.request(headers, { endStream, waitForTrailers: !endStream });
    if (++this.opened === STREAM_BUDGET) this.retire();
    return stream;
  }

  release(): void {
    this.active--;
    this.fresh = false;
    this.owner.streamReleased(this);
    this.recount();
    if (this.active > 0) return;
    if (this.phase === 'draining') this.terminate(undefined);
    else this.idle();
  }

  /** No stream in flight: it no longer holds the process open, and closes after the idle timeout. */
  private idle(): void {
    if (this.phase !== 'open' || this.session === undefined) return;
    this.session.unref();
    if (this.idleTimer === undefined) this.idleTimer = setTimeout(this.expireIdle, this.target.idleTimeoutMs).unref();
    else this.idleTimer.refresh();
  }

  private readonly expireIdle = (): void => {
    if (this.active === 0) this.retire();
  };

  /** Takes no new streams (a GOAWAY came, or we are done with it); closes once its streams are over. */
  readonly retire = (): void => {
    if (this.phase !== 'open') return;
    this.phase = 'draining';
    this.owner.sessionRetired(this);
    if (this.active === 0) this.terminate(undefined);
  };

  /**
   * Ends the session: node:http2 sends our GOAWAY, ends the socket and destroys it, except after
   * its own graceful close (on the peer's GOAWAY) where it waits for the peer to close its side:
   * a peer that never does is not waited for long.
   */
  private terminate(err: Error | undefined): void {
    if (this.lingerTimer !== undefined) return;
    this.lingerTimer = setTimeout(this.destroySocket, LINGER_MS).unref();
    if (err === undefined) this.session?.destroy();
    else this.session?.destroy(err, constants.NGHTTP2_NO_ERROR);
  }

  private readonly destroySocket = (): void => {
    this.socket?.destroy();
  };

  /** The pool closes: GOAWAY, the streams still in flight end now with `err`, and nothing lingers. */
  shutdown(err: Error): void {
    if (this.phase === 'connecting') {
      this.socket?.destroy(err);
      return;
    }
    if (this.phase === 'closed') return;
    this.phase = 'draining';
    this.terminate(this.active > 0 ? err : undefined);
    if (this.session?.closed === true) this.destroySocket();
  }
}
