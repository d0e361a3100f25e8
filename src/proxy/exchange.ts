/**
 * One forwarded HTTP request: the handler the upstream leg calls (undici's HTTP/1.1 pool or the
 * HTTP/2 sessions, through upstream-call.ts), the state of the request on both sides, and its
 * outcome, recorded exactly once when the client's response closes (or, queued behind a pipelined
 * one, its connection). A failure before the response head gets the proxy's JSON 502/504, after it a
 * broken response, so a truncated body never looks complete; a gRPC call gets a `grpc-status`
 * instead (grpc.ts). The client may speak HTTP/1.1 or HTTP/2 (client-side.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Writable } from 'node:stream';
import { type UpstreamTimeoutCode, UpstreamTimeoutError } from '../errors.js';
import type { Watched } from './exchange-sweep.js';
import { finishWhenClosed, forgetQueued } from './pipelined.js';
import { PROTOCOL_FAILURE, RESET_FAILURE, failureOf, idleBlame, statusOf } from './exchange-rules.js';
import { pathOf } from './url-parts.js';
import * as clientSide from './client-side.js';
import type { ClientRequest, ClientResponse, ProtocolVersion } from './client-side.js';
import { grpcStatusIn, rpcOutcome } from './grpc.js';
import { answerFailure } from './failure-answer.js';
import { isGrpcServerError } from '../metrics/grpc-status.js';
import type { ExchangeContext, ExchangeStart } from './exchange-context.js';
import { UpstreamCall } from './upstream-call.js';

export type { ExchangeContext, ExchangeStart } from './exchange-context.js';
import type { UpstreamFailure } from './upstream-errors.js';

/**
 * Where the exchange stands with its client, moving forward only: forwarding (nothing relayed
 * yet), answered (the response head has gone out: a failure now breaks the response, or ends a
 * gRPC call with a status), finished (the client's response closed; recorded).
 */
type ClientPhase = 'forwarding' | 'answered' | 'finished';

export class HttpExchange extends UpstreamCall<ExchangeContext> implements Watched {
  responseDue: number;
  lastProgress = -1;
  lastActiveAt = 0;
  prevWatched: Watched | undefined = undefined;
  nextWatched: Watched | undefined = undefined;
  watched = false;
  private phase: ClientPhase = 'forwarding';

  private readonly req: ClientRequest;
  private readonly res: ClientResponse;
  /** The client connection (undici clears `req.socket` when it is done with the body). */
  private readonly client: { readonly destroyed: boolean };
  private readonly startedAt: number;
  private readonly protocolVersion: ProtocolVersion;
  private readonly grpc: boolean;
  /** The call's grpc-status as the client got it (the upstream's, or the proxy's own). */
  private grpcStatus: number | undefined = undefined;
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
  /** Request body bytes written to the upstream (what was declared may never have been sent). */
  private bytesSent = 0;
  private responseBytes = 0;

  constructor(ctx: ExchangeContext, start: ExchangeStart) {
    super(ctx, start.request, start.pool);
    const { req, startedAt } = start;
    this.req = req;
    this.res = start.res;
    this.client = req.socket;
    this.startedAt = startedAt;
    this.protocolVersion = clientSide.protocolVersionOf(req);
    this.grpc = start.grpc;
    // The response clock starts at arrival: waiting for a free connection counts.
    const { responseMs } = ctx.sweep.timeouts;
    this.responseDue = responseMs > 0 ? startedAt + responseMs : Infinity;
    this.onClientGone = this.finish.bind(this);
  }

  /** The upstream's response head has been relayed (the sweep stops watching for it). */
  get answered(): boolean {
    return this.phase !== 'forwarding';
  }

  start(): void {
    this.ctx.metrics.requestStarted(this.request.method);
    this.res.on('close', this.onClientGone); // 'close' comes once: `on` spares the once-wrapper
    // Queued behind a pipelined response, it has no socket yet, and Node never closes it if the connection dies.
    if (this.res.socket === null) {
      this.pipelined = true;
      finishWhenClosed((this.req as IncomingMessage).socket, this.onClientGone);
      // One request of a connection upstream at a time, in order (as nginx and HAProxy forward them):
      // this one goes when the response before it is done and Node hands its response the socket.
      (this.res as ServerResponse).once('socket', () => this.dispatch());
      return;
    }
    this.dispatch();
  }

  private dispatch(): void {
    if (this.phase === 'finished') return;
    const { responseMs } = this.ctx.sweep.timeouts;
    // A pipelined request's response clock starts when it can go, not while the one before it runs.
    if (this.pipelined && responseMs > 0) this.responseDue = performance.now() + responseMs;
    this.ctx.sweep.watch(this);
    this.send(false);
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
    if (status >= 100 && status < 200) return this.interim(status, raw);
    if (status < 100 || status > 599) return this.refuse(new Error(`invalid upstream status ${status}`));
    this.upstreamStatus = status;
    // A gRPC head that carries grpc-status is a trailers-only response, relayed as one (one HEADERS frame).
    const headStatus = this.grpc ? grpcStatusIn(raw) : undefined;
    try {
      clientSide.writeHead(this.res, this.req, { status, raw, statusText, draining: this.ctx.isDraining(), trailersOnly: headStatus !== undefined });
    } catch (err) {
      return this.refuse(err);
    }
    this.resumeUpstream = resume;
    this.phase = 'answered';
    this.noteGrpcStatus(headStatus);
    if (status >= 500) {
      this.countError();
      this.errorType = String(status);
    }
    return true;
  }

