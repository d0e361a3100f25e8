/**
 * The `http_route` label: a bounded name for a request path, never the raw
 * path. User templates (--route) win over OpenAPI templates, which win over
 * inference; among templates the most specific match wins, segment by
 * segment from the left (literal > `{a}.{b}` pattern > `:param` > final `*`;
 * route-templates.ts parses and matches them). Inference replaces id-like segments with `:id` and may hand out at most
 * `maxRoutes` distinct routes; later new ones become `other`. Results are
 * memoised per path in a bounded map, so a repeated path costs one lookup.
 */
import { prefixMatcher } from './api-prefix.js';
import { InvalidValueError, RouteOutsidePrefixError } from '../errors.js';
import { type TrieNode, insertTemplate, matchTemplate, newNode, parseRouteTemplate, splitSegments } from './route-templates.js';

export { parseRouteTemplate } from './route-templates.js';

export type RouteSource = 'config' | 'openapi' | 'inferred';
export const OTHER_ROUTE = 'other';
/**
 * Paths memoised at most, in two generations of half as many: when the young
 * one is full it replaces the old one, and a hit in the old one moves to the
 * young one, so hot paths stay. (Evicting one oldest entry per insert looks
 * cheaper but is not: V8 walks a Map's deleted slots on every `keys().next()`.)
 */
export const ROUTE_MEMO_LIMIT = 10_000;

export interface RouteTableOptions {
  /** A validated prefix: `/api`, or `/`. Paths outside it resolve to `other`. */
  readonly apiPrefix: string;
  /** From --route: full paths including the prefix, `:name` or `{name}` parameters, an optional final `*`. */
  readonly templates: readonly string[];
  /** From --openapi, already joined to the prefix (see openapi.ts). */
  readonly openapiTemplates: readonly string[];
  /** How many distinct INFERRED routes may be handed out; templates do not count. */
  readonly maxRoutes: number;
  /** Called on every request whose new inferred route did not fit the budget. */
  readonly onOverflow?: () => void;
}

export interface RouteTable {
  /** The bounded http_route label for a request path (path only, no query; it may be percent-encoded). */
  resolve(path: string): string;
  /** Every configured template (always, matched or not), then every inferred route in the order first seen. */
  snapshot(): {
    readonly routes: ReadonlyArray<{ readonly route: string; readonly source: RouteSource }>;
    readonly maxRoutes: number;
    readonly overflowed: number;
  };
  /** Paths currently memoised (≤ ROUTE_MEMO_LIMIT). */
  readonly memoSize: number;
}

const MAX_PATH_LENGTH = 1024;
const MAX_SEGMENTS = 32;
/** Longer paths are resolved every time: they are rare, and memory stays small. */
const MEMO_MAX_KEY_LENGTH = 256;
const OVERFLOW = '\0overflow';

