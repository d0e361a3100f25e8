/**
 * The scenarios: what one measurement (a "cell") sends to a target. Each cell runs once for
 * warm-up and once for real on the same fresh target process. `scrape` is special (bench.ts):
 * it fills the route budget and times /metrics, so it only applies to metrics-proxy.
 */
import { type Measured, paced, wsEcho } from './load.js';
import type { TargetId } from './targets.js';
import type { WrkRunner } from './wrk.js';

export const SCENARIO_IDS = ['get-50', 'get-16k', 'get-200', 'post-1m', 'ws-echo', 'fixed-rate', 'scrape'] as const;
export type ScenarioId = (typeof SCENARIO_IDS)[number];
export type LoadScenarioId = Exclude<ScenarioId, 'scrape'>;

export interface CellContext {
  readonly durationS: number;
  readonly rate: number;
  readonly wrk: WrkRunner;
}

export interface LoadScenario {
  readonly id: LoadScenarioId;
  readonly title: string;
  /** Which client sends the load (for the report). */
  readonly generator: string;
  /** `http`: the HTTP upstream (nginx when chosen); `node`: always the Node upstream (WebSocket, upload sink). */
  readonly upstream: 'http' | 'node';
  /** What the ratios compare: throughput, or (at a fixed offered rate) p99 latency. */
  readonly headline: 'rate' | 'p99';
  readonly unit: string;
  /** The targets this scenario is run against (others are skipped: they would add minutes and say nothing). */
  readonly targets: readonly TargetId[];
  run(baseUrl: string, ctx: CellContext): Promise<Measured>;
}

const PROXIES: readonly TargetId[] = ['bare', 'mp', 'caddy', 'nginx', 'mp-nometrics'];
const WITH_FLOORS: readonly TargetId[] = ['direct', 'node-floor', ...PROXIES];

export const LOAD_SCENARIOS: readonly LoadScenario[] = [
  {
    id: 'get-50',
    title: 'small GET, 50 connections (saturation)',
    generator: 'wrk -t1 -c50',
    upstream: 'http',
    headline: 'rate',
    unit: 'req/s',
    targets: WITH_FLOORS,
    run: (url, c) => c.wrk(`${url}/api/small`, { connections: 50, durationS: c.durationS }),
  },
  {
    id: 'get-16k',
    title: '16 KiB response, 50 connections (saturation)',
    generator: 'wrk -t1 -c50',
    upstream: 'http',
    headline: 'rate',
    unit: 'req/s',
    targets: WITH_FLOORS,
    run: (url, c) => c.wrk(`${url}/api/16k`, { connections: 50, durationS: c.durationS }),
  },
  {
    id: 'get-200',
    title: 'small GET, 200 connections (saturation)',
    generator: 'wrk -t1 -c200',
    upstream: 'http',
    headline: 'rate',
    unit: 'req/s',
    targets: PROXIES,
    run: (url, c) => c.wrk(`${url}/api/small`, { connections: 200, durationS: c.durationS }),
  },
  {
    id: 'post-1m',
    title: '1 MiB POST upload, 10 connections (saturation)',
    generator: 'wrk -t1 -c10, 1 MiB body',
    // The Node sink reads the whole body before answering. nginx's `return` answers first and
    // discards the body afterwards, which stalls http-proxy-based proxies.
    upstream: 'node',
    headline: 'rate',
    unit: 'req/s',
    targets: PROXIES,
    run: (url, c) => c.wrk(`${url}/api/sink`, { connections: 10, durationS: c.durationS, postBytes: 1024 * 1024 }),
  },
  {
    id: 'ws-echo',
    title: 'WebSocket echo, 50 clients, sequential round trips of 64 bytes',
    generator: '50 `ws` clients in the bench process',
    upstream: 'node',
    headline: 'rate',
    unit: 'round trips/s',
    targets: PROXIES,
    run: (url, c) => wsEcho(`${url.replace(/^http/, 'ws')}/api/ws`, { clients: 50, durationS: c.durationS, payloadBytes: 64 }),
  },
  {
    id: 'fixed-rate',
    title: 'small GET at a fixed offered rate (open loop, not saturated)',
    generator: 'open-loop node:http client in the bench process, ≤ 64 connections',
    upstream: 'http',
    headline: 'p99',
    unit: 'req/s',
    targets: ['direct', ...PROXIES],
    run: (url, c) => paced(`${url}/api/small`, { rate: c.rate, durationS: c.durationS, maxSockets: 64 }),
  },
];
