/**
 * Collecting the status data from the instance's own registry, on demand, so the request path pays
 * nothing: the standard family's figures when it is on, else the seed family's, else none.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Health } from './health.js';
import { type Sample, buckets, samples, sum } from './registry-samples.js';
import type { RouteStatus, StatusFigures, StatusSnapshot } from './status-snapshot.js';

export interface StatusOptions {
  readonly registry: Registry;
  readonly health: Pick<Health, 'checkUpstream' | 'draining'>;
  readonly openWebSockets: () => number;
  readonly upstream: URL;
  readonly log: Logger;
}

type RouteTally = { requests: number; errors: number; statuses: Record<string, number>; websockets: number };

/** Requests, errors and statuses per route from the duration histogram's `_count` samples, WebSockets from the gauge. */
function tallyRoutes(duration: readonly Sample[], websockets: readonly Sample[]): Map<string, RouteTally> {
  const routes = new Map<string, RouteTally>();
  const routeOf = (name: string): RouteTally => {
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
  for (const s of websockets) routeOf(String(s.labels.http_route)).websockets += s.value;
  return routes;
}

async function standardFigures(registry: Registry, duration: readonly Sample[]): Promise<StatusFigures> {
  const { latency, perKey } = buckets(duration, 1, (s) => String(s.labels.http_route));
  const routes = tallyRoutes(duration, (await samples(registry, 'metrics_proxy_websocket_sessions_active')) ?? []);
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
    source: 'standard',
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

async function seedFigures(registry: Registry): Promise<StatusFigures | undefined> {
  const count = await samples(registry, 'apiCount');
  const duration = await samples(registry, 'apiDuration');
  if (count === undefined || duration === undefined) return undefined;
  return {
    source: 'seed',
    requests: { total: sum(count), errors: sum((await samples(registry, 'apiErrorCount')) ?? []), inFlight: null },
    // apiDuration is in milliseconds; the page gets seconds whatever the source.
    latency: buckets(duration, 1 / 1000, () => '').latency,
    upstreamFailures: null,
    routes: null,
  };
}

const NO_FIGURES: StatusFigures = {
  source: 'none',
  requests: { total: null, errors: null, inFlight: null },
  latency: null,
  upstreamFailures: null,
  routes: null,
};

async function figures(registry: Registry): Promise<StatusFigures> {
  const duration = await samples(registry, 'http_server_request_duration_seconds');
  return duration !== undefined ? standardFigures(registry, duration) : ((await seedFigures(registry)) ?? NO_FIGURES);
}

export function createStatusCollector(options: StatusOptions): () => Promise<StatusSnapshot> {
  const instance = randomUUID();
  const startedAt = Date.now();
  const url = options.upstream.href;

  return async function collect(): Promise<StatusSnapshot> {
    const checked = options.health.checkUpstream();
    const { source, requests, latency, upstreamFailures, routes } = await figures(options.registry);
    const upstream = await checked;
    const draining = options.health.draining;
    const time = Date.now();
    return {
      version: 1,
      instance,
      time,
      uptimeSeconds: (time - startedAt) / 1000,
      source,
      health: {
        ready: upstream.ok && !draining,
        draining,
        upstream: { url, reachable: upstream.ok, msg: upstream.ok ? null : upstream.msg },
      },
      requests,
      websockets: options.openWebSockets(),
      latency,
      upstreamFailures,
      routes,
    };
  };
}
