/**
 * Relaying an upstream response head and its trailers onto the client's
 * response, straight from undici's raw header Buffers: no header objects.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import { relayedResponseHeaders, relayedTrailers } from './headers.js';

/** HTTP/2 frames bodies itself and has no reason phrase: no Transfer-Encoding, no Trailer announcement. */
const HTTP2_FRAMING = { http10: false, trailersPossible: false, http2: true } as const;

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
  // Set explicitly: the upstream's Connection and Keep-Alive are hop-by-hop and dropped; left unset, Node would add its own Connection and Keep-Alive: timeout= to the client's answer.
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

/**
 * The head of a response to an HTTP/2 client: the same fields, no connection-specific ones, no
 * reason phrase. A trailers-only head ends the stream with it (`res.end()` afterwards is a no-op).
 */
export function writeResponseHeadHttp2(res: Http2ServerResponse, status: number, raw: readonly Buffer[], trailersOnly: boolean): void {
  const fields = relayedResponseHeaders(raw, HTTP2_FRAMING);
  if (!trailersOnly) {
    res.writeHead(status, fields as unknown as Record<string, string>);
    return;
  }
  const headers: Record<string, string | string[]> = { ':status': String(status) };
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i] as string;
    const value = fields[i + 1] as string;
    const had = headers[name];
    headers[name] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [had, value];
  }
  res.statusCode = status;
  res.stream.respond(headers, { endStream: true });
}

/** Trailers to an HTTP/2 client (gRPC's grpc-status among them), which the compatibility API takes as an object. */
export function relayTrailersHttp2(res: Http2ServerResponse, raw: readonly Buffer[]): void {
  const trailers: Record<string, string> = {};
  for (const [name, value] of relayedTrailers(raw)) trailers[name] = name in trailers ? `${trailers[name]}, ${value}` : value;
  try {
    res.addTrailers(trailers);
  } catch {
    // A trailer field nghttp2 refuses is dropped; the response itself is complete.
  }
}
