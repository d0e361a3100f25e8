/** The built-in defaults, and the env var that carries the metrics token itself. */
import { DEFAULT_DURATION_BUCKETS_SECONDS } from '../metrics/standard.js';
import { DEFAULT_SLO_OBJECTIVE } from '../metrics/slo.js';
import type { MetricFamilyName } from './parsers.js';
import type { OptionKey, Settings } from './types.js';

export const DEFAULTS = Object.freeze({
  upstream: undefined,
  demo: false,
  port: 8000,
  host: '0.0.0.0',
  apiPrefix: '/api',
  metricsPath: '/metrics',
  bucketsMs: Object.freeze([1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]),
  logLevel: 'info',
  logFormat: 'auto',
  accessLog: false,
  slo: DEFAULT_SLO_OBJECTIVE,
  connectTimeoutMs: 5_000,
  upstreamTimeoutMs: 60_000,
  idleTimeoutMs: 300_000,
  wsIdleTimeoutMs: 0,
  keepAliveTimeoutMs: 65_000,
  requestHeaderTimeoutMs: 10_000,
  upstreamKeepAliveTimeoutMs: 4_000,
  upstreamMaxConnections: 256,
  upstreamProtocol: 'http1',
  http2MaxConcurrentStreams: 100,
  http2IdleTimeoutMs: 65_000,
  maxHeaderSize: 16_384,
  drainDelayMs: 0,
  shutdownTimeoutMs: 25_000,
  readyPath: undefined,
  metricsPort: undefined,
  metricsHost: undefined,
  metricsTokenFile: undefined,
  metricsToken: undefined,
  metricFamilies: Object.freeze(['seed', 'standard'] as MetricFamilyName[]),
  durationBucketsSeconds: DEFAULT_DURATION_BUCKETS_SECONDS,
  nativeHistogramBucketFactor: 1.1,
  nativeHistogramMaxBuckets: 160,
  protobufClassicBuckets: true,
  routes: Object.freeze([] as string[]),
  openapi: undefined,
  maxRoutes: 100,
  workers: 1,
} satisfies Settings);

/** The env var that carries the metrics bearer token itself (there is deliberately no flag for it). */
export const METRICS_TOKEN_ENV = 'METRICS_PROXY_METRICS_TOKEN';

/** The default as --help shows it; undefined when there is none to show. */
export function defaultText(key: OptionKey): string | undefined {
  const value = DEFAULTS[key];
  if (value === undefined || (Array.isArray(value) && value.length === 0)) return undefined;
  return Array.isArray(value) ? value.join(',') : String(value);
}
