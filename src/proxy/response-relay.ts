/**
 * Relaying an upstream response head and its trailers onto the client's
 * response, straight from undici's raw header Buffers: no header objects.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { relayedResponseHeaders, relayedTrailers } from './headers.js';

/** A reason phrase Node accepts as it is; any other gets the standard one for the status. */
const REASON_PHRASE = /^[\t\x20-\x7e]*$/;

/**
 * Writes the response head. Says what Node will do with the client connection: an answer that
 * comes before the whole request body (an early 401 or 413) closes it afterwards, as nginx does,
 * so the rest of the upload is never read into a reused connection; so does a graceful drain.
 * Throws what `writeHead` throws (a header value Node refuses); `statusMessage` is then reset.
 */
export function writeResponseHead(
  res: ServerResponse,
  req: IncomingMessage,
  status: number,
  raw: readonly Buffer[],
  statusText: string,
  draining: boolean,
): void {
  if (draining || !req.complete) res.shouldKeepAlive = false;
  const http10 = req.httpVersionMinor === 0;
  const trailersPossible = !http10 && req.method !== 'HEAD' && status !== 204 && status !== 304;
  const headers = relayedResponseHeaders(raw, { http10, trailersPossible });
  // Set explicitly, or Node would add its own Keep-Alive header to the upstream's.
  headers.push('connection', res.shouldKeepAlive ? 'keep-alive' : 'close');
  try {
    if (statusText !== '' && REASON_PHRASE.test(statusText)) res.writeHead(status, statusText, headers);
    else res.writeHead(status, headers);
  } catch (err) {
    // writeHead keeps the reason it was given: a later answer of the proxy's own must not wear it.
    res.statusMessage = '';
    throw err;
  }
}

/** Adds the trailer fields of a chunked response; Node sends them only where the framing allows. */
export function relayTrailers(res: ServerResponse, raw: readonly Buffer[]): void {
  const trailers = relayedTrailers(raw);
  if (trailers.length === 0) return;
  try {
    res.addTrailers(trailers);
  } catch {
    // A trailer field Node refuses is dropped; the response itself is complete.
  }
}
