/**
 * The scenarios: what one measurement (a "cell") sends to a target. Each cell runs once for
 * warm-up and once for real on the same fresh target process. `scrape` is special (bench.ts):
 * it fills the route budget and times /metrics, so it only applies to metrics-proxy.
 * The HTTP/2 scenarios (`h2-get`, `grpc-unary`) are driven by h2load over h2c; their targets
 * listen for h2c (targets.ts: `protocol`).
 */
import { grpcProbe } from './grpc-probe.js';
import type { H2loadRunner } from './h2load.js';
import { type Measured, paced, wsEcho } from './load.js';
import type { Protocol, TargetId } from './targets.js';
import type { WrkRunner } from './wrk.js';

export const SCENARIO_IDS = ['get-50', 'get-16k', 'get-200', 'post-1m', 'ws-echo', 'fixed-rate', 'h2-get', 'grpc-unary', 'scrape'] as const;
export type ScenarioId = (typeof SCENARIO_IDS)[number];
export type LoadScenarioId = Exclude<ScenarioId, 'scrape'>;

export interface CellContext {
  readonly durationS: number;
  readonly rate: number;
  readonly wrk: WrkRunner;
  /** Undefined when h2load is not installed (the HTTP/2 scenarios are then skipped). */
  readonly h2load: H2loadRunner | undefined;
}

export interface LoadScenario {
  readonly id: LoadScenarioId;
  readonly title: string;
  /** Which client sends the load (for the report). */
  readonly generator: string;
  /**
   * `http`: the HTTP upstream (nginx when chosen); `node`: always the Node upstream (WebSocket,
   * upload sink); `h2`: the HTTP/2 (h2c) Node upstream, h2-upstream.mjs.
   */
  readonly upstream: 'http' | 'node' | 'h2';
  /** Where `direct` sends the load when not to `upstream` (an HTTP/2 client needs an HTTP/2 server). */
  readonly directUpstream?: 'h2';
  /** Set for the HTTP/2 scenarios: the targets listen for h2c, and for `grpc` proxy upstream over h2c. */
  readonly protocol?: Protocol;
  /** What the ratios compare: throughput, or (at a fixed offered rate) p99 latency. */
  readonly headline: 'rate' | 'p99';
  readonly unit: string;
  /** The targets this scenario is run against (others are skipped: they would add minutes and say nothing). */
  readonly targets: readonly TargetId[];
  run(baseUrl: string, ctx: CellContext): Promise<Measured>;
  /** Checked once per cell, before the warm-up: throws when the target does not answer as it should. */
  probe?(baseUrl: string): Promise<void>;
}

const PROXIES: readonly TargetId[] = ['bare', 'mp', 'caddy', 'nginx', 'mp-nometrics'];
const WITH_FLOORS: readonly TargetId[] = ['direct', 'node-floor', ...PROXIES];
/** bare http-proxy speaks no HTTP/2. The Node floor is h2-upstream.mjs answering by itself. */
const H2_TARGETS: readonly TargetId[] = ['direct', 'node-floor', 'mp', 'caddy', 'nginx', 'mp-nometrics'];

/** A 5-byte-prefixed gRPC message (uncompressed) of `bytes` bytes. */
function grpcMessage(bytes: number): Buffer {
  const frame = Buffer.alloc(5 + bytes, 0x71);
  frame[0] = 0;
  frame.writeUInt32BE(bytes, 1);
  return frame;
}

export const GRPC_PATH = '/bench.Echo/Unary';
/** The request: a 100-byte message behind its prefix (105 bytes of DATA). */
const GRPC_REQUEST = grpcMessage(100);
/** What h2-upstream.mjs answers: a 16-byte message behind its prefix. */
const GRPC_REPLY_BYTES = 5 + 16;
const GRPC_HEADERS = ['content-type: application/grpc', 'te: trailers'];
const SMALL_BYTES = 25;

function needH2load(ctx: CellContext): H2loadRunner {
  if (ctx.h2load === undefined) throw new Error('h2load is not installed (apt-get install nghttp2-client)');
  return ctx.h2load;
}

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
  {
    id: 'h2-get',
    title: 'small GET over HTTP/2 (h2c), 10 connections × 10 streams (saturation)',
    generator: 'h2load -t1 -c10 -m10 (h2c prior knowledge)',
    // The client side is HTTP/2; the proxies go upstream over HTTP/1.1 as they do by default.
    upstream: 'http',
    directUpstream: 'h2',
    protocol: 'h2',
    headline: 'rate',
    unit: 'req/s',
    targets: H2_TARGETS,
    run: (url, c) => needH2load(c)(`${url}/api/small`, { clients: 10, streams: 10, durationS: c.durationS, expectBodyBytes: SMALL_BYTES }),
  },
  {
    id: 'grpc-unary',
    title: 'gRPC unary call (100-byte message) over h2c both sides, 10 connections × 10 streams (saturation)',
    generator: "h2load -t1 -c10 -m10, POST of a 100-byte gRPC message, -H 'content-type: application/grpc' -H 'te: trailers'",
    upstream: 'h2',
    protocol: 'grpc',
    headline: 'rate',
    unit: 'req/s',
    targets: H2_TARGETS,
    run: (url, c) =>
      needH2load(c)(`${url}${GRPC_PATH}`, { clients: 10, streams: 10, durationS: c.durationS, body: GRPC_REQUEST, headers: GRPC_HEADERS, expectBodyBytes: GRPC_REPLY_BYTES }),
    probe: (url) => grpcProbe(url, GRPC_PATH, GRPC_REQUEST, GRPC_REPLY_BYTES),
  },
];
