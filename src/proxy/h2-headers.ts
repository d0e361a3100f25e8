/**
 * Headers across the HTTP/2 upstream leg (h2-upstream.ts), both ways, without
 * header objects of our own: the request's flat [name, value, …] list
 * (headers.ts) becomes the header object node:http2 takes, pseudo-headers
 * first and nothing HTTP/2 forbids; a response's raw name/value strings become
 * the flat Buffer list undici hands the exchange today.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';

/**
 * Connection-specific fields make an HTTP/2 message malformed (RFC 9113 §8.2.2), and node:http2
 * throws on them. headers.ts leaves none of them in a request; dropped here once more, defensively.
 * `host` becomes `:authority`.
 */
const NOT_SENT = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings', 'host']);

/** What every request of an upstream shares: the pseudo-headers that are not the request's own. */
export interface H2Origin {
  readonly scheme: 'http' | 'https';
  /** The upstream's host[:port], for a request without a Host header. */
  readonly authority: string;
}

/**
 * The request header object for `session.request`. Repeated names become a list (node:http2 sends
 * one field per value, as `-bin` metadata and `cookie` want); `te` is kept only as `trailers`,
 * the one value HTTP/2 allows and the one gRPC servers require.
 */
export function h2RequestHeaders(origin: H2Origin, method: string, path: string, flat: ReadonlyArray<string | string[]>): OutgoingHttpHeaders {
  const out = Object.create(null) as OutgoingHttpHeaders;
  out[':method'] = method;
  out[':scheme'] = origin.scheme;
  out[':authority'] = origin.authority;
  out[':path'] = path;
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const name = flat[i] as string;
    const value = flat[i + 1] as string | string[];
    if (name === 'host') {
      const host = Array.isArray(value) ? value[0] : value;
      if (host !== undefined && host !== '') out[':authority'] = host;
    } else if (name === 'te') {
      if (listsTrailers(value)) out.te = 'trailers';
    } else if (!NOT_SENT.has(name) && name.charCodeAt(0) !== 0x3a /* ':' */) {
      const before = out[name];
      out[name] = before === undefined ? value : concat(before, value);
    }
  }
  return out;
}

function listsTrailers(value: string | string[]): boolean {
  const text = Array.isArray(value) ? value.join(',') : value;
  return text.split(',').some((token) => token.trim().toLowerCase() === 'trailers');
}

function concat(before: NonNullable<OutgoingHttpHeaders[string]>, value: string | string[]): string[] {
  const list = Array.isArray(before) ? [...before] : [String(before)];
  if (Array.isArray(value)) list.push(...value);
  else list.push(value);
  return list;
}

/**
 * A response's (or trailers') header block as raw Buffers [name, value, …], as undici gives them:
 * lower-case names, pseudo-headers (`:status`) left out, a repeated field repeated. node:http2
 * hands the fields over as latin1 strings of their bytes, so the bytes come back unchanged.
 */
export function rawHeaderBuffers(raw: readonly string[]): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.charCodeAt(0) === 0x3a) continue;
    out.push(Buffer.from(name, 'latin1'), Buffer.from(raw[i + 1] as string, 'latin1'));
  }
  return out;
}

/** The same from node:http2's header object, for a Node that would not pass the raw list (all of 20–24 do). */
export function headerObjectBuffers(headers: IncomingHttpHeaders): Buffer[] {
  const raw: string[] = [];
  for (const name of Object.keys(headers)) {
    const value = headers[name];
    if (Array.isArray(value)) for (const item of value) raw.push(name, item);
    else if (value !== undefined) raw.push(name, String(value));
  }
  return rawHeaderBuffers(raw);
}