/** RFC 3986 pchar without `%`: anything else (an escape, a raw byte ≥ 0x80, a quote…) is not a route name. */
const PLAIN_SEGMENT = /^[\w\-.~!$&'()*+,;=:@]*$/;
/** Digits with separators and no letters: integers, dates, times, decimals, versions. */
const NUMERIC = /^[-+_.,:~]*\d[-+_.,:~\d]*$/;
const UUID = /^[\da-f]{8}-[\da-f]{4}-[\da-f]{4}-[\da-f]{4}-[\da-f]{12}$/i;
const LONG_HEX = /^[\da-f]{16,}$/i;
const DIGIT = /\d/;
const LETTER = /[a-z]/i;

function isIdLikeSegment(segment: string): boolean {
  if (segment.length > 64 || !PLAIN_SEGMENT.test(segment) || NUMERIC.test(segment)) return true;
  if (segment.length >= 16 && (LONG_HEX.test(segment) || UUID.test(segment))) return true;
  return segment.length >= 20 && DIGIT.test(segment) && LETTER.test(segment);
}

/** A flat copy: a slice of a long request URL would otherwise keep the whole URL alive in the memo. */
const detach = (text: string): string => (text.length < 13 ? text : Buffer.from(text, 'utf8').toString('utf8'));

/** Paths memoised in two generations (see ROUTE_MEMO_LIMIT); one per route table. */
class RouteMemo {
  private young = new Map<string, string>();
  private old = new Map<string, string>();

  get size(): number {
    return this.young.size + this.old.size;
  }

  /** The label memoised for `path`; a hit in the old generation moves to the young one. */
  get(path: string): string | undefined {
    const label = this.young.get(path);
    if (label !== undefined) return label;
    const kept = this.old.get(path);
    if (kept !== undefined) this.set(path, kept);
    return kept;
  }

  set(path: string, label: string): void {
    if (this.young.size >= ROUTE_MEMO_LIMIT / 2) {
      this.old = this.young;
      this.young = new Map();
    }
    this.young.set(detach(path), label);
  }
}

type Remember = (route: string, source: RouteSource) => void;

/** The --route templates, then the --openapi ones, each tier a trie; the first tier that matches names the route. */
function buildTiers(options: RouteTableOptions, base: string, known: (label: string) => boolean, remember: Remember): TrieNode[] {
  const { apiPrefix } = options;
  const inPrefix = prefixMatcher(apiPrefix);
  const tiers = [
    [options.templates, '--route', 'config'],
    [options.openapiTemplates, '--openapi', 'openapi'],
  ] as const;
  return tiers.map(([templates, option, source]) => {
    const root = newNode();
    for (const raw of templates) {
      const template = parseRouteTemplate(raw, option);
      if (!inPrefix(template)) {
        throw new RouteOutsidePrefixError(option, raw, apiPrefix);
      }
      insertTemplate(root, splitSegments(template.slice(base.length), Number.MAX_SAFE_INTEGER) ?? [], template);
      if (!known(template)) remember(template, source);
    }
    return root;
  });
}

/** The segments of `path` below the prefix (`under` is `/api/`, or `/`), or undefined outside it or deeper than `maxDepth`. */
function segmentsUnder(path: string, apiPrefix: string, under: string, maxDepth: number): string[] | undefined {
  if (path.startsWith(under)) return splitSegments(path.slice(under.length - 1), maxDepth);
  return path === apiPrefix ? [] : undefined;
}

/** The inferred label: the prefix, then each segment as it is, or `:id` when it looks like one. */
function inferLabel(base: string, segments: readonly string[]): string {
  let label = base;
  for (const segment of segments) label += isIdLikeSegment(segment) ? '/:id' : `/${segment}`;
  return label === '' ? '/' : label;
}

export function createRouteTable(options: RouteTableOptions): RouteTable {
  const { apiPrefix, maxRoutes, onOverflow } = options;
  if (!Number.isSafeInteger(maxRoutes) || maxRoutes < 0) {
    throw new InvalidValueError('maxRoutes', maxRoutes, 'expected a whole number, 0 or more');
  }
  const under = apiPrefix === '/' ? '/' : `${apiPrefix}/`;
  const base = apiPrefix === '/' ? '' : apiPrefix;
  const maxDepth = Math.max(0, MAX_SEGMENTS - (base.split('/').length - 1));

  /** Label → the one string instance handed out for it. */
  const labels = new Map<string, string>();
  const routes: Array<{ readonly route: string; readonly source: RouteSource }> = [];
  const remember: Remember = (route, source) => {
    labels.set(route, route);
    routes.push(Object.freeze({ route, source }));
  };
  const tiers = buildTiers(options, base, (label) => labels.has(label), remember);
  const memo = new RouteMemo();
  let inferred = 0;
  let overflowed = 0;

  function compute(path: string): string {
    const segments = path.length > MAX_PATH_LENGTH ? undefined : segmentsUnder(path, apiPrefix, under, maxDepth);
    if (segments === undefined) return OTHER_ROUTE;
    for (const root of tiers) {
      const label = matchTemplate(root, segments, 0);
      if (label !== undefined) return label;
    }
    const label = inferLabel(base, segments);
    const known = labels.get(label);
    if (known !== undefined) return known;
    if (inferred >= maxRoutes) return OVERFLOW;
    inferred++;
    const route = detach(label);
    remember(route, 'inferred');
    return route;
  }

  return {
    resolve(path) {
      let label = memo.get(path);
      if (label === undefined) {
        label = compute(path);
        if (path.length <= MEMO_MAX_KEY_LENGTH) memo.set(path, label);
      }
      if (label !== OVERFLOW) return label;
      overflowed++;
      onOverflow?.();
      return OTHER_ROUTE;
    },
    snapshot() {
      return Object.freeze({ routes: Object.freeze(routes.slice()), maxRoutes, overflowed });
    },
    get memoSize() {
      return memo.size;
    },
  };
}