  /**
   * An interim response, before the final one. A 103 Early Hints goes on to the client (Node writes
   * it with `writeEarlyHints`, on both protocols). A 101 outside an upgrade is an answer to a request
   * the proxy never made. The rest are dropped: a 100 answers an `Expect` that Node's server has
   * already answered the client (the header is not forwarded), and Node can write no other 1xx but
   * 102 Processing, obsolete since RFC 4918 (WebDAV) dropped it.
   */
  private interim(status: number, raw: Buffer[]): boolean {
    if (status === 101) return this.refuse(new Error('101 Switching Protocols to a request that asked for no upgrade'));
    if (status === 103) clientSide.writeEarlyHints(this.res, this.req, raw);
    return true;
  }

  /** An upstream answer Node cannot relay: 502 of our own, and the upstream request dropped. */
  private refuse(err: unknown): false {
    this.moveUpstream('done', PROTOCOL_FAILURE.kind);
    this.fail(PROTOCOL_FAILURE, err);
    this.drop();
    return false;
  }

  protected override upstreamData(chunk: Buffer): boolean {
    this.responseBytes += chunk.length;
    if ((this.res as Writable).write(chunk)) return true;
    // Backpressure: undici stops reading the upstream until the client has taken what it has.
    if (!this.drainHooked) {
      this.drainHooked = true;
      this.res.on('drain', this.resumeUpstream);
    }
    return false;
  }

  protected override upstreamComplete(rawTrailers: Buffer[] | null): void {
    this.moveUpstream('done');
    if (this.drainHooked) this.res.off('drain', this.resumeUpstream);
    if (rawTrailers !== null && rawTrailers.length > 0) {
      if (this.grpc) this.noteGrpcStatus(grpcStatusIn(rawTrailers));
      clientSide.writeTrailers(this.res, rawTrailers);
    }
    this.res.end();
  }

  /** The upstream's grpc-status: a server error counts as an error of the call, as a 5xx does for HTTP. */
  private noteGrpcStatus(status: number | undefined): void {
    if (status === undefined) return;
    this.grpcStatus = status;
    if (isGrpcServerError(status)) this.countError();
  }

  protected override upstreamFailed(err: Error): void {
    if (this.upstreamDone) return;
    const diedMidBody = this.answered && !this.grpc && !(err instanceof UpstreamTimeoutError);
    // Given up because the client left or stalled, the attempt is not the upstream's failure.
    const cancelled = this.phase === 'finished' || this.clientStalled || this.client.destroyed;
    this.moveUpstream('done', cancelled ? 'cancelled' : diedMidBody ? RESET_FAILURE.kind : failureOf(err, this.answered).kind);
    // The client went away first (its abort ends up here): nothing to answer, nothing to count.
    if (this.phase === 'finished') return;
    if (this.tryRetry(err)) {
      this.ctx.log.debug({ err, method: this.request.method, path: pathOf(this.req.url) }, 'retrying on a fresh upstream connection');
      return;
    }
    if (this.clientStalled || this.client.destroyed) {
      // The client is gone or stalled; whatever failed upstream is a consequence, not an upstream fault.
      if (this.clientStalled) this.ctx.log.info({ method: this.request.method, path: pathOf(this.req.url) }, 'client stalled: idle timeout');
      clientSide.breakResponse(this.res);
      return;
    }
    if (diedMidBody) {
      // The upstream died mid-body: the client must see a broken connection, not a short body.
      this.markFailure(RESET_FAILURE);
      this.ctx.log.warn({ err, method: this.request.method, path: pathOf(this.req.url) }, 'upstream closed the connection mid-response');
      this.brokenByUpstream = true;
      clientSide.breakResponse(this.res);
      return;
    }
    this.fail(failureOf(err, this.answered), err);
  }

  /** The proxy answers instead of the upstream, or breaks the connection if the answer has begun. */
  private fail(failure: UpstreamFailure, err: unknown): void {
    this.markFailure(failure);
    this.ctx.log.error({ err, kind: failure.kind, method: this.request.method, path: pathOf(this.req.url) }, 'upstream request failed');
    const told = answerFailure(this.req, this.res, failure, this.grpc, this.answered);
    if (told === 'broken') this.brokenByUpstream = true;
    else if (told !== undefined) this.grpcStatus = told;
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
    const blamed = idleBlame(this.upstreamDone, this.req as IncomingMessage, this.res as ServerResponse);
    if (blamed === 'client') this.clientStalled = true;
    return blamed;
  }

  expire(code: UpstreamTimeoutCode, ms: number): void {
    if (this.upstreamDone) {
      clientSide.breakResponse(this.res);
      return;
    }
    this.abortWith(new UpstreamTimeoutError(code, ms));
  }

  /** Records the exchange once, and releases the upstream request if it is still running. */
  private finish(): void {
    if (this.phase === 'finished') return;
    const upstreamWasDone = this.upstreamDone;
    this.phase = 'finished';
    this.ctx.sweep.unwatch(this);
    if (this.pipelined) forgetQueued((this.req as IncomingMessage).socket, this.onClientGone);
    if (!this.upstreamDone) this.drop();
    const { req } = this;
    const path = pathOf(req.url);
    const status = statusOf(this.res as ServerResponse, this.brokenByUpstream);
    this.ctx.metrics.recordRequest({
      method: this.request.method,
      path,
      status,
      errorType: this.errorType,
      durationMs: performance.now() - this.startedAt,
      requestBytes: this.bytesSent,
      responseBytes: this.responseBytes,
      traceparent: typeof req.headers.traceparent === 'string' ? req.headers.traceparent : undefined,
      protocolVersion: this.protocolVersion,
      // No spread of an optional field: a plain HTTP request allocates nothing for gRPC.
      rpc: this.grpc ? rpcOutcome(path, this.grpcStatus, upstreamWasDone) : undefined,
    });
  }
}

function noop(): void {}
