/**
 * The HTTP/2 upstream leg: an UpstreamPool (upstream-pool.ts) on node:http2's
 * client, driving the same UpstreamHandler hooks as undici, so HttpExchange
 * runs over it unchanged; full duplex, as gRPC needs.
 *
 * - `http://` upstreams get h2c with prior knowledge, `https://` ones TLS with
 *   ALPN h2, SNI on the upstream's own name (none for an IP), certificate
 *   checks on: the rules of upstream-pool.ts's connector.
 * - At most `maxSessions` sessions per upstream. A call goes to the first open
 *   session under the peer's MAX_CONCURRENT_STREAMS; when there is none it
 *   waits in one FIFO queue, and a new session opens only when every session
 *   is full and none is still connecting or waiting for the peer's SETTINGS.
 * - A call withdrawn while it waits (its client left, or a timeout answered)
 *   stays in the queue as done, and is skipped: it never opens a stream.
 * - A session that got a GOAWAY takes no new streams (those in flight finish);
 *   the next call that finds no room opens a new one. Idle sessions hold no
 *   reference on the event loop and close after `idleTimeoutMs`.
 * - `opening` is true inside `onConnect` for the calls started on a session
 *   that was opened while they waited and on which no stream has ended yet.
 * - Each session's connect time goes to the metrics, and the sessions open are
 *   counted active (streams in flight) or idle.
 */
import { InvalidValueError } from '../errors.js';
import type { UpstreamConnectionMetrics } from '../metrics/recorder.js';
import { H2Call } from './h2-call.js';
import { CallQueue } from './h2-call-queue.js';
import { connectionLostError } from './h2-errors.js';
import type { H2Origin } from './h2-headers.js';
import { type ConnectionState, H2Session, type H2Target, type SessionOwner } from './h2-sessions.js';
import { connectHost, serverNameOf } from './url-parts.js';
import { NO_CONNECTION_METRICS } from './upstream-connections.js';
import { classifyUpstreamError } from './upstream-errors.js';
import type { UpstreamHandler, UpstreamPool, UpstreamRequest } from './upstream-pool.js';

export interface H2UpstreamPoolOptions {
  /** `http://` (h2c, prior knowledge) or `https://` (TLS, ALPN h2). */
  readonly upstream: URL;
  /** TCP connect and TLS handshake of a new session; 0 = off. */
  readonly connectTimeoutMs: number;
  /** A handler's exception no request could take: logged, never thrown. */
  readonly onStrayError: (err: Error) => void;
  /** Sessions to the upstream at most; default 4. */
  readonly maxSessions?: number;
  /** An idle session closes after this; default 4000 ms, the HTTP/1 pool's keep-alive. */
  readonly idleTimeoutMs?: number;
  /** Where the connect times and the open sessions go; none by default. */
  readonly metrics?: UpstreamConnectionMetrics;
}

const DEFAULT_MAX_SESSIONS = 4;
const DEFAULT_IDLE_TIMEOUT_MS = 4_000;

function poolClosedError(): Error {
  return Object.assign(new Error('the upstream pool is closed'), { code: 'ERR_HTTP2_INVALID_SESSION' });
}

class H2UpstreamPool implements UpstreamPool, SessionOwner {
  opening = false;
  readonly protocolVersion = '2';
  readonly servername: string;
  readonly onStrayError: (err: Error) => void;
  private readonly target: H2Target;
  private readonly origin: H2Origin;
  private readonly maxSessions: number;
  /** Sessions that take (or will take) new streams: connecting or open. */
  private readonly usable: H2Session[] = [];
  /** Every session not closed yet, usable or draining or dedicated. */
  private readonly live = new Set<H2Session>();
  /** The call of each dedicated session that has not connected yet. */
  private readonly dedicatedCalls = new Map<H2Session, H2Call>();
  private readonly queue = new CallQueue();
  /** The calls that went into the queue, by handler: a handler may withdraw its call while it is still there. */
  private readonly queuedCalls = new WeakMap<UpstreamHandler, H2Call>();
  private closed = false;
  private allClosed: (() => void) | undefined = undefined;
  private readonly metrics: UpstreamConnectionMetrics;
  /** Sessions open by state, for the open-connections gauge. */
  private readonly counts: Record<ConnectionState, number> = { active: 0, idle: 0 };

  constructor(target: H2Target, origin: H2Origin, servername: string, options: H2UpstreamPoolOptions) {
    this.target = target;
    this.origin = origin;
    this.servername = servername;
    this.onStrayError = options.onStrayError;
    this.maxSessions = options.maxSessions ?? DEFAULT_MAX_SESSIONS;
    this.metrics = options.metrics ?? NO_CONNECTION_METRICS;
  }

  dispatch(request: UpstreamRequest, handler: UpstreamHandler): void {
    const call = new H2Call(this, this.origin, request, handler);
    this.submit(call);
    if (call.phase === 'queued') this.queuedCalls.set(handler, call);
  }

  /**
   * A call given up before it got a stream: done, without a word to its handler, which gave it up.
   * The queue skips it, so it never opens a stream, nor a session. (Without this, its turn would come,
   * and it would decline the slot in onConnect: no stream either, but a session may have opened for it.)
   */
  withdraw(handler: UpstreamHandler): boolean {
    const call = this.queuedCalls.get(handler);
    if (call === undefined) return false;
    this.queuedCalls.delete(handler);
    if (call.phase !== 'queued') return false;
    call.phase = 'done';
    return true;
  }

