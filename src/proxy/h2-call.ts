/**
 * One request on the HTTP/2 upstream leg: it waits for a stream slot, gets a stream, streams its
 * body up while the response streams down (full duplex, as gRPC needs), and drives the
 * UpstreamHandler hooks as undici's HTTP/1 client does, so HttpExchange runs over it unchanged:
 * onConnect(abort) → onBodySent* → onRequestSent, concurrently with (onResponseStarted →
 * onHeaders)+ (any 1xx heads, then the final one) → onData* → onComplete(trailers), or one onError.
 * After an abort, or any failure, the handler hears nothing more but that one onError. The
 * listeners are the call's own arrow-function fields: one object per request.
 */
import { type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders, constants } from 'node:http2';
import type { Readable } from 'node:stream';
import { abortedError, asError, closedStreamError, refusedUnprocessed } from './h2-errors.js';
import { type H2Origin, h2RequestHeaders, headerObjectBuffers, rawHeaderBuffers } from './h2-headers.js';
import { type H2ResponseHeaders, isInformational, relayHead } from './h2-informational.js';
import type { CallHost, CallPhase, StreamSlot } from './h2-slot.js';
import type { UpstreamHandler, UpstreamRequest } from './upstream-pool.js';

const { NGHTTP2_CANCEL, NGHTTP2_NO_ERROR } = constants;
/** What `session.request` throws for a session that is closing or gone. */
const SESSION_GONE = new Set(['ERR_HTTP2_INVALID_SESSION', 'ERR_HTTP2_GOAWAY_SESSION']);

/** The request body: not (yet) read, being streamed up, all written. */
type UploadPhase = 'idle' | 'streaming' | 'sent';
/** The response heads read: none yet, informational (1xx) ones only, the final one. */
type HeadPhase = 'none' | 'interim' | 'final';

export class H2Call {
  phase: CallPhase = 'queued';
  readonly request: UpstreamRequest;
  private readonly host: CallHost;
  private readonly handler: UpstreamHandler;
  private readonly headers: OutgoingHttpHeaders;
  private upload: UploadPhase = 'idle';
  private slot: StreamSlot | undefined = undefined;
  private stream: ClientHttp2Stream | undefined = undefined;
  private attempts = 0;
  private bodyBytes = 0;
  private head: HeadPhase = 'none';
  private trailers: Buffer[] | null = null;
  /** The response's END_STREAM arrived; whether it ended the response or a reset followed is settled after. */
  private endSeen = false;

  constructor(host: CallHost, origin: H2Origin, request: UpstreamRequest, handler: UpstreamHandler) {
    this.host = host;
    this.request = request;
    this.handler = handler;
    this.headers = h2RequestHeaders(origin, request.method, request.path, request.headers);
  }

  /** Gets the stream on `slot` (already reserved): onConnect first, and no stream if the handler aborts in it. */
  start(slot: StreamSlot): void {
    if (this.phase !== 'queued') {
      slot.release();
      return;
    }
    this.phase = 'streaming';
    this.slot = slot;
    if (this.attempts++ === 0) {
      try {
        this.handler.onConnect(this.abort);
      } catch (err) {
        this.cancel(asError(err));
      }
      if (this.phase !== 'streaming') {
        this.releaseSlot();
        return;
      }
    }
    const { body } = this.request;
    let stream: ClientHttp2Stream;
    try {
      stream = slot.open(this.headers, body === null || this.upload === 'sent');
    } catch (err) {
      // Nothing was sent: a session that closed a moment ago (the call goes once more), or a header node:http2 refuses.
      this.releaseSlot();
      if (this.attempts === 1 && SESSION_GONE.has((err as NodeJS.ErrnoException).code ?? '')) this.requeue();
      else this.fail(asError(err));
      return;
    }
    this.stream = stream;
    stream.on('headers', this.onInterim);
    stream.on('response', this.onResponse);
    stream.on('trailers', this.onTrailers);
    stream.on('end', this.onEnd);
    stream.on('close', this.onClose);
    stream.on('wantTrailers', this.onWantTrailers);
    // Read in 'close' (stream.errored); a listener is needed all the same, or node:events throws it.
    stream.on('error', ignore);
    if (body !== null && this.upload !== 'sent') this.sendBody(body, stream);
    else if (this.attempts === 1) this.requestSent(); // said once, not again for a retry
  }

  /** Fails a call that never got a stream (or whose stream could not open), unless it is over already. */
  fail(err: Error): void {
    if (this.phase === 'done') return;
    this.phase = 'done';
    this.detachBody();
    try {
      this.handler.onError(err);
    } catch (thrown) {
      this.host.onStrayError(asError(thrown));
    }
  }

  /** Handed to the handler in onConnect (bound): cancels the call from then on. */
  readonly abort = (err?: Error): void => {
    this.cancel(err);
  };

  private readonly resume = (): void => {
    if (this.phase === 'streaming') this.stream?.resume();
  };

  private cancel(err: Error | undefined): void {
    if (this.phase === 'done') return;
    // RST_STREAM(CANCEL): the upstream sees its call cancelled, as a gRPC client's own cancel would.
    this.stream?.close(NGHTTP2_CANCEL);
    this.fail(err ?? abortedError());
  }

  private releaseSlot(): void {
    const { slot } = this;
    this.slot = undefined;
    slot?.release();
  }

  // ---- the request body, up

