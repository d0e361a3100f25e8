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

function stripListedInConnection(headers: IncomingHttpHeaders): void {
  const connection = headers.connection;
  if (connection === undefined) return;
  for (const token of String(connection).split(',')) {
    const name = token.trim().toLowerCase();
    if (name !== '' && !NEVER_STRIP.has(name)) delete headers[name];
  }
}

function stripHopByHop(headers: IncomingHttpHeaders, extra: readonly string[]): void {
  stripListedInConnection(headers);
  for (const name of HOP_BY_HOP) delete headers[name];
  for (const name of extra) delete headers[name];
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
  stripHopByHop(headers, REQUEST_ONLY);
  delete headers.expect;
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

/** Removes hop-by-hop headers from an upstream response before it is relayed. */
export function prepareResponseHeaders(headers: IncomingHttpHeaders): void {
  stripHopByHop(headers, RESPONSE_ONLY);
}