  dispatchFresh(request: UpstreamRequest, handler: UpstreamHandler): void {
    const call = new H2Call(this, this.origin, request, handler);
    if (this.closed) {
      call.fail(poolClosedError());
      return;
    }
    const session = this.openSession(true);
    this.dedicatedCalls.set(session, call);
    session.connect();
  }

  /** A new call, or one sent again (see H2Call): a free slot now, or the queue. */
  submit(call: H2Call): void {
    if (this.closed) {
      call.fail(poolClosedError());
      return;
    }
    if (this.queue.peek() === undefined) {
      for (const session of this.usable) {
        if (session.hasRoom()) {
          session.reserve();
          call.start(session);
          return;
        }
      }
    }
    this.queue.push(call);
    this.grow();
  }

  // Sessions count their streams themselves (connectionMoved).
  connectionTaken(): void {}
  connectionFreed(): void {}

  // ---- what sessions report

  connectEnded(seconds: number, err: Error | undefined): void {
    this.metrics.upstreamConnectEnded('2', err === undefined ? '' : classifyUpstreamError(err).kind, seconds);
  }

  connectionMoved(from: ConnectionState | undefined, to: ConnectionState | undefined): void {
    if (from !== undefined) this.counts[from]--;
    if (to !== undefined) this.counts[to]++;
    this.metrics.upstreamConnections('2', this.counts.active, this.counts.idle);
  }

  sessionReady(session: H2Session): void {
    const call = this.dedicatedCalls.get(session);
    if (call !== undefined) {
      this.dedicatedCalls.delete(session);
      this.startOn(session, call, true);
    } else if (!session.dedicated) {
      this.pump(session);
    }
  }

  streamReleased(session: H2Session): void {
    if (session.dedicated) session.retire();
    else this.pump(session);
  }

  sessionRetired(session: H2Session): void {
    this.forget(session);
    this.grow();
  }

  sessionClosed(session: H2Session, err: Error | undefined): void {
    this.forget(session);
    this.live.delete(session);
    const call = this.dedicatedCalls.get(session);
    if (call !== undefined) {
      this.dedicatedCalls.delete(session);
      call.fail(err ?? poolClosedError());
    } else if (!session.settled && !session.dedicated && this.usable.length === 0) {
      // It never became a working session (refused, timed out, not HTTP/2), and no other is coming:
      // the waiting calls fail with its error, rather than each opening a session that fails alike.
      const reason = err ?? connectionLostError();
      for (let waiting = this.queue.shift(); waiting !== undefined; waiting = this.queue.shift()) waiting.fail(reason);
    }
    if (this.live.size === 0) this.allClosed?.();
    this.grow();
  }

  // ---- queue and sessions

  private startOn(session: H2Session, call: H2Call, opening: boolean): void {
    session.reserve();
    this.opening = opening;
    try {
      call.start(session);
    } finally {
      this.opening = false;
    }
  }

  /** Gives a session's free slots to the waiting calls, oldest first. */
  private pump(session: H2Session): void {
    while (session.hasRoom()) {
      const call = this.queue.shift();
      if (call === undefined) return;
      this.startOn(session, call, session.fresh);
    }
    this.grow();
  }

  /** Opens a session for the waiting calls, if every session is full and the bound allows. */
  private grow(): void {
    if (this.closed || this.usable.length >= this.maxSessions || this.queue.peek() === undefined) return;
    for (const session of this.usable) if (session.pending || session.hasRoom()) return;
    const session = this.openSession(false);
    this.usable.push(session);
    session.connect();
  }

  private openSession(dedicated: boolean): H2Session {
    const session = new H2Session(this.target, this, dedicated);
    this.live.add(session);
    return session;
  }

  private forget(session: H2Session): void {
    const at = this.usable.indexOf(session);
    if (at !== -1) this.usable.splice(at, 1);
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      const err = poolClosedError();
      for (let call = this.queue.shift(); call !== undefined; call = this.queue.shift()) call.fail(err);
      for (const session of [...this.live]) session.shutdown(err);
    }
    if (this.live.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const before = this.allClosed;
      this.allClosed = () => {
        before?.();
        resolve();
      };
    });
  }
}

export function createH2UpstreamPool(options: H2UpstreamPoolOptions): UpstreamPool {
  const { upstream } = options;
  if (upstream.protocol !== 'http:' && upstream.protocol !== 'https:') {
    throw new InvalidValueError('upstream', upstream.href, 'expected an http:// or https:// URL');
  }
  checkCount('maxSessions', options.maxSessions, 1);
  checkCount('idleTimeoutMs', options.idleTimeoutMs, 0);
  checkCount('connectTimeoutMs', options.connectTimeoutMs, 0);
  const tls = upstream.protocol === 'https:';
  const host = connectHost(upstream);
  const port = upstream.port === '' ? (tls ? 443 : 80) : Number(upstream.port);
  // No SNI for an IP address: the certificate is then checked against the IP.
  const sni = serverNameOf(host);
  const target: H2Target = {
    origin: `${upstream.protocol}//${upstream.host}`,
    host,
    port,
    tls,
    servername: sni,
    connectTimeoutMs: options.connectTimeoutMs,
    idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
  };
  const origin: H2Origin = { scheme: tls ? 'https' : 'http', authority: upstream.host };
  return new H2UpstreamPool(target, origin, sni ?? host, options);
}

function checkCount(option: string, value: number | undefined, min: number): void {
  if (value !== undefined && (!Number.isInteger(value) || value < min)) {
    throw new InvalidValueError(option, value, `expected an integer >= ${min}`);
  }
}
