/**
 * The `http_route` label: a bounded name for a request path, never the raw
 * path. User templates (--route) win over OpenAPI templates, which win over
 * inference; among templates the most specific match wins, segment by
 * segment from the left (literal > `{a}.{b}` pattern > `:param` > final `*`).
 * Inference replaces id-like segments with `:id` and may hand out at most
 * `maxRoutes` distinct routes; later new ones become `other`. Results are
 * memoised per path in a bounded map, so a repeated path costs one lookup.
 */
import { ConfigError } from '../errors.js';

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

const COLON_NAME = /^[\w-]+$/;
const BRACE_NAME = /^[\w.-]+$/;
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

/**
 * Validates one template and returns it in canonical (label) form: whole-segment
 * `{name}` becomes `:name`; a parameter inside a segment stays `{name}` (`:id.pdf`
 * would be ambiguous); a trailing slash is dropped.
 */
export function parseRouteTemplate(raw: string, source: string): string {
  const bad = (why: string): ConfigError =>
    new ConfigError(source, `invalid route template for ${source}: ${JSON.stringify(raw)} (${why})`);
  const path = raw.trim();
  if (!path.startsWith('/')) throw bad('expected a path starting with /');
  if (/[?#%\\\s]/.test(path)) throw bad('a query, fragment, escape, backslash or blank is not allowed');
  const body = path.length > 1 && path.endsWith('/') ? path.slice(1, -1) : path.slice(1);
  if (body === '') return '/';
  const segments = body.split('/');
  return '/' + segments.map((s, i) => canonicalSegment(s, i === segments.length - 1, bad)).join('/');
}

function canonicalSegment(segment: string, last: boolean, bad: (why: string) => ConfigError): string {
  if (segment === '') throw bad('empty path segments are not allowed');
  if (segment === '.' || segment === '..') throw bad('dot segments are not allowed');
  if (segment === '*') {
    if (!last) throw bad('* is only allowed as the last segment');
    return segment;
  }
  if (segment.includes('*')) throw bad('* must be a whole segment');
  if (segment.startsWith(':')) {
    if (!COLON_NAME.test(segment.slice(1))) {
      throw bad(`parameter ${segment}: a :name is letters, digits, _ or -; write {name} for a parameter inside a segment`);
    }
    return segment;
  }
  if (!segment.includes('{') && !segment.includes('}')) return segment;
  const pieces = segment.split(/\{([^{}]*)\}/);
  for (let i = 0; i < pieces.length; i++) {
    const piece = pieces[i] as string;
    if (i % 2 === 1 && !BRACE_NAME.test(piece)) throw bad(`parameter {${piece}}: a name is letters, digits, _, - or .`);
    if (i % 2 === 0 && /[{}]/.test(piece)) throw bad(`unbalanced braces in ${segment}`);
  }
  const whole = pieces.length === 3 && pieces[0] === '' && pieces[2] === '';
  return whole && COLON_NAME.test(pieces[1] as string) ? `:${pieces[1] as string}` : segment;
}

/** Literal text around the parameters of a `{a}.{b}` segment, matched without a regex (no backtracking). */
interface Pattern {
  readonly parts: readonly string[];
  /** Characters of literal text, then one per parameter. */
  readonly minLength: number;
  readonly literalLength: number;
  readonly node: TrieNode;
}

interface TrieNode {
  readonly literals: Map<string, TrieNode>;
  readonly patterns: Pattern[];
  param: TrieNode | undefined;
  wildcard: string | undefined;
  label: string | undefined;
}

const newNode = (): TrieNode => ({ literals: new Map(), patterns: [], param: undefined, wildcard: undefined, label: undefined });

function insert(root: TrieNode, segments: readonly string[], label: string): void {
  let node = root;
  for (const segment of segments) {
    if (segment === '*') {
      node.wildcard ??= label;
      return;
    }
    if (segment.startsWith(':') || /^\{[^{}]*\}$/.test(segment)) {
      node = node.param ??= newNode();
    } else if (segment.includes('{')) {
      const parts = segment.split(/\{[^{}]*\}/);
      const same = node.patterns.find((p) => p.parts.join('{}') === parts.join('{}'));
      if (same !== undefined) {
        node = same.node;
      } else {
        const literalLength = parts.join('').length;
        const pattern: Pattern = { parts, minLength: literalLength + parts.length - 1, literalLength, node: newNode() };
        node.patterns.push(pattern);
        node.patterns.sort((a, b) => b.literalLength - a.literalLength); // more literal text first; stable
        node = pattern.node;
      }
    } else {
      let next = node.literals.get(segment);
      if (next === undefined) node.literals.set(segment, (next = newNode()));
      node = next;
    }
  }
  node.label ??= label; // the same shape twice: the first template keeps it
}

function matchesPattern(parts: readonly string[], minLength: number, segment: string): boolean {
  const first = parts[0] as string;
  const last = parts[parts.length - 1] as string;
  if (segment.length < minLength || !segment.startsWith(first) || !segment.endsWith(last)) return false;
  const end = segment.length - last.length;
  let at = first.length;
  for (let i = 1; i < parts.length - 1; i++) {
    const piece = parts[i] as string;
    const found = segment.indexOf(piece, at + 1); // each parameter takes at least one character
    if (found === -1) return false;
    at = found + piece.length;
  }
  return end - at >= 1;
}

/** Depth-first, most specific child first, so the first hit is the most specific template. */
function match(node: TrieNode, segments: readonly string[], i: number): string | undefined {
  if (i === segments.length) return node.label;
  const segment = segments[i] as string;
  const literal = node.literals.get(segment);
  if (literal !== undefined) {
    const found = match(literal, segments, i + 1);
    if (found !== undefined) return found;
  }
  for (const p of node.patterns) {
    if (!matchesPattern(p.parts, p.minLength, segment)) continue;
    const found = match(p.node, segments, i + 1);
    if (found !== undefined) return found;
  }
  if (node.param !== undefined) {
    const found = match(node.param, segments, i + 1);
    if (found !== undefined) return found;
  }
  return node.wildcard; // `*` takes one or more segments
}

/** Non-empty segments of `rest`, or undefined when there are more than `max`. */
function splitSegments(rest: string, max: number): string[] | undefined {
  const segments: string[] = [];
  let start = 0;
  while (start < rest.length) {
    let end = rest.indexOf('/', start);
    if (end === -1) end = rest.length;
    if (end > start) {
      if (segments.length === max) return undefined;
      segments.push(rest.slice(start, end));
    }
    start = end + 1;
  }
  return segments;
}

/** A flat copy: a slice of a long request URL would otherwise keep the whole URL alive in the memo. */
const detach = (text: string): string => (text.length < 13 ? text : Buffer.from(text, 'utf8').toString('utf8'));

export function createRouteTable(options: RouteTableOptions): RouteTable {
  const { apiPrefix, maxRoutes, onOverflow } = options;
  if (!Number.isSafeInteger(maxRoutes) || maxRoutes < 0) {
    throw new ConfigError('maxRoutes', `invalid route budget: ${String(maxRoutes)} (expected a whole number, 0 or more)`);
  }
  const under = apiPrefix === '/' ? '/' : `${apiPrefix}/`;
  const base = apiPrefix === '/' ? '' : apiPrefix;
  const prefixDepth = base.split('/').length - 1;
  const maxDepth = Math.max(0, MAX_SEGMENTS - prefixDepth);

  /** Label → the one string instance handed out for it. */
  const labels = new Map<string, string>();
  const routes: Array<{ readonly route: string; readonly source: RouteSource }> = [];
  const remember = (route: string, source: RouteSource): void => {
    labels.set(route, route);
    routes.push(Object.freeze({ route, source }));
  };

  const tiers = ([
    [options.templates, '--route', 'config'],
    [options.openapiTemplates, '--openapi', 'openapi'],
  ] as const).map(([templates, option, source]) => {
    const root = newNode();
    for (const raw of templates) {
      const template = parseRouteTemplate(raw, option);
      if (template !== apiPrefix && !template.startsWith(under)) {
        throw new ConfigError(option, `route template ${JSON.stringify(raw)} for ${option} is outside the API prefix ${apiPrefix}`);
      }
      insert(root, splitSegments(template.slice(base.length), Number.MAX_SAFE_INTEGER) ?? [], template);
      if (!labels.has(template)) remember(template, source);
    }
    return root;
  });

  let inferred = 0;
  let overflowed = 0;
  let young = new Map<string, string>();
  let old = new Map<string, string>();
  const memoise = (path: string, label: string): void => {
    if (young.size >= ROUTE_MEMO_LIMIT / 2) {
      old = young;
      young = new Map();
    }
    young.set(detach(path), label);
  };

  function compute(path: string): string {
    if (path.length > MAX_PATH_LENGTH) return OTHER_ROUTE;
    let rest: string;
    if (path.startsWith(under)) rest = path.slice(base.length);
    else if (path === apiPrefix) rest = '';
    else return OTHER_ROUTE;
    const segments = splitSegments(rest, maxDepth);
    if (segments === undefined) return OTHER_ROUTE;
    for (const root of tiers) {
      const label = match(root, segments, 0);
      if (label !== undefined) return label;
    }
    let label = base;
    for (const segment of segments) label += isIdLikeSegment(segment) ? '/:id' : `/${segment}`;
    if (label === '') label = '/';
    const known = labels.get(label);
    if (known !== undefined) return known;
    if (inferred >= maxRoutes) return OVERFLOW;
    inferred++;
    const route = detach(label);
    remember(route, 'inferred');
    return route;
  }

  function overflow(): string {
    overflowed++;
    onOverflow?.();
    return OTHER_ROUTE;
  }

  return {
    resolve(path) {
      let label = young.get(path);
      if (label === undefined) {
        label = old.get(path);
        if (label === undefined) {
          label = compute(path);
          if (path.length <= MEMO_MAX_KEY_LENGTH) memoise(path, label);
        } else {
          memoise(path, label);
        }
      }
      return label === OVERFLOW ? overflow() : label;
    },
    snapshot() {
      return Object.freeze({ routes: Object.freeze(routes.slice()), maxRoutes, overflowed });
    },
    get memoSize() {
      return young.size + old.size;
    },
  };
}
