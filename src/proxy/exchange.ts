/**
 * One forwarded HTTP request: the handler undici calls, the state of the
 * request on both sides, and its outcome, recorded exactly once.
 *
 * Lifecycle: `start` counts it in flight, watches it for timeouts and
 * dispatches it to the pool. The client response's 'close' (or, for a
 * response queued behind a pipelined one, the connection's) finishes it:
 * whatever is still running upstream is aborted, and the outcome recorded.
 * A failure before the response head is answered with the proxy's JSON
 * (502/504); after it, the client connection is broken, so a truncated body
 * never looks complete. The upstream leg (dispatch, abort, the one retry) is
 * the base class, in upstream-call.ts.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { type UpstreamTimeoutCode, UpstreamTimeoutError } from '../errors.js';
import type { ExchangeSweep, Watched } from './exchange-sweep.js';
import { finishWhenClosed, forgetQueued } from './pipelined.js';
import { errorBody, sendJson } from '../respond.js';
import { PROTOCOL_FAILURE, RESET_FAILURE, failureOf, idleBlame, pathOf, statusOf } from './exchange-rules.js';
import { relayTrailers, writeResponseHead } from './response-relay.js';
import { UpstreamCall, type UpstreamCallContext } from './upstream-call.js';
import type { UpstreamFailure } from './upstream-errors.js';
import type { UpstreamRequest } from './upstream-pool.js';

/** What every exchange of an app shares. */
export interface ExchangeContext extends UpstreamCallContext {
  readonly log: Logger;
  readonly sweep: ExchangeSweep;
  /** While true, every response tells the client to close its connection (graceful drain). */
  readonly isDraining: () => boolean;
}

export class HttpExchange extends UpstreamCall<ExchangeContext> implements Watched {
  responseDue: number;
  lastProgress = -1;
  lastActiveAt = 0;
  prevWatched: Watched | undefined = undefined;
  nextWatched: Watched | undefined = undefined;
  watched = false;
  /** The upstream's response head has been relayed: from here on, a failure breaks the client connection. */
  answered = false;

  private readonly req: IncomingMessage;
  private readonly res: ServerResponse;
  /** The client connection (undici clears `req.socket` when it is done with the body). */
  private readonly client: Socket;
  private readonly startedAt: number;
  /** `finish`, bound once: the listener of the response's (and maybe the connection's) 'close'. */
  private readonly onClientGone: () => void;
  private resumeUpstream: () => void = noop;
  private pipelined = false;
  private drainHooked = false;
  private errorCounted = false;
  /** Standard family's error_type: '' for success, the upstream's 5xx status, or the failure kind. */
  private errorType = '';
  /** The proxy cut the client connection because of an upstream fault (not a client that left). */
  private brokenByUpstream = false;
  /** The client stopped sending or reading: what fails upstream afterwards is not the upstream's fault. */
  private clientStalled = false;
  private closed = false;
  /** Request body bytes written to the upstream (what was declared may never have been sent). */
  private bytesSent = 0;
  private responseBytes = 0;

  constructor(ctx: ExchangeContext, req: IncomingMessage, res: ServerResponse, request: UpstreamRequest, startedAt: number) {
    super(ctx, request);
    this.req = req;
    this.res = res;
    this.client = req.socket;
    this.startedAt = startedAt;
    // The response clock starts at arrival: waiting for a free connection counts.
    const { responseMs } = ctx.sweep.timeouts;
    this.responseDue = responseMs > 0 ? startedAt + responseMs : Infinity;
    this.onClientGone = this.finish.bind(this);
  }

  start(): void {
    this.ctx.metrics.requestStarted(this.request.method);
    this.res.on('close', this.onClientGone); // 'close' comes once: `on` spares the once-wrapper
    // Queued behind a pipelined response, it has no socket yet, and Node never closes it if the connection dies.
    if (this.res.socket === null) {
      this.pipelined = true;
      finishWhenClosed(this.client, this.onClientGone);
    }
    this.ctx.sweep.watch(this);
    this.send(false);
  }

  protected clientGone(): boolean {
    return this.closed;
  }

  protected connected(): void {
    // With a body, the response clock starts once the upload is over; the idle timeout watches it meanwhile.
    if (this.request.body !== null) this.responseDue = Infinity;
  }

  protected override upstreamBodySent(bytes: number): void {
    this.bytesSent += bytes;
  }

  protected override upstreamRequestSent(): void {
    const { responseMs } = this.ctx.sweep.timeouts;
    if (this.request.body !== null && responseMs > 0) this.responseDue = performance.now() + responseMs;
  }

  protected override upstreamHeaders(status: number, raw: Buffer[], resume: () => void, statusText: string): boolean {
    // 1xx: informational, not relayed (Node's server cannot, and did not before).
    if (status >= 100 && status < 200) return true;
    if (status < 100 || status > 599) return this.refuse(new Error(`invalid upstream status ${status}`));
    try {
      writeResponseHead(this.res, this.req, status, raw, statusText, this.ctx.isDraining());
    } catch (err) {
      return this.refuse(err);
    }
    this.resumeUpstream = resume;
    this.answered = true;
    if (status >= 500) {
      this.countError();
      this.errorType = String(status);
    }
    return true;
  }

