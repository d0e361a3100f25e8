/**
 * The live status page's data, `GET /status.json`: only cumulative values (counts, error counts,
 * histogram buckets, gauges), so the server keeps no state: the page takes rates and quantiles from
 * the difference between two polls, as Prometheus' rate() and histogram_quantile() do over a window.
 *
 * The shape (version 1) is documented in docs/operations.md, "Live status page":
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

/** The figures that come from the metric families (the rest is health, WebSockets and identity). */
export interface StatusFigures {
  readonly source: 'standard' | 'seed' | 'none';
  readonly requests: { readonly total: number | null; readonly errors: number | null; readonly inFlight: number | null };
  readonly latency: Latency | null;
  readonly upstreamFailures: Readonly<Record<string, number>> | null;
  readonly routes: readonly RouteStatus[] | null;
}

export interface StatusSnapshot extends StatusFigures {
  readonly version: 1;
  readonly instance: string;
  readonly time: number;
  readonly uptimeSeconds: number;
  readonly health: {
    readonly ready: boolean;
    readonly draining: boolean;
    readonly upstream: { readonly url: string; readonly reachable: boolean; readonly msg: string | null };
  };
  readonly websockets: number;
}
