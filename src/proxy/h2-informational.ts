/**
 * Response heads on the HTTP/2 upstream leg, final or informational, told to the handler as
 * undici's HTTP/1 client tells it of each head: onResponseStarted, then onHeaders with the status.
 * node:http2 splits them over two events of the stream: an informational (1xx) header block before
 * the response is a 'headers' event, the final head the 'response'. The exchange then treats a 1xx
 * from either protocol alike (HttpExchange.interim): a 103's fields go on to the client as early
 * hints, through the header policy of headers.ts; a 100, 102 or other 1xx is dropped, and nothing is
 * counted for it. HTTP/2 has no 101 (RFC 9113 §8.6): nghttp2 resets a stream that is sent one.
 */
import type { IncomingHttpHeaders } from 'node:http2';
import { asError } from './h2-errors.js';
import { headerObjectBuffers, rawHeaderBuffers } from './h2-headers.js';
import type { UpstreamHandler } from './upstream-pool.js';

/** A response header block as node:http2 hands it over, `:status` a number. */
export type H2ResponseHeaders = IncomingHttpHeaders & { ':status'?: number };

/** Whether a header block is an informational (1xx) head. */
export function isInformational(headers: H2ResponseHeaders): boolean {
  const status = Number(headers[':status']);
  return status >= 100 && status < 200;
}

/**
 * One head to the handler; returns what its onHeaders does (false: read no more until `resume`).
 * What the handler throws goes to `cancel` (the call's abort), and false is returned.
 */
export function relayHead(handler: UpstreamHandler, headers: H2ResponseHeaders, raw: readonly string[] | undefined, resume: () => void, cancel: (err: Error) => void): boolean {
  try {
    handler.onResponseStarted();
    const fields = raw === undefined ? headerObjectBuffers(headers) : rawHeaderBuffers(raw);
    return handler.onHeaders(Number(headers[':status']), fields, resume, '');
  } catch (err) {
    cancel(asError(err));
    return false;
  }
}
