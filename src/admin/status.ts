/**
 * The live status page's data: `GET /status.json`. Computed on demand from the
 * instance's own registry, so the request path pays nothing; only cumulative
 * values (counts, error counts, histogram buckets, gauges), so the server keeps
 * no state: the page takes rates and quantiles from the difference between two
 * polls, as Prometheus' rate() and histogram_quantile() do over a window.
 *
 * The shape (version 1) is documented in README.md, "Live status page":
 *
 *   version        1
 *   instance       random id of this proxy instance; a new one means a restart (or another worker)
 *   time           when this was collected, ms since the epoch (the page's clock for rates)
 *   uptimeSeconds  since the proxy was built
 *   source         'standard' | 'seed' | 'none': the metric family the figures come from
 *   health         { ready, draining, upstream: { url, reachable, msg } }; ready is what /readyz answers
 *   requests       { total, errors, inFlight }: forwarded requests; inFlight is null without the standard family
 *   websockets     open WebSocket sessions
 *   latency        { bounds, counts, sum } in seconds: bucket upper bounds, cumulative counts per bound
 *                  with one more for +Inf (= total), sum of durations; null when metrics are off
 *   upstreamFailures { connect_refused: n, … } requests the proxy answered itself; null without standard
 *   routes         [{ route, requests, errors, statuses: { "200": n }, counts, websockets }] sorted by route,
 *                  counts on latency.bounds as above; null without the standard family
 *
 * Errors are what the metrics call errors: an upstream 5xx or a failure to reach or read it (a non-empty
 * `error_type`; `apiErrorCount` in the seed family). A client that went away (499) is not an error.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Health } from './health.js';
import { errorBody, sendJson } from '../respond.js';
import { createStatusPageHandler } from './status-page.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export const STATUS_PAGE_PATH = '/status';
export const STATUS_DATA_PATH = '/status.json';

export interface Latency {
  readonly bounds: readonly number[];
  readonly counts: readonly number[];
  readonly sum: number;
}

export interface RouteStatus {
  readonly route: string;
  readonly requests: number;
  readonly errors: number;
  readonly statuses: Readonly<Record<string, number>>;
  readonly counts: readonly number[];
  readonly websockets: number;
}

export interface StatusSnapshot {
  readonly version: 1;
  readonly instance: string;
  readonly time: number;
  readonly uptimeSeconds: number;
  readonly source: 'standard' | 'seed' | 'none';
  readonly health: {
    readonly ready: boolean;
    readonly draining: boolean;
    readonly upstream: { readonly url: string; readonly reachable: boolean; readonly msg: string | null };
  };
  readonly requests: { readonly total: number | null; readonly errors: number | null; readonly inFlight: number | null };
  readonly websockets: number;
  readonly latency: Latency | null;
  readonly upstreamFailures: Readonly<Record<string, number>> | null;
  readonly routes: readonly RouteStatus[] | null;
}

export interface StatusOptions {
  readonly registry: Registry;
  readonly health: Pick<Health, 'checkUpstream' | 'draining'>;
  readonly openWebSockets: () => number;
  readonly upstream: URL;
  readonly log: Logger;
}

/** One sample of prom-client's `metric.get()`. */
interface Sample {
  readonly value: number;
  readonly labels: Readonly<Record<string, string | number | undefined>>;
  readonly metricName?: string;
}

async function samples(registry: Registry, name: string): Promise<Sample[] | undefined> {
  const metric = registry.getSingleMetric(name);
  return metric === undefined ? undefined : ((await metric.get()).values as Sample[]);
}

function sum(values: readonly Sample[]): number {
  return values.reduce((total, s) => total + s.value, 0);
}

/** Histogram samples → bucket bounds (ascending) and, per key, cumulative counts on them plus +Inf. */
function buckets(values: readonly Sample[], scale: number, keyOf: (s: Sample) => string) {
  const found = new Set<number>();
  for (const s of values) if (s.metricName?.endsWith('_bucket') && typeof s.labels.le === 'number') found.add(s.labels.le);
  const raw = [...found].sort((a, b) => a - b);
  const index = new Map(raw.map((le, i) => [le, i]));
  const perKey = new Map<string, number[]>();
  let total = 0;
  for (const s of values) {
    if (s.metricName?.endsWith('_sum')) total += s.value;
    if (!s.metricName?.endsWith('_bucket')) continue;
    const key = keyOf(s);
    let counts = perKey.get(key);
    if (counts === undefined) perKey.set(key, (counts = new Array<number>(raw.length + 1).fill(0)));
    const at = s.labels.le === '+Inf' ? raw.length : index.get(s.labels.le as number);
    if (at !== undefined) counts[at] = (counts[at] as number) + s.value;
  }
  const all = new Array<number>(raw.length + 1).fill(0);
  for (const counts of perKey.values()) counts.forEach((c, i) => (all[i] = (all[i] as number) + c));
  return { latency: { bounds: raw.map((b) => b * scale), counts: all, sum: total * scale }, perKey };
}

