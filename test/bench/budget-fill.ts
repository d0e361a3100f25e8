/**
 * What fills the route budget in the full-budget scrape (scrape-budget.ts) and in the
 * in-process render measurement (scrape-cost.ts): a deterministic list of requests over
 * `routes` distinct routes, shaped like an API's traffic so that every series, classic and
 * native, holds what it would in production rather than one observation.
 *
 * - Routes: `/api/v1/<resource><i>/:id` (the id is a number, so route inference learns one
 *   route per resource); each route has a main method (GET 55 %, POST 20 %, PUT 10 %,
 *   DELETE 10 %, PATCH 5 %), one route in ten a second one (a PUT or DELETE beside its GET…).
 * - Statuses: 200 (201 for POST, 204 for a DELETE without body); one route in eight answers
 *   some 404s, one in twenty some 400s, one in thirty some 500s and one in fifty some 503s,
 *   so the duration histogram has about 1.2 label sets per route, like a healthy API.
 * - Durations (what the upstream waits, the proxy adds its own): log-normal per route around a
 *   median drawn log-normally over routes (≈ 8 ms, from under 1 ms to a few hundred), σ 0.7 per
 *   request, 2 % of requests 4–30 × slower, capped at 3 s. With the default 100 requests per
 *   route, a duration series populates 30–45 native buckets at schema 3.
 * - Body sizes: responses log-normal around a per-route size (≈ 1.5 KiB, 100 B to 256 KiB),
 *   σ 0.4; request bodies only for POST, PUT and PATCH (≈ 400 B); a 204 has none.
 *
 * Requests are listed round-robin over routes, so the whole budget is learned in the first
 * `routes` requests and every later one lands on a known route.
 */

export const BUDGET_ROUTES = 2_000;
/** Requests per route in the full fill (--quick: QUICK_REQUESTS_PER_ROUTE). */
export const REQUESTS_PER_ROUTE = 100;
export const QUICK_REQUESTS_PER_ROUTE = 20;
/** The largest body the upstream is asked for (its buffer: upstream.mjs). */
export const MAX_BODY_BYTES = 256 * 1024;
const MAX_DELAY_MS = 3_000;

export interface FillRequest {
  /** Path and query for the bench upstream: `?s=` status, `d=` delay ms, `b=` response bytes. */
  readonly path: string;
  /** The route metrics-proxy infers for the path. */
  readonly route: string;
  readonly method: string;
  readonly status: number;
  readonly delayMs: number;
  readonly requestBytes: number;
  readonly responseBytes: number;
}

/** mulberry32: a small seeded PRNG, so every run (and both proxies of a run) sees the same traffic. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A standard normal deviate (Box–Muller). */
function normal(next: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
}

const RESOURCES = ['orders', 'users', 'invoices', 'products', 'carts', 'payments', 'shipments', 'reviews', 'sessions', 'reports'];
const METHOD_WEIGHTS: ReadonlyArray<readonly [string, number]> = [
  ['GET', 0.55],
  ['POST', 0.2],
  ['PUT', 0.1],
  ['DELETE', 0.1],
  ['PATCH', 0.05],
];
/** Error statuses: one route in `every` answers `status` to `share` of its requests. */
const ERRORS: ReadonlyArray<{ readonly status: number; readonly every: number; readonly share: number }> = [
  { status: 404, every: 8, share: 0.06 },
  { status: 400, every: 20, share: 0.05 },
  { status: 500, every: 30, share: 0.03 },
  { status: 503, every: 50, share: 0.03 },
];

interface RouteShape {
  readonly route: string;
  readonly base: string;
  readonly methods: readonly string[];
  readonly medianMs: number;
  readonly responseBytes: number;
  readonly errors: ReadonlyArray<{ readonly status: number; readonly share: number }>;
}

function pickMethod(next: () => number): string {
  let u = next();
  for (const [method, weight] of METHOD_WEIGHTS) {
    u -= weight;
    if (u < 0) return method;
  }
  return 'GET';
}

function routeShape(i: number, next: () => number): RouteShape {
  const base = `/api/v1/${RESOURCES[i % RESOURCES.length] as string}${Math.floor(i / RESOURCES.length)}`;
  const main = pickMethod(next);
  const methods = i % 10 === 3 ? [main, main === 'GET' ? 'PUT' : 'GET'] : [main];
  return {
    base,
    route: `${base}/:id`,
    methods,
    medianMs: Math.min(400, 8 * Math.exp(1.0 * normal(next))),
    responseBytes: Math.min(MAX_BODY_BYTES, Math.round(1536 * Math.exp(1.2 * normal(next)))),
    errors: ERRORS.filter((e) => i % e.every === e.every - 1),
  };
}

function okStatus(method: string, noBody: boolean): number {
  if (method === 'POST') return 201;
  return method === 'DELETE' && noBody ? 204 : 200;
}

function request(shape: RouteShape, i: number, next: () => number): FillRequest {
  const method = shape.methods.length > 1 && next() < 0.3 ? (shape.methods[1] as string) : (shape.methods[0] as string);
  let status = okStatus(method, i % 4 === 0);
  let u = next();
  for (const error of shape.errors) {
    u -= error.share;
    if (u < 0) {
      status = error.status;
      break;
    }
  }
  const slow = next() < 0.02 ? 4 + 26 * next() : 1;
  const delayMs = Math.min(MAX_DELAY_MS, shape.medianMs * Math.exp(0.7 * normal(next)) * slow);
  const responseBytes = status === 204 ? 0 : Math.min(MAX_BODY_BYTES, Math.round(shape.responseBytes * Math.exp(0.4 * normal(next))));
  const requestBytes = method === 'POST' || method === 'PUT' || method === 'PATCH' ? Math.min(MAX_BODY_BYTES, Math.round(400 * Math.exp(0.8 * normal(next)))) : 0;
  const id = 1 + Math.floor(next() * 100_000);
  return {
    path: `${shape.base}/${id}?s=${status}&d=${delayMs.toFixed(1)}&b=${responseBytes}`,
    route: shape.route,
    method,
    status,
    delayMs,
    requestBytes,
    responseBytes,
  };
}

/** The fill: `perRoute` requests on each of `routes` routes, round-robin over the routes. */
export function budgetFill(routes: number, perRoute: number, seed = 16): FillRequest[] {
  const next = random(seed);
  const shapes = Array.from({ length: routes }, (_, i) => routeShape(i, next));
  const requests: FillRequest[] = [];
  for (let k = 0; k < perRoute; k++) for (const shape of shapes) requests.push(request(shape, k, next));
  return requests;
}