  private sendBody(body: Readable, stream: ClientHttp2Stream): void {
    if (body.readableEnded) {
      this.onBodyEnd();
      return;
    }
    if (body.destroyed) {
      this.cancel(body.errored ?? abortedError());
      return;
    }
    this.upload = 'streaming';
    stream.on('drain', this.onDrain);
    body.on('data', this.onBodyData);
    body.on('end', this.onBodyEnd);
    body.on('close', this.onBodyClose);
    body.on('error', ignore); // seen in 'close' as body.errored
  }

  private readonly onBodyData = (chunk: Buffer): void => {
    const { stream } = this;
    if (this.phase !== 'streaming' || stream === undefined) return;
    this.bodyBytes += chunk.length;
    const more = stream.write(chunk);
    try {
      this.handler.onBodySent(chunk);
    } catch (err) {
      this.cancel(asError(err));
      return;
    }
    if (!more) this.request.body?.pause();
  };

  /**
   * The body's END_STREAM goes out only for a body that really ended (see `open`): a cancel resets
   * the stream without it, where node:http2 would otherwise end the stream first on its own.
   */
  private readonly onWantTrailers = (): void => {
    if (this.upload === 'sent') this.stream?.sendTrailers({});
  };

  private readonly onDrain = (): void => {
    if (this.upload === 'streaming') this.request.body?.resume();
  };

  private readonly onBodyEnd = (): void => {
    this.detachBody();
    this.upload = 'sent';
    if (this.phase !== 'streaming') return;
    this.stream?.end();
    this.requestSent();
  };

  /** The client's body closed before its end: the client is gone, and so is the upstream call. */
  private readonly onBodyClose = (): void => {
    if (this.upload === 'streaming') this.cancel(this.request.body?.errored ?? abortedError());
  };

  private requestSent(): void {
    try {
      this.handler.onRequestSent();
    } catch (err) {
      this.cancel(asError(err));
    }
  }

  private detachBody(): void {
    if (this.upload !== 'streaming') return;
    this.upload = 'idle';
    const { body } = this.request;
    this.stream?.off('drain', this.onDrain);
    if (body === null) return;
    body.off('data', this.onBodyData);
    body.off('end', this.onBodyEnd);
    body.off('close', this.onBodyClose);
    body.off('error', ignore);
  }

  // ---- the response, down

  /** An informational (1xx) head before the response: the exchange relays a 103 and drops the rest. */
  private readonly onInterim = (headers: H2ResponseHeaders, _flags: number, raw?: string[]): void => {
    if (this.phase !== 'streaming' || this.head === 'final' || !isInformational(headers)) return;
    this.head = 'interim';
    relayHead(this.handler, headers, raw, this.resume, this.abort);
  };

  private readonly onResponse = (headers: H2ResponseHeaders, _flags: number, raw?: string[]): void => {
    const { stream } = this;
    if (this.phase !== 'streaming' || stream === undefined) return;
    this.head = 'final';
    const more = relayHead(this.handler, headers, raw, this.resume, this.abort);
    if (this.phase !== 'streaming') return;
    if (!more) stream.pause();
    stream.on('data', this.onData);
  };

  private readonly onData = (chunk: Buffer): void => {
    if (this.phase !== 'streaming') return;
    let more: boolean;
    try {
      more = this.handler.onData(chunk);
    } catch (err) {
      this.cancel(asError(err));
      return;
    }
    if (!more && this.phase === 'streaming') this.stream?.pause();
  };

  private readonly onTrailers = (_headers: IncomingHttpHeaders, _flags: number, raw?: string[]): void => {
    this.trailers = raw === undefined ? headerObjectBuffers(_headers) : rawHeaderBuffers(raw);
  };

  /**
   * The response's END_STREAM. A RST_STREAM with an error code read together with it (node:http2
   * even reports a reset of a stream it had not finished reading as an 'end') means the response
   * was cut: the end counts once the frames read with it are processed, and 'close' (or the next
   * turn of the loop) tells which it was.
   */
  private readonly onEnd = (): void => {
    if (this.phase !== 'streaming' || this.stream === undefined) return;
    this.endSeen = true;
    setImmediate(this.settleEnd);
  };

  private readonly settleEnd = (): void => {
    const { stream } = this;
    if (this.phase !== 'streaming' || stream === undefined) return;
    // node:http2 also ends the readable side of a stream whose session died under it: that is 'close''s to report.
    if (this.head !== 'final' || stream.destroyed || stream.rstCode !== NGHTTP2_NO_ERROR) return;
    this.complete(stream);
  };

  private complete(stream: ClientHttp2Stream): void {
    this.phase = 'done';
    if (this.upload === 'streaming') {
      // Answered before the whole upload: the rest is not wanted (RFC 9113 §8.1), so stop sending it.
      this.detachBody();
      stream.close(NGHTTP2_NO_ERROR);
    }
    try {
      this.handler.onComplete(this.trailers);
    } catch (err) {
      this.host.onStrayError(asError(err));
    }
  }

  private readonly onClose = (): void => {
    const { stream, slot } = this;
    this.stream = undefined;
    this.releaseSlot();
    if (this.phase !== 'streaming' || stream === undefined) return;
    if (refusedUnprocessed(stream, this.attempts === 1, this.bodyBytes === 0 && this.head === 'none')) {
      this.requeue();
      return;
    }
    const err = closedStreamError(stream, this.endSeen && this.head === 'final', slot?.gone === true);
    if (err === undefined) this.complete(stream);
    else this.fail(err);
  };

  private requeue(): void {
    this.endSeen = false;
    this.detachBody();
    this.phase = 'queued';
    this.host.submit(this);
  }
}

function ignore(): void {}
