/**
 * Header rules of a transparent reverse proxy (RFC 9110 §7.6.1): hop-by-hop
 * headers stop here, and X-Forwarded-* tell the upstream who really called.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';

/** Never forwarded in either direction. `transfer-encoding` is absent on purpose: it frames the body. */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade'] as const;
const REQUEST_ONLY = ['proxy-authorization'] as const;
const RESPONSE_ONLY = ['proxy-authenticate'] as const;
/** Framing headers stay even when a peer lists them in `Connection`, or the body would be misread. */
const NEVER_STRIP = new Set(['transfer-encoding', 'content-length', 'host']);

/** Removes a header, or (for a response, whose headers http-proxy copies skipping undefined) blanks it. */
type Remove = (headers: IncomingHttpHeaders, name: string) => void;

const deleteHeader: Remove = (headers, name) => {
  // Checked first: deleting a property that is there turns the object into a slow dictionary.
  if (headers[name] !== undefined) delete headers[name];
};

const blankHeader: Remove = (headers, name) => {
  if (headers[name] !== undefined) headers[name] = undefined;
};

function stripListedInConnection(headers: IncomingHttpHeaders, remove: Remove): void {
  const connection = headers.connection;
  if (connection === undefined) return;
  const value = String(connection);
  // The usual `keep-alive` and `close` list no other header: skip the split.
  if (value.indexOf(',') === -1) {
    const name = value.trim().toLowerCase();
    if (name !== '' && !NEVER_STRIP.has(name)) remove(headers, name);
    return;
  }
  for (const token of value.split(',')) {
    const name = token.trim().toLowerCase();
    if (name !== '' && !NEVER_STRIP.has(name)) remove(headers, name);
  }
}

function stripHopByHop(headers: IncomingHttpHeaders, extra: readonly string[], remove: Remove): void {
  stripListedInConnection(headers, remove);
  for (const name of HOP_BY_HOP) remove(headers, name);
  for (const name of extra) remove(headers, name);
}

/**
 * Rewrites a client request's headers in place before it is forwarded.
 * Trust model, for a sidecar that should be invisible: the peer address is
 * appended to X-Forwarded-For; X-Forwarded-Proto and -Host are set only when
 * absent, so what an ingress in front of us set still reaches the service.
 * `Expect` is dropped because Node has already answered `100 Continue`.
 */
export function prepareRequestHeaders(req: IncomingMessage, upgrade: boolean): void {
  const headers = req.headers;
  const upgradeTo = headers.upgrade;
  stripHopByHop(headers, REQUEST_ONLY, deleteHeader);
  deleteHeader(headers, 'expect');
  if (upgrade && upgradeTo !== undefined) {
    headers.connection = 'Upgrade';
    headers.upgrade = upgradeTo;
  }
  const peer = req.socket.remoteAddress ?? '';
  const forwardedFor = headers['x-forwarded-for'];
  headers['x-forwarded-for'] = forwardedFor ? `${forwardedFor}, ${peer}` : peer;
  if (!headers['x-forwarded-proto']) headers['x-forwarded-proto'] = 'http';
  if (!headers['x-forwarded-host'] && headers.host !== undefined) headers['x-forwarded-host'] = headers.host;
}

/**
 * Removes hop-by-hop headers from an upstream response before it is relayed. They are set to
 * undefined rather than deleted: http-proxy skips undefined headers when it copies them, and the
 * object stays fast for that copy.
 */
export function prepareResponseHeaders(headers: IncomingHttpHeaders): void {
  stripHopByHop(headers, RESPONSE_ONLY, blankHeader);
}
