/**
 * Route templates (--route, --openapi): parsed into their canonical label
 * form, and matched against a request path's segments in a trie, most
 * specific first, segment by segment from the left: literal > `{a}.{b}`
 * pattern > `:param` > final `*`.
 */
import { RouteTemplateError } from '../errors.js';

const COLON_NAME = /^[\w-]+$/;
const BRACE_NAME = /^[\w.-]+$/;

/**
 * Validates one template and returns it in canonical (label) form: whole-segment
 * `{name}` becomes `:name`; a parameter inside a segment stays `{name}` (`:id.pdf`
 * would be ambiguous); a trailing slash is dropped.
 */
export function parseRouteTemplate(raw: string, source: string): string {
  const bad = (why: string): RouteTemplateError => new RouteTemplateError(source, raw, why);
  const path = raw.trim();
  if (!path.startsWith('/')) throw bad('expected a path starting with /');
  if (/[?#%\\\s]/.test(path)) throw bad('a query, fragment, escape, backslash or blank is not allowed');
  const body = path.length > 1 && path.endsWith('/') ? path.slice(1, -1) : path.slice(1);
  if (body === '') return '/';
  const segments = body.split('/');
  return '/' + segments.map((s, i) => canonicalSegment(s, i === segments.length - 1, bad)).join('/');
}

function canonicalSegment(segment: string, last: boolean, bad: (why: string) => RouteTemplateError): string {
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

export interface TrieNode {
  readonly literals: Map<string, TrieNode>;
  readonly patterns: Pattern[];
  param: TrieNode | undefined;
  wildcard: string | undefined;
  label: string | undefined;
}

export const newNode = (): TrieNode => ({ literals: new Map(), patterns: [], param: undefined, wildcard: undefined, label: undefined });

export function insertTemplate(root: TrieNode, segments: readonly string[], label: string): void {
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
export function matchTemplate(node: TrieNode, segments: readonly string[], i: number): string | undefined {
  if (i === segments.length) return node.label;
  const segment = segments[i] as string;
  const literal = node.literals.get(segment);
  if (literal !== undefined) {
    const found = matchTemplate(literal, segments, i + 1);
    if (found !== undefined) return found;
  }
  for (const p of node.patterns) {
    if (!matchesPattern(p.parts, p.minLength, segment)) continue;
    const found = matchTemplate(p.node, segments, i + 1);
    if (found !== undefined) return found;
  }
  if (node.param !== undefined) {
    const found = matchTemplate(node.param, segments, i + 1);
    if (found !== undefined) return found;
  }
  return node.wildcard; // `*` takes one or more segments
}

/** Non-empty segments of `rest`, or undefined when there are more than `max`. */
export function splitSegments(rest: string, max: number): string[] | undefined {
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