export function createStatusCollector(options: StatusOptions): () => Promise<StatusSnapshot> {
  const { registry } = options;
  const instance = randomUUID();
  const startedAt = Date.now();
  const url = options.upstream.href;

  async function fromStandard(duration: Sample[]) {
    const { latency, perKey } = buckets(duration, 1, (s) => String(s.labels.http_route));
    const routes = new Map<string, { requests: number; errors: number; statuses: Record<string, number>; websockets: number }>();
    const routeOf = (name: string) => {
      let route = routes.get(name);
      if (route === undefined) routes.set(name, (route = { requests: 0, errors: 0, statuses: {}, websockets: 0 }));
      return route;
    };
    for (const s of duration) {
      if (!s.metricName?.endsWith('_count')) continue;
      const route = routeOf(String(s.labels.http_route));
      const status = String(s.labels.http_response_status_code);
      route.requests += s.value;
      route.statuses[status] = (route.statuses[status] ?? 0) + s.value;
      if (s.labels.error_type !== '' && s.labels.error_type !== undefined) route.errors += s.value;
    }
    for (const s of (await samples(registry, 'metrics_proxy_websocket_sessions_active')) ?? []) {
      routeOf(String(s.labels.http_route)).websockets += s.value;
    }
    const upstreamFailures: Record<string, number> = {};
    for (const s of (await samples(registry, 'metrics_proxy_upstream_errors_total')) ?? []) {
      upstreamFailures[String(s.labels.error_type)] = s.value;
    }
    const inFlight = await samples(registry, 'http_server_active_requests');
    const empty = new Array<number>(latency.bounds.length + 1).fill(0);
    const routeList: RouteStatus[] = [...routes]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([route, r]) => ({ route, ...r, counts: perKey.get(route) ?? empty }));
    return {
      source: 'standard' as const,
      requests: {
        total: routeList.reduce((n, r) => n + r.requests, 0),
        errors: routeList.reduce((n, r) => n + r.errors, 0),
        inFlight: inFlight === undefined ? null : sum(inFlight),
      },
      latency,
      upstreamFailures,
      routes: routeList,
    };
  }

  async function fromSeed() {
    const count = await samples(registry, 'apiCount');
    const duration = await samples(registry, 'apiDuration');
    if (count === undefined || duration === undefined) return undefined;
    return {
      source: 'seed' as const,
      requests: { total: sum(count), errors: sum((await samples(registry, 'apiErrorCount')) ?? []), inFlight: null },
      // apiDuration is in milliseconds; the page gets seconds whatever the source.
      latency: buckets(duration, 1 / 1000, () => '').latency,
      upstreamFailures: null,
      routes: null,
    };
  }

  const none = {
    source: 'none' as const,
    requests: { total: null, errors: null, inFlight: null },
    latency: null,
    upstreamFailures: null,
    routes: null,
  };

  return async function collect(): Promise<StatusSnapshot> {
    const checked = options.health.checkUpstream();
    const duration = await samples(registry, 'http_server_request_duration_seconds');
    const figures = duration !== undefined ? await fromStandard(duration) : ((await fromSeed()) ?? none);
    const upstream = await checked;
    const draining = options.health.draining;
    const time = Date.now();
    return {
      version: 1,
      instance,
      time,
      uptimeSeconds: (time - startedAt) / 1000,
      source: figures.source,
      health: {
        ready: upstream.ok && !draining,
        draining,
        upstream: { url, reachable: upstream.ok, msg: upstream.ok ? null : upstream.msg },
      },
      requests: figures.requests,
      websockets: options.openWebSockets(),
      latency: figures.latency,
      upstreamFailures: figures.upstreamFailures,
      routes: figures.routes,
    };
  };
}

const ALLOW = { allow: 'GET, HEAD' };
const NO_STORE = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' };

export function createStatusDataEndpoint(options: StatusOptions): Handler {
  const collect = createStatusCollector(options);
  return (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendJson(res, 405, errorBody('method not allowed'), ALLOW);
      return;
    }
    collect().then(
      (snapshot) => sendJson(res, 200, snapshot, NO_STORE),
      (err: unknown) => {
        options.log.error({ err }, 'collecting status failed');
        sendJson(res, 500, errorBody('collecting status failed'));
      },
    );
  };
}

export interface StatusRouteOptions extends StatusOptions {
  readonly apiPrefix: string;
  readonly metricsPath: string;
  /** True on the separate admin listener (--metrics-port), which forwards nothing. */
  readonly adminListener: boolean;
  /** Wraps the data endpoint in the metrics token check, when there is one. */
  readonly protect: (handler: Handler) => Handler;
}

function underPrefix(apiPrefix: string, path: string): boolean {
  return apiPrefix === '/' || path === apiPrefix || path.startsWith(`${apiPrefix}/`);
}

/**
 * Where the page and its data live. On the admin listener: `/` and `/status`, data `/status.json`. On the
 * main listener: `/status` and `/status.json`, unless the API prefix covers them (`--api-prefix /`): the
 * service's own `/status` then keeps being forwarded, and the page moves next to the metrics path
 * (`/metrics/status`, `/metrics/status.json`), as `/metrics/routes` does. The page fetches `status.json`
 * relative to itself, so every placement works.
 */
export function statusPaths(apiPrefix: string, metricsPath: string, adminListener: boolean): { pages: string[]; data: string } {
  if (adminListener) return { pages: ['/', STATUS_PAGE_PATH], data: STATUS_DATA_PATH };
  if (!underPrefix(apiPrefix, STATUS_PAGE_PATH) && !underPrefix(apiPrefix, STATUS_DATA_PATH)) {
    return { pages: [STATUS_PAGE_PATH], data: STATUS_DATA_PATH };
  }
  const base = metricsPath === '/' ? '' : metricsPath;
  return { pages: [`${base}${STATUS_PAGE_PATH}`], data: `${base}${STATUS_DATA_PATH}` };
}

/** The status routes to add to the listener's own paths (a path already taken, such as the metrics path, wins). */
export function createStatusRoutes(options: StatusRouteOptions): Array<[string, Handler]> {
  const { pages, data } = statusPaths(options.apiPrefix, options.metricsPath, options.adminListener);
  const page = createStatusPageHandler(options.log);
  return [...pages.map((path): [string, Handler] => [path, page]), [data, options.protect(createStatusDataEndpoint(options))]];
}
