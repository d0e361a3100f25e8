/**
 * Header rules of a transparent reverse proxy (RFC 9110 §7.6.1): hop-by-hop
 * headers stop here, and X-Forwarded-* tell the upstream who really called.
 */
import { type IncomingHttpHeaders, type IncomingMessage, validateHeaderName, validateHeaderValue } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import { headerName } from './upstream-pool.js';

/**
 * Hop-by-hop. `transfer-encoding` is absent on purpose: it frames the body. `trailer` is not hop-by-hop
 * since RFC 7230, but request trailers cannot be forwarded (undici sends none), so it stops on requests;
 * on responses it is relayed along with the trailers.
 */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'http2-settings'] as const;
const REQUEST_ONLY = ['proxy-authorization'] as const;
const RESPONSE_ONLY = ['proxy-authenticate'] as const;
/** Framing headers stay even when a peer lists them in `Connection`, or the body would be misread. */
const NEVER_STRIP = new Set(['transfer-encoding', 'content-length', 'host']);

/** One value: Node joins repeated headers itself, except the few it keeps as a list (`set-cookie`). */
function joined(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

/**
 * The headers of a WebSocket handshake, written onto `req.headers` for http-proxy-3: the same
 * rules as every other request (`upstreamRequestHeaders`), plus the upgrade itself.
 * Trust model, for a sidecar that should be invisible: the peer address is appended to
 * X-Forwarded-For; X-Forwarded-Proto and -Host are set only when absent, so what an ingress in
 * front of us set still reaches the service. `Expect` is dropped because Node has already answered
 * `100 Continue`.
 */
export function prepareWebSocketHeaders(req: IncomingMessage): void {
  const upgradeTo = req.headers.upgrade;
  const fields = upstreamRequestHeaders(req);
  const headers: IncomingHttpHeaders = {};
  for (let i = 0; i + 1 < fields.length; i += 2) headers[fields[i] as string] = fields[i + 1];
  if (upgradeTo !== undefined) {
    headers.connection = 'Upgrade';
    headers.upgrade = upgradeTo;
  }
  req.headers = headers;
}

/** The names a `Connection` value lists besides `keep-alive` and `close`, or undefined when there are none. */
function listedNames(connection: string | string[] | undefined): Set<string> | undefined {
  if (connection === undefined) return undefined;
  const value = String(connection);
  const lower = value.toLowerCase();
  // The usual `keep-alive` and `close` list no other header: skip the split.
  if (value.indexOf(',') === -1 && (lower === 'keep-alive' || lower === 'close')) return undefined;
  let listed: Set<string> | undefined;
  for (const token of lower.split(',')) {
    const name = token.trim();
    if (name === '' || name === 'keep-alive' || name === 'close' || NEVER_STRIP.has(name)) continue;
    (listed ??= new Set()).add(name);
  }
  return listed;
}

/**
 * Not copied into an upstream request: hop-by-hop headers, `Expect` (Node has answered
 * `100 Continue`), `Transfer-Encoding` (undici frames the body itself), and the X-Forwarded-*
 * trio, which is added afterwards.
 */
const NOT_COPIED_UPSTREAM = new Set<string>([
  ...HOP_BY_HOP,
  ...REQUEST_ONLY,
  'expect',
  'transfer-encoding',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
]);

/**
 * The headers of an upstream request, as the flat [name, value, …] list undici takes: the one
 * header policy, for HTTP/1.1 and HTTP/2 clients and upstreams and WebSocket handshakes alike.
 * `req.headers` is not modified. An HTTP/2 client's pseudo-headers stay behind, its `:authority` becomes `Host`; `TE:
 * trailers`, which gRPC servers require, goes on when the upstream leg is HTTP/2 (`keepTeTrailers`).
 */
export function upstreamRequestHeaders(req: IncomingMessage | Http2ServerRequest, keepTeTrailers = false): Array<string | string[]> {
  const headers = req.headers;
  const listed = listedNames(headers.connection);
  const out: Array<string | string[]> = [];
  for (const name in headers) {
    if (NOT_COPIED_UPSTREAM.has(name) || listed?.has(name) === true || name.charCodeAt(0) === COLON) continue;
    const value = headers[name];
    if (value !== undefined) out.push(name, value);
  }
  const host = headers.host ?? headers[':authority'];
  if (headers.host === undefined && host !== undefined) out.push('host', host);
  if (keepTeTrailers && headers.te !== undefined && /^\s*trailers\s*$/i.test(joined(headers.te) ?? '')) out.push('te', 'trailers');
  const peer = req.socket.remoteAddress ?? '';
  const forwardedFor = keptValue(headers, listed, 'x-forwarded-for');
  out.push('x-forwarded-for', forwardedFor ? `${forwardedFor}, ${peer}` : peer);
  out.push('x-forwarded-proto', keptValue(headers, listed, 'x-forwarded-proto') || 'http');
  const forwardedHost = keptValue(headers, listed, 'x-forwarded-host');
  if (forwardedHost) out.push('x-forwarded-host', forwardedHost);
  else if (host !== undefined) out.push('x-forwarded-host', host);
  return out;
}

/** Pseudo-header names (`:method`, `:authority`, …) start with a colon. */
const COLON = 0x3a;

function keptValue(headers: IncomingHttpHeaders, listed: Set<string> | undefined, name: string): string | undefined {
  return listed?.has(name) === true ? undefined : joined(headers[name]);
}

/** Never relayed to the client. `trailer` and `transfer-encoding` are decided apart (see below). */
const NOT_RELAYED = new Set<string>(['connection', 'keep-alive', 'proxy-connection', 'te', 'upgrade', ...RESPONSE_ONLY]);

export interface ResponseFraming {
  /** An HTTP/1.0 client: it cannot take chunked framing, so `Transfer-Encoding` is dropped (Node closes instead). */
  readonly http10: boolean;
  /** An HTTP/2 client: no connection-specific field at all (RFC 9113 §8.2.2), `Transfer-Encoding` included. */
  readonly http2?: boolean;
  /** The response can carry trailers to this client (a body, HTTP/1.1): `Trailer` may be relayed. */
  readonly trailersPossible: boolean;
}

/**
 * The headers of an upstream response, as the flat [name, value, …] list `res.writeHead` takes, from
 * undici's raw Buffers, in one pass: names lower-cased (so the policy's lookups and Node's own header handling see one spelling), values decoded
 * as latin1 (header bytes unchanged), hop-by-hop headers and the names `Connection` lists left out.
 * `Trailer` goes through only with a chunked response that can carry trailers: Node refuses it
 * on any other.
 */
export function relayedResponseHeaders(raw: readonly Buffer[], framing: ResponseFraming): string[] {
  const out: string[] = [];
  let connection: string | undefined;
  let trailer: string | undefined;
  let chunked = false;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = headerName(raw[i] as Buffer);
    const value = (raw[i + 1] as Buffer).toString('latin1');
    if (name === 'connection') {
      connection = connection === undefined ? value : `${connection}, ${value}`;
    } else if (name === 'trailer') {
      trailer = trailer === undefined ? value : `${trailer}, ${value}`;
    } else if (name === 'transfer-encoding') {
      chunked = /chunked\s*$/i.test(value);
      if (!framing.http10 && framing.http2 !== true) out.push(name, value);
    } else if (!NOT_RELAYED.has(name)) {
      out.push(name, value);
    }
  }
  if (trailer !== undefined && chunked && framing.trailersPossible) out.push('trailer', trailer);
  const listed = listedNames(connection);
  return listed === undefined ? out : out.filter((_v, i, all) => !listed.has(all[i - (i % 2)] as string));
}

