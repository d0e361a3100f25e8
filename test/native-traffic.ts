/**
 * Traffic whose latencies are known within bounds, for test/prometheus-native.test.ts: an upstream that
 * answers each path after a fixed delay, rounds of requests through the proxy, and where the quantiles
 * of the proxy's observations (and the native or classic bucket holding them) must lie.
 *
 * The true quantiles are not known to the microsecond, but they are bounded: the proxy's duration of a
 * request (and of its upstream leg) is at least the upstream's delay, and at most what the client measured
 * around it (plus SLACK_MS for the proxy's clock stopping a moment after the client saw the end). Order
 * statistics are monotonic, so the k-th smallest observation lies between the k-th smallest lower bound
 * and the k-th smallest upper bound.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { expect } from 'vitest';
import { httpRequest } from './helpers.js';

/** --native-histogram-bucket-factor 1.1 */
export const SCHEMA = 3;
const SLACK_MS = 5;
/** Upstream delay per path: a quarter fast, half at the median (a quarter of those fail), a quarter slow, so the median sits inside one group. */
const DELAY_MS: Readonly<Record<string, number>> = { '/api/fast': 20, '/api/median': 84, '/api/fail': 84, '/api/slow': 300 };
/** The upstream answers 500 here: the errors of the error-ratio rules and the SLO. */
export const FAILING = '/api/fail';
/** The upstream closes the connection after answering here, so the proxy keeps opening new ones: the connect-time rules get observations. */
export const CLOSING = '/api/slow';
/** One round; 84 ms is just above a schema-3 bound in ms (82.99) and in s (0.08105), inside the classic (50, 100] and (0.075, 0.1]. */
export const ROUND: readonly string[] = [
  ...Array<string>(8).fill('/api/fast'),
  ...Array<string>(12).fill('/api/median'),
  ...Array<string>(4).fill(FAILING),
  ...Array<string>(8).fill('/api/slow'),
];
/**
 * One request per path, answered at once (`?warm`: same route, no delay): it creates every series, so that
 * their first sample comes before the measured round and rate() sees all of it. Quick, so that a scrape
 * seldom falls inside it (one that did would add a request or two to what rate() sees).
 */
export const WARM_UP: readonly string[] = [...new Set(ROUND)].map((path) => `${path}?warm`);

/** One request's duration as the proxy saw it, bounded: [upstream delay, client-measured time + slack], in ms. */
export interface Bounds {
  readonly path: string;
  readonly lo: number;
  readonly hi: number;
}

/** The upstream: answers each path of DELAY_MS after its delay (none with `?warm`), 500 on FAILING, closing the connection on CLOSING. */
export function delayed(req: IncomingMessage, res: ServerResponse): void {
  req.resume();
  const url = new URL(req.url ?? '/', 'http://upstream');
  const ms = url.search === '?warm' ? 0 : (DELAY_MS[url.pathname] ?? 0);
  const start = performance.now();
  // A timer may fire a little early; the delay is a lower bound only if it is waited out in full.
  const answer = (): void => {
    const left = ms - (performance.now() - start);
    if (left > 0) {
      setTimeout(answer, Math.ceil(left));
      return;
    }
    if (url.pathname === FAILING) res.statusCode = 500;
    if (url.pathname === CLOSING) res.setHeader('connection', 'close');
    res.end('ok');
  };
  setTimeout(answer, ms);
}

/** Sends `paths` through the proxy, 8 at a time (each batch of ROUND mixes the groups), and bounds each duration. */
export async function sendRound(proxyUrl: string, paths: readonly string[] = ROUND): Promise<Bounds[]> {
  const bounds: Bounds[] = [];
  const order = paths.map((path, i) => ({ path, i })).sort((a, b) => (a.i % 4) - (b.i % 4) || a.i - b.i);
  for (let at = 0; at < order.length; at += 8) {
    await Promise.all(
      order.slice(at, at + 8).map(async ({ path }) => {
        const start = performance.now();
        const { status } = await httpRequest(`${proxyUrl}${path}`);
        const elapsed = performance.now() - start;
        const pathname = path.split('?')[0] ?? path;
        if (status !== (pathname === FAILING ? 500 : 200)) throw new Error(`${path}: ${status}`);
        bounds.push({ path, lo: path === pathname ? (DELAY_MS[path] ?? 0) : 0, hi: elapsed + SLACK_MS });
      }),
    );
  }
  return bounds;
}

/** Where the k-th smallest observation lies, k = ceil(q·n), the one histogram_quantile's rank q·n falls on (for the median, up to the next one). */
export function quantileBounds(bounds: readonly Bounds[], q: number, scale = 1): [lo: number, hi: number] {
  const los = bounds.map((b) => b.lo).sort((a, b) => a - b);
  const his = bounds.map((b) => b.hi).sort((a, b) => a - b);
  const n = bounds.length;
  const k = Math.ceil(q * n);
  return [(los[k - 1] ?? NaN) * scale, (his[Math.min(k, n - 1)] ?? NaN) * scale];
}

/** Where the true median lies: between the median of the lower bounds and that of the upper bounds (both middle elements). */
export function medianBounds(bounds: readonly Bounds[], scale = 1): [lo: number, hi: number] {
  return quantileBounds(bounds, 0.5, scale);
}

/** From the lower bound of the native bucket holding `lo` to the upper bound of the one holding `hi`: bucket k is (2^((k-1)/8), 2^(k/8)]. */
export function nativeRange([lo, hi]: [number, number]): [number, number] {
  const perOctave = 2 ** SCHEMA;
  const key = (v: number): number => Math.ceil(perOctave * Math.log2(v));
  return [2 ** ((key(lo) - 1) / perOctave), 2 ** (key(hi) / perOctave)];
}

/** The same with classic bucket bounds (le). */
export function classicRange([lo, hi]: [number, number], les: readonly number[]): [number, number] {
  return [Math.max(0, ...les.filter((le) => le < lo)), Math.min(Infinity, ...les.filter((le) => le >= hi))];
}

/** Checks that `value` lies in [lower, upper], and logs both: CI's log then shows how close PromQL came. */
export function expectWithin(value: number | undefined, [lower, upper]: [number, number], what: string): void {
  const text = `${what}: ${value} in [${lower}, ${upper}]`;
  console.info(text);
  expect(value, text).toBeGreaterThanOrEqual(lower);
  expect(value, text).toBeLessThanOrEqual(upper);
}
