/**
 * The client's side of an exchange, whichever protocol it speaks: Node's HTTP/1.1 request and
 * response, or the HTTP/2 compatibility API's. The exchange holds one of each and asks here where
 * the two differ: how a response head and trailers are written, and what the client's version is.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { Http2ServerResponse, type Http2ServerRequest, type ServerHttp2Stream, constants } from 'node:http2';
import { earlyHints } from './headers.js';
import { relayTrailers, relayTrailersHttp2, writeResponseHead, writeResponseHeadHttp2 } from './response-relay.js';

export type ClientRequest = IncomingMessage | Http2ServerRequest;
export type ClientResponse = ServerResponse | Http2ServerResponse;
export type ProtocolVersion = '1.0' | '1.1' | '2';

export function isHttp2(res: ClientResponse): res is Http2ServerResponse {
  return res instanceof Http2ServerResponse;
}

export function protocolVersionOf(req: ClientRequest): ProtocolVersion {
  if (req.httpVersionMajor === 2) return '2';
  return req.httpVersionMinor === 0 ? '1.0' : '1.1';
}

/** Whether the request carries a body: HTTP/1.1 frames it in headers, HTTP/2 by leaving the stream open. */
export function hasBody(req: ClientRequest): boolean {
  if (req.httpVersionMajor === 2) return !(req as Http2ServerRequest).stream.endAfterHeaders;
  const { headers } = req;
  if (headers['transfer-encoding'] !== undefined) return true;
  const length = headers['content-length'];
  return length !== undefined && length !== '0' && Number(length) > 0;
}

function ignoreBodyError(): void {}

/**
 * An HTTP/2 request body that ends only when the client ended it. Node emits 'end' on a stream
 * (and on the compatibility request over it) even when the client resets it mid-upload: its own
 * client's `close(code)` sends END_STREAM just before RST_STREAM. Passed on as it is, a cut upload
 * would look complete upstream; so the end is decided once the frames read with it are processed,
 * and a reset among them destroys this body instead.
 */
class Http2RequestBody extends Readable {
  constructor(private readonly stream: ServerHttp2Stream) {
    super();
    stream.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) stream.pause();
    });
    stream.once('end', () => setImmediate(() => this.settle()));
    stream.once('error', (err: Error) => this.destroy(err));
    // The upstream leg reads the error through its own listener, or is already gone: never an uncaught throw.
    this.on('error', ignoreBodyError);
  }

  override _read(): void {
    this.stream.resume();
  }

  private settle(): void {
    const { stream } = this;
    const reset = stream.aborted || (stream.rstCode !== undefined && stream.rstCode !== constants.NGHTTP2_NO_ERROR);
    if (reset) this.destroy(Object.assign(new Error('the client reset the stream'), { code: 'ERR_HTTP2_STREAM_CANCEL' }));
    else this.push(null);
  }
}

/** The request body as a stream for the upstream leg, or null when there is none. */
export function bodyOf(req: ClientRequest): Readable | null {
  if (!hasBody(req)) return null;
  return req.httpVersionMajor === 2 ? new Http2RequestBody((req as Http2ServerRequest).stream) : (req);
}

export interface RelayedHead {
  readonly status: number;
  /** The upstream's raw header fields. */
  readonly raw: readonly Buffer[];
  readonly statusText: string;
  /** A graceful drain is on: an HTTP/1.1 connection closes after this response. */
  readonly draining: boolean;
  /** The head ends the response (a gRPC trailers-only response): HTTP/2 sends it as one HEADERS frame with END_STREAM. */
  readonly trailersOnly: boolean;
}

/** The upstream's response head onto the client's response; throws what Node throws for a head it refuses. */
export function writeHead(res: ClientResponse, req: ClientRequest, head: RelayedHead): void {
  if (isHttp2(res)) writeResponseHeadHttp2(res, head.status, head.raw, head.trailersOnly);
  else writeResponseHead(res, req as IncomingMessage, head.status, head.raw, head.statusText, head.draining);
}

/**
 * Relays an upstream's 103 Early Hints before the final response: Node writes it as a 103 to an
 * HTTP/1.1 client and as an interim HEADERS frame to an HTTP/2 one. None to an HTTP/1.0 client,
 * which knows no 1xx (RFC 9110 §15.2). A 103 Node refuses (a Link value outside the format it
 * checks) is dropped: it was only a hint.
 */
export function writeEarlyHints(res: ClientResponse, req: ClientRequest, raw: readonly Buffer[]): void {
  if (req.httpVersionMajor === 1 && req.httpVersionMinor === 0) return;
  const hints = earlyHints(raw);
  if (hints === undefined) return;
  try {
    res.writeEarlyHints(hints);
  } catch {
    // ERR_INVALID_ARG_VALUE: nothing was written.
  }
}

/**
 * Cuts a response the client must not take for complete: HTTP/1.1 closes the connection; HTTP/2
 * resets the stream with INTERNAL_ERROR (a plain destroy would end it cleanly, with END_STREAM).
 */
export function breakResponse(res: ClientResponse): void {
  if (isHttp2(res)) res.stream.destroy(Object.assign(new Error('upstream response cut'), { code: 'ERR_HTTP2_STREAM_ERROR' }));
  else res.destroy();
}

export function writeTrailers(res: ClientResponse, raw: readonly Buffer[]): void {
  if (isHttp2(res)) relayTrailersHttp2(res, raw);
  else relayTrailers(res, raw);
}

/** HTTP/1.1: the connection closes after this response (an unread upload). HTTP/2 streams need nothing. */
export function closeConnectionAfter(res: ClientResponse): void {
  if (!isHttp2(res)) res.shouldKeepAlive = false;
}