/** An interim response has no body: no framing fields, no trailers (and no connection-specific field, for HTTP/2). */
const INTERIM_FRAMING: ResponseFraming = { http10: false, http2: true, trailersPossible: false };

/**
 * The fields of an upstream's 103 Early Hints (RFC 8297) as `res.writeEarlyHints` takes them, or
 * undefined without a `Link` (Node writes no 103 without one). The rules of a final response apply
 * (hop-by-hop fields and the names `Connection` lists stay here), and `Content-Length` goes too;
 * names lower-case, a repeated field joined with ", ", a field Node would refuse left out. `link` is
 * a list of single link-values: Node checks each against its format, and a field holding several
 * (`<a>; rel=preload, <b>; rel=preload`) would fail the check as a whole.
 */
export function earlyHints(raw: readonly Buffer[]): Record<string, string | string[]> | undefined {
  const fields = relayedResponseHeaders(raw, INTERIM_FRAMING);
  const hints = Object.create(null) as Record<string, string | string[]>;
  const links: string[] = [];
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i] as string;
    const value = fields[i + 1] as string;
    if (name === 'content-length' || !validField(name, value)) continue;
    if (name === 'link') {
      for (const link of value.split(LINK_SEPARATOR)) if (link.trim() !== '') links.push(link.trim());
    } else {
      const had = hints[name];
      hints[name] = had === undefined ? value : `${had as string}, ${value}`;
    }
  }
  if (links.length === 0) return undefined;
  hints.link = links;
  return hints;
}

/** Between two link-values: a comma before the next `<` (one inside a URI reference would be percent-encoded). */
const LINK_SEPARATOR = /,\s*(?=<)/;

function validField(name: string, value: string): boolean {
  try {
    validateHeaderName(name);
    validateHeaderValue(name, value);
    return true;
  } catch {
    return false;
  }
}

/** Trailer fields as `res.addTrailers` takes them, without hop-by-hop or framing names. */
export function relayedTrailers(raw: readonly Buffer[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = headerName(raw[i] as Buffer);
    if (NOT_RELAYED.has(name) || NEVER_STRIP.has(name) || name === 'trailer') continue;
    out.push([name, (raw[i + 1] as Buffer).toString('latin1')]);
  }
  return out;
}
