/** How an HTTP/2 upstream stream ended, and the errors the leg reports (with the codes upstream-errors.ts classifies). */
import { type ClientHttp2Stream, constants } from 'node:http2';

function codedError(message: string, code: string, extra?: Record<string, unknown>): Error {
  return Object.assign(new Error(message), { code, ...extra });
}

/** What the handler hears when it aborts without saying why (undici's RequestAbortedError). */
export function abortedError(): Error {
  return Object.assign(codedError('request aborted', 'ABORT_ERR'), { name: 'AbortError' });
}

/** The connection under a stream closed (a socket closed, or the session destroyed) before the response ended. */
export function connectionLostError(): Error {
  return codedError('upstream closed the HTTP/2 connection before the response completed', 'ECONNRESET');
}

/** node:http2 reports a peer's RST_STREAM(CANCEL) as no error at all: this gives it (and any code) one. */
export function streamResetError(rstCode: number): Error {
  return codedError(`Stream closed with error code ${rstCode}`, 'ERR_HTTP2_STREAM_ERROR', { rstCode });
}

export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/**
 * How a closed upstream stream ended: undefined when its response ended cleanly (END_STREAM seen
 * after a response, no error, no reset, its session still there), else the error to report.
 */
export function closedStreamError(stream: ClientHttp2Stream, responseEnded: boolean, sessionGone: boolean): Error | undefined {
  if (stream.errored !== null) return stream.errored;
  if (sessionGone) return connectionLostError();
  if (stream.rstCode !== constants.NGHTTP2_NO_ERROR || !responseEnded) return streamResetError(stream.rstCode);
  return undefined;
}

/**
 * REFUSED_STREAM (a stream over the peer's limit, or above the last stream id of its GOAWAY) means
 * the upstream did not process it at all (RFC 9113 §8.7): sent once more, transparently, on a
 * session that takes new streams (not one draining after its GOAWAY). Once only (`firstAttempt`),
 * and only when nothing of the body has been read from the client yet (those bytes could not be
 * sent twice) and no answer has begun (`nothingSent`).
 */
export function refusedUnprocessed(stream: ClientHttp2Stream, firstAttempt: boolean, nothingSent: boolean): boolean {
  return stream.rstCode === constants.NGHTTP2_REFUSED_STREAM && firstAttempt && nothingSent;
}
