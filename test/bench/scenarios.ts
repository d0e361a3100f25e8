/**
 * The scenarios: what one measurement (a "cell") sends to a target. Each cell runs once for
 * warm-up and once for real on the same fresh target process. `scrape` is special (bench.ts):
 * it fills the route budget and times /metrics, so it only applies to metrics-proxy targets.
 */
import { type Measured, paced, saturate, wsEcho } from './load.js';

export const SCENARIO_IDS = ['get-50', 'get-200', 'get-16k', 'post-1m', 'fixed-rate', 'ws-echo', 'scrape'] as const;
export type ScenarioId = (typeof SCENARIO_IDS)[number];
export type LoadScenarioId = Exclude<ScenarioId, 'scrape'>;

export interface CellOptions {
  readonly durationS: number;
  readonly rate: number;
}

export interface LoadScenario {
  readonly id: LoadScenarioId;
  readonly title: string;
  /** `http`: the HTTP upstream (nginx when chosen); `node`: always the Node upstream (WebSocket). */
  readonly upstream: 'http' | 'node';
  /** What the ratios compare: throughput, or (at a fixed offered rate) p99 latency. */
  readonly headline: 'rate' | 'p99';
  readonly unit: string;
  run(baseUrl: string, options: CellOptions): Promise<Measured>;
}

const MIB = 1024 * 1024;
const UPLOAD = Buffer.alloc(MIB, 0x75);

export const LOAD_SCENARIOS: readonly LoadScenario[] = [
  {
    id: 'get-50',
    title: 'small GET, 50 connections (saturation)',
    upstream: 'http',
    headline: 'rate',
    unit: 'req/s',
    run: (url, o) => saturate(`${url}/api/small`, { connections: 50, durationS: o.durationS }),
  },
  {
    id: 'get-200',
    title: 'small GET, 200 connections (saturation)',
    upstream: 'http',
    headline: 'rate',
    unit: 'req/s',
    run: (url, o) => saturate(`${url}/api/small`, { connections: 200, durationS: o.durationS }),
  },
  {
    id: 'get-16k',
    title: '16 KiB response, 50 connections (saturation)',
    upstream: 'http',
    headline: 'rate',
    unit: 'req/s',
    run: (url, o) => saturate(`${url}/api/16k`, { connections: 50, durationS: o.durationS }),
  },
  {
    id: 'post-1m',
    title: '1 MiB POST upload, 10 connections (saturation)',
    // The Node sink reads the whole body before answering. nginx's `return` answers first and
    // discards the body afterwards, which stalls http-proxy-based proxies (see the bench report).
    upstream: 'node',
    headline: 'rate',
    unit: 'req/s',
    run: (url, o) =>
      saturate(`${url}/api/sink`, {
        connections: 10,
        durationS: o.durationS,
        method: 'POST',
        body: UPLOAD,
        headers: { 'content-type': 'application/octet-stream' },
      }),
  },
  {
    id: 'fixed-rate',
    title: 'small GET at a fixed offered rate (open loop, not saturated)',
    upstream: 'http',
    headline: 'p99',
    unit: 'req/s',
    run: (url, o) => paced(`${url}/api/small`, { rate: o.rate, durationS: o.durationS, maxSockets: 64 }),
  },
  {
    id: 'ws-echo',
    title: 'WebSocket echo, 50 clients, sequential round trips of 64 bytes',
    upstream: 'node',
    headline: 'rate',
    unit: 'round trips/s',
    run: (url, o) => wsEcho(`${url.replace(/^http/, 'ws')}/api/ws`, { clients: 50, durationS: o.durationS, payloadBytes: 64 }),
  },
];
