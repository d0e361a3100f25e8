/**
 * The upstream leg of an HTTP exchange: the request dispatched through the
 * pool (counted in the pending-requests gauge while it waits for a
 * connection), the handle that aborts it, its timing (time in queue, and the
 * duration of each attempt, recorded as the phase moves), and the one retry. A request that
 * has no body and is safe to repeat (RFC 9110 §9.2.2) is sent once more, on a
 * fresh connection, when the reused connection it went out on breaks before
 * any byte of an answer. HttpExchange (exchange.ts) adds the client's side:
 * one object per request either way.
 */
import { performance } from 'node:perf_hooks';
import type { MetricsRecorder, UpstreamRequestErrorType } from '../metrics/recorder.js';
import { isLostConnection, isRetryable } from './exchange-rules.js';
import { type Abort, UpstreamHandler, type UpstreamPool, type UpstreamRequest } from './upstream-pool.js';

/** What the upstream leg of every exchange of an app uses. */
export interface UpstreamCallContext {
  readonly metrics: MetricsRecorder;
}

/**
 * Where the upstream request stands, moving forward (a retry starts it again at `waiting`): not sent
 * yet (a pipelined request waits its turn), waiting for a connection (counted in the
 * pending-requests gauge), on a connection, or over (complete, failed or aborted).
 */
export type UpstreamPhase = 'unsent' | 'waiting' | 'connected' | 'done';

export abstract class UpstreamCall<C extends UpstreamCallContext> extends UpstreamHandler {
  protected readonly ctx: C;
  protected readonly request: UpstreamRequest;
  /** The leg this request goes on: undici's HTTP/1.1 pool or the HTTP/2 sessions. */
  protected readonly pool: UpstreamPool;
  private upstreamPhase: UpstreamPhase = 'unsent';
  private readonly retryable: boolean;
  private abortUpstream: Abort | undefined = undefined;
  private reusedConnection = false;
  private responseStarted = false;
  private retried = false;
  /** When the current attempt was dispatched (performance.now()). */
  private dispatchedAt = 0;
  /** The upstream's final status in the current attempt; 0 until one came. */
  protected upstreamStatus = 0;

  constructor(ctx: C, request: UpstreamRequest, pool: UpstreamPool) {
    super();
    this.ctx = ctx;
    this.request = request;
    this.pool = pool;
    this.retryable = isRetryable(request.method, request.body !== null);
  }

  /** The request has its connection and is being written. */
  protected abstract connected(): void;

  /** Upstream side over: complete, failed or aborted (until a retry starts it again). */
  protected get upstreamDone(): boolean {
    return this.upstreamPhase === 'done';
  }

  /** Dispatched, and no connection yet. */
  protected get waiting(): boolean {
    return this.upstreamPhase === 'waiting';
  }

  /**
   * Moves the upstream phase on, and records what the move ends: the pending-requests gauge counts the
   * requests in `waiting`; leaving it ends the time in queue; `connected` holds a pool connection; and
   * `done` ends the attempt, recorded with `errorType` ('' when it completed).
   */
  protected moveUpstream(next: UpstreamPhase, errorType: UpstreamRequestErrorType = ''): void {
    const from = this.upstreamPhase;
    const { metrics } = this.ctx;
    let now = 0;
    if (from === 'waiting') {
      now = performance.now();
      metrics.upstreamWaiting(-1);
      metrics.upstreamQueued(this.pool.protocolVersion, this.request.method, (now - this.dispatchedAt) / 1000);
    } else if (from === 'connected') {
      this.pool.connectionFreed();
    }
    if (next === 'waiting') {
      metrics.upstreamWaiting(1);
      this.dispatchedAt = performance.now();
      this.upstreamStatus = 0;
    } else if (next === 'connected') {
      this.pool.connectionTaken();
    } else if (next === 'done' && (from === 'waiting' || from === 'connected')) {
      const seconds = ((now === 0 ? performance.now() : now) - this.dispatchedAt) / 1000;
      metrics.upstreamRequestEnded(this.pool.protocolVersion, this.request.method, this.upstreamStatus, errorType, seconds);
    }
    this.upstreamPhase = next;
  }

  protected send(fresh: boolean): void {
    this.moveUpstream('waiting');
    if (fresh) this.pool.dispatchFresh(this.request, this);
    else this.pool.dispatch(this.request, this);
  }

  /** Ends the upstream request with `err`; still waiting for a connection, it fails now and is never sent. */
  protected abortWith(err: Error): void {
    if (this.abortUpstream !== undefined) {
      this.abortUpstream(err);
      return;
    }
    if (this.upstreamPhase === 'waiting') this.pool.withdraw(this);
    this.upstreamFailed(err);
  }

  /** Drops the upstream request: aborted on its connection, or, still waiting for one, never sent. */
  protected drop(): void {
    if (this.abortUpstream !== undefined) {
      this.abortUpstream();
    } else if (this.upstreamPhase === 'waiting') {
      // Over now (the gauge and the time in queue say so at once); the pool forgets it, or it declines its connection.
      this.moveUpstream('done', 'cancelled');
      this.pool.withdraw(this);
    }
  }

  /** Given up while it waited (the client left, or a timeout answered): over already, it takes no connection. */
  protected override declinesConnection(): boolean {
    return this.upstreamPhase !== 'waiting';
  }

  protected override upstreamAssigned(abort: Abort): void {
    this.moveUpstream('connected');
    this.abortUpstream = abort;
    this.reusedConnection = !this.pool.opening;
    this.connected();
  }

  protected override upstreamResponseStarted(): void {
    this.responseStarted = true;
  }

  /** Sends the request again on a fresh connection, when that is safe; true when it did. */
  protected tryRetry(err: Error): boolean {
    if (this.retried || !this.retryable || !this.reusedConnection || this.responseStarted || !isLostConnection(err)) return false;
    this.retried = true;
    this.abortUpstream = undefined;
    this.reusedConnection = false;
    this.ctx.metrics.upstreamRetried(this.request.method);
    this.send(true);
    return true;
  }
}
