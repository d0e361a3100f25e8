/**
 * The small URL rules several paths share, written once: a request target's path, and how a socket
 * names the upstream host (the address it dials, the TLS server name it sends).
 */
import { isIP } from 'node:net';

/** `/api/x?a=1` → `/api/x`: a request target without its query (`/` when there is none). */
export function pathOf(target: string | undefined): string {
  const path = target ?? '/';
  const queryAt = path.indexOf('?');
  return queryAt === -1 ? path : path.slice(0, queryAt);
}

/** The host to dial: `URL.hostname` keeps an IPv6 literal's brackets (`[::1]`), which `net.connect` refuses. */
export function connectHost(url: URL): string {
  return url.hostname.replace(/^\[|\]$/g, '');
}

/** The TLS server name for `host`: none for an IP address (RFC 6066 names hosts only; Node warns, DEP0123). */
export function serverNameOf(host: string): string | undefined {
  return isIP(host) === 0 ? host : undefined;
}
