/**
 * Decides what a request target is for: the proxy's own endpoints, forwarding,
 * or neither. Dot segments (`..`, `%2e%2e`) are resolved before the prefix is
 * matched, and a path that would leave the prefix once an upstream decodes
 * `%2f`/`%5c` as slashes is rejected, so no request can reach an upstream path
 * outside the prefix. Ordinary paths take a fast path with no URL parsing.
 */
import { prefixMatcher } from '../metrics/api-prefix.js';
import { pathOf } from '../proxy/url-parts.js';

export type PathDecision =
  | { readonly kind: 'own'; readonly path: string }
  | { readonly kind: 'forward'; readonly url: string }
  | { readonly kind: 'not_found' }
  | { readonly kind: 'bad_request'; readonly msg: string };

export type PathClassifier = (rawUrl: string) => PathDecision;

const NOT_FOUND: PathDecision = Object.freeze({ kind: 'not_found' });
const BAD_TARGET: PathDecision = Object.freeze({ kind: 'bad_request', msg: 'invalid request target' });
const ESCAPES: PathDecision = Object.freeze({ kind: 'bad_request', msg: 'request path escapes the API prefix' });

const DUMMY_BASE = 'http://metrics-proxy.invalid';
/** Anything that could be, or decode to, a dot segment or a path separator. */
const SUSPICIOUS = /\/\.|\\|#|%(?:2e|2f|5c)/i;

/**
 * `ownPaths` are answered by the proxy itself (metrics, health) and are never
 * forwarded, even when they fall under the prefix.
 */
export function createPathClassifier(apiPrefix: string, ownPaths: Iterable<string>): PathClassifier {
  const own = new Map<string, PathDecision>();
  for (const path of ownPaths) own.set(path, Object.freeze({ kind: 'own', path }));
  const inPrefix = prefixMatcher(apiPrefix);

  return function classify(rawUrl: string): PathDecision {
    let target = rawUrl;
    if (!target.startsWith('/')) {
      // absolute-form (`GET http://host/api/x`), as some clients send to proxies
      const absolute = toOriginForm(target);
      if (absolute === undefined) return BAD_TARGET;
      target = absolute;
    }
    const rawPath = pathOf(target);
    const query = target.slice(rawPath.length);

    let path = rawPath;
    if (SUSPICIOUS.test(rawPath)) {
      const resolved = resolveDotSegments(rawPath);
      if (resolved === undefined) return BAD_TARGET;
      const decoded = resolveDotSegments(resolved.replace(/%2f|%5c/gi, '/').replace(/%2e/gi, '.'));
      if (decoded === undefined) return BAD_TARGET;
      const ownResolved = own.get(resolved);
      if (ownResolved !== undefined) return ownResolved;
      if (!inPrefix(resolved) || !inPrefix(decoded)) {
        return inPrefix(rawPath) || inPrefix(resolved) ? ESCAPES : NOT_FOUND;
      }
      path = resolved;
    }

    const ownPath = own.get(path);
    if (ownPath !== undefined) return ownPath;
    if (!inPrefix(path)) return NOT_FOUND;
    return { kind: 'forward', url: path === rawPath ? target : path + query };
  };
}

function resolveDotSegments(path: string): string | undefined {
  try {
    // Concatenated, not resolved against the base: a path `//host/x` must stay a path.
    // `#` would start a fragment: keep it in the path, escaped, as an origin server sees it.
    return new URL(DUMMY_BASE + path.replace(/#/g, '%23')).pathname;
  } catch {
    return undefined;
  }
}

function toOriginForm(target: string): string | undefined {
  if (!/^https?:\/\//i.test(target)) return undefined;
  try {
    const url = new URL(target);
    return url.pathname + url.search;
  } catch {
    return undefined;
  }
}