  /** An upstream answer Node cannot relay: 502 of our own, and the upstream request dropped. */
  private refuse(err: unknown): false {
    this.upstreamDone = true;
    this.fail(PROTOCOL_FAILURE, err);
    this.drop();
    return false;
  }

  protected override upstreamData(chunk: Buffer): boolean {
    this.responseBytes += chunk.length;
    if (this.res.write(chunk)) return true;
    // Backpressure: undici stops reading the upstream until the client has taken what it has.
    if (!this.drainHooked) {
      this.drainHooked = true;
      this.res.on('drain', this.resumeUpstream);
    }
    return false;
  }

  protected override upstreamComplete(rawTrailers: Buffer[] | null): void {
    this.upstreamDone = true;
    if (this.drainHooked) this.res.off('drain', this.resumeUpstream);
    if (rawTrailers !== null && rawTrailers.length > 0) relayTrailers(this.res, rawTrailers);
    this.res.end();
  }

  protected override upstreamFailed(err: Error): void {
    this.stopWaiting();
    if (this.upstreamDone) return;
    this.upstreamDone = true;
    // The client went away first (its abort ends up here): nothing to answer, nothing to count.
    if (this.closed) return;
    if (this.tryRetry(err)) {
      this.ctx.log.debug({ err, method: this.request.method, path: pathOf(this.req.url) }, 'retrying on a fresh upstream connection');
      return;
    }
    if (this.clientStalled || this.client.destroyed) {
      // The client is gone or stalled; whatever failed upstream is a consequence, not an upstream fault.
      if (this.clientStalled) this.ctx.log.info({ method: this.request.method, path: pathOf(this.req.url) }, 'client stalled: idle timeout');
      this.res.destroy();
      return;
    }
    if (this.answered && !(err instanceof UpstreamTimeoutError)) {
      // The upstream died mid-body: the client must see a broken connection, not a short body.
      this.markFailure(RESET_FAILURE);
      this.ctx.log.warn({ err, method: this.request.method, path: pathOf(this.req.url) }, 'upstream closed the connection mid-response');
      this.brokenByUpstream = true;
      this.res.destroy();
      return;
    }
    this.fail(failureOf(err, this.answered), err);
  }

  /** The proxy answers instead of the upstream, or breaks the connection if the answer has begun. */
  private fail(failure: UpstreamFailure, err: unknown): void {
    this.markFailure(failure);
    this.ctx.log.error({ err, kind: failure.kind, method: this.request.method, path: pathOf(this.req.url) }, 'upstream request failed');
    if (this.answered || this.res.headersSent) {
      this.brokenByUpstream = true;
      this.res.destroy();
      return;
    }
    // The rest of an unfinished upload will not be read: the connection cannot carry another request.
    if (!this.req.complete) this.res.shouldKeepAlive = false;
    sendJson(this.res, failure.status, errorBody(failure.msg));
  }

  private countError(): void {
    if (this.errorCounted) return;
    this.errorCounted = true;
    this.ctx.metrics.recordError('api');
  }

  /** Counts an upstream failure once in each family; a failure outranks an upstream 5xx that preceded it. */
  private markFailure(failure: UpstreamFailure): void {
    this.countError();
    if (this.errorType === '' || /^\d/.test(this.errorType)) {
      this.errorType = failure.kind;
      this.ctx.metrics.recordUpstreamFailure(failure.kind);
    }
  }

  // ---- the sweep (exchange-sweep.ts)

  progress(): number {
    return this.bytesSent + this.responseBytes;
  }

  idleBlame(): 'client' | 'upstream' {
    // Waiting for a connection: the pool is full of the upstream's slow answers.
    if (this.waiting) return 'upstream';
    const blamed = idleBlame(this.upstreamDone, this.req, this.res);
    if (blamed === 'client') this.clientStalled = true;
    return blamed;
  }

  expire(code: UpstreamTimeoutCode, ms: number): void {
    if (this.upstreamDone) {
      this.res.destroy();
      return;
    }
    this.abortWith(new UpstreamTimeoutError(code, ms));
  }

  // ---- the end

  /** Records the exchange once, and releases the upstream request if it is still running. */
  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.ctx.sweep.unwatch(this);
    if (this.pipelined) forgetQueued(this.client, this.onClientGone);
    if (!this.upstreamDone) this.drop();
    const { req } = this;
    this.ctx.metrics.recordRequest({
      method: this.request.method,
      path: pathOf(req.url),
      status: statusOf(this.res, this.brokenByUpstream),
      errorType: this.errorType,
      durationMs: performance.now() - this.startedAt,
      requestBytes: this.bytesSent,
      responseBytes: this.responseBytes,
      traceparent: typeof req.headers.traceparent === 'string' ? req.headers.traceparent : undefined,
    });
  }
}

function noop(): void {}
