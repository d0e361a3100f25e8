/** The errors the HTTP/2 upstream leg reports, with the codes upstream-errors.ts classifies. */

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
