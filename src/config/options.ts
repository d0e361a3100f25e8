/**
 * The option table: one entry per option drives the CLI flags, the help text, the env var names,
 * the config-file keys and the parsing of every layer (see resolveConfig).
 */
import { parseRouteTemplate } from '../metrics/route-templates.js';
import {
  parseBoolean,
  parseBucketFactor,
  parseBuckets,
  parseCount,
  parseFamilies,
  parseFilePath,
  parseHeaderSize,
  parseHost,
  parseLogFormat,
  parseLogLevel,
  parseMillis,
  parsePort,
  parsePositiveMillis,
  parseRatio,
  parseRoutePath,
  parseSecondsBuckets,
  parseUpstream,
  parseUpstreamProtocol,
  parseWorkers,
} from './parsers.js';
import type { OptionKey, Settings } from './types.js';

export interface OptionSpec<K extends OptionKey> {
  /** Commander flag syntax, e.g. `--port <n>`; no `<value>` for an on/off option. */
  readonly flag: string;
  /** May be given several times; the values reach `parse` joined with commas (as the env var writes them). */
  readonly repeatable?: true;
  /** A list: in a config file, a YAML list (or a comma-separated string, as in the env var). */
  readonly list?: true;
  /** A file path: in a config file, relative to the config file's directory. */
  readonly path?: true;
  /** The config-file key when it is not the flag name in camelCase. */
  readonly fileKey?: string;
  readonly description: string;
  /** The raw text (flag, env var, or a config-file value in that form) → the value, or a ConfigError naming `source`. */
  readonly parse: (raw: string, source: string) => Settings[K];
}

export const OPTIONS: { readonly [K in OptionKey]: OptionSpec<K> } = {
  upstream: {
    flag: '--upstream <url>',
    description: 'http:// or https:// base URL of the service (required unless --demo)',
    parse: parseUpstream,
  },
  port: { flag: '--port <n>', description: 'listen port; 0 picks a free one', parse: parsePort },
  host: { flag: '--host <addr>', description: 'listen address', parse: parseHost },
  apiPrefix: {
    flag: '--api-prefix <path>',
    description: 'forward requests at or below this path; / forwards all but the metrics path',
    parse: parseRoutePath,
  },
  metricsPath: {
    flag: '--metrics-path <path>',
    description: 'path where the proxy serves its own metrics (never forwarded)',
    parse: parseRoutePath,
  },
  bucketsMs: { flag: '--buckets <ms,...>', description: 'apiDuration bucket bounds in milliseconds', list: true, parse: parseBuckets },
  logLevel: { flag: '--log-level <level>', description: 'pino log level', parse: parseLogLevel },
  logFormat: {
    flag: '--log-format <format>',
    description: 'json, pretty (human-readable), or auto: pretty when stdout is a terminal, else json',
    parse: parseLogFormat,
  },
  accessLog: {
    flag: '--access-log',
    description: 'log one "request" line per forwarded request (true/false/1/0 in env and config; --no-access-log turns it off)',
    parse: parseBoolean,
  },
  slo: {
    flag: '--slo <ratio>',
    description: 'availability objective, between 0 and 1 (exposed as metrics_proxy_slo_objective_ratio for burn-rate alerts)',
    parse: parseRatio,
  },
  connectTimeoutMs: {
    flag: '--connect-timeout <ms>',
    description: 'upstream TCP/TLS connect timeout; 504 on expiry',
    parse: parseMillis,
  },
  upstreamTimeoutMs: {
    flag: '--upstream-timeout <ms>',
    description: 'time until the upstream response headers, from arrival (or from the end of a request body); 504 on expiry; 0 = off',
    parse: parseMillis,
  },
  idleTimeoutMs: {
    flag: '--idle-timeout <ms>',
    description: 'close an HTTP exchange with no bytes moving in either direction for this long; 0 = off',
    parse: parseMillis,
  },
  wsIdleTimeoutMs: {
    flag: '--ws-idle-timeout <ms>',
    description: 'close a WebSocket session with no bytes moving for this long; 0 = off',
    parse: parseMillis,
  },
  keepAliveTimeoutMs: {
    flag: '--keep-alive-timeout <ms>',
    description: 'close idle client keep-alive connections after this; keep it above your load balancer\'s idle timeout',
    parse: parseMillis,
  },
  requestHeaderTimeoutMs: {
    flag: '--request-header-timeout <ms>',
    description:
      'a request head must be in within this: from the accept for a connection\'s first request, from its first byte for a later one; 408 and close on expiry',
    parse: parsePositiveMillis,
  },
  upstreamKeepAliveTimeoutMs: {
    flag: '--upstream-keep-alive-timeout <ms>',
    description:
      'close idle upstream connections after this when the upstream sends no Keep-Alive: timeout= hint (with one, 1 s before it); keep it below the upstream\'s own idle timeout',
    parse: parsePositiveMillis,
  },
  upstreamMaxConnections: {
    flag: '--upstream-max-connections <n>',
    description: 'connections to the upstream at most; further requests wait for a free one, within the upstream timeout',
    parse: parseCount,
  },
  upstreamProtocol: {
    flag: '--upstream-protocol <protocol>',
    description: 'http1: gRPC calls go upstream over HTTP/2, the rest over HTTP/1.1; http2: every request goes over HTTP/2',
    parse: parseUpstreamProtocol,
  },
  http2MaxConcurrentStreams: {
    flag: '--http2-max-concurrent-streams <n>',
    description: 'streams one HTTP/2 client connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS)',
    parse: parseCount,
  },
  http2IdleTimeoutMs: {
    flag: '--http2-idle-timeout <ms>',
    description: 'close an HTTP/2 client connection (GOAWAY) when no stream has been open for this long; 0 = off',
    parse: parseMillis,
  },
  maxHeaderSize: {
    flag: '--max-header-size <bytes>',
    description: 'largest request head accepted; larger gets 431',
    parse: parseHeaderSize,
  },
  drainDelayMs: {
    flag: '--drain-delay <ms>',
    description: 'on SIGTERM, keep serving this long (readiness 503) before refusing connections',
    parse: parseMillis,
  },
  shutdownTimeoutMs: {
    flag: '--shutdown-timeout <ms>',
    description: 'on SIGTERM, after the drain delay, how long in-flight requests may take',
    parse: parseMillis,
  },
  readyPath: {
    flag: '--ready-path <path>',
    description: 'upstream path GET by /readyz (2xx/3xx = ready); default: a TCP connect',
    parse: parseRoutePath,
  },
  metricsPort: {
    flag: '--metrics-port <n>',
    description: 'serve metrics and health on this separate port instead of the main one',
    parse: parsePort,
  },
  metricsHost: {
    flag: '--metrics-host <addr>',
    description: 'listen address of --metrics-port (default: --host)',
    parse: parseHost,
  },
  metricsTokenFile: {
    flag: '--metrics-token-file <file>',
    description: 'file holding a bearer token required on the metrics path (or set METRICS_PROXY_METRICS_TOKEN)',
    path: true,
    parse: parseFilePath,
  },
  metricFamilies: {
    flag: '--metrics <families>',
    description: 'metric families to expose: seed (apiCount…), standard (OpenTelemetry http_server_*), both, or none',
    list: true,
    parse: parseFamilies,
  },
  durationBucketsSeconds: {
    flag: '--duration-buckets <s,...>',
    description: 'http_server_request_duration_seconds bucket bounds in seconds',
    list: true,
    parse: parseSecondsBuckets,
  },
  nativeHistogramBucketFactor: {
    flag: '--native-histogram-bucket-factor <f>',
    description:
      'growth factor between native-histogram buckets (schema 3 at 1.1), sent over the protobuf exposition beside the classic buckets; 0 = off',
    parse: parseBucketFactor,
  },
  nativeHistogramMaxBuckets: {
    flag: '--native-histogram-max-buckets <n>',
    description: 'populated native buckets per series at most; beyond, the series halves its resolution',
    parse: parseCount,
  },
  protobufClassicBuckets: {
    flag: '--protobuf-classic-buckets',
    description:
      'send classic buckets beside the native ones over protobuf (--no-protobuf-classic-buckets once every scraper reads native histograms)',
    parse: parseBoolean,
  },
  routes: {
    flag: '--route <template>',
    description: 'a route template for http_route, e.g. /api/users/:id (repeatable; env: comma-separated)',
    repeatable: true,
    list: true,
    fileKey: 'routes',
    // Blank (an empty list in a config file) means no templates.
    parse: (raw, source) => (raw.trim() === '' ? [] : raw.split(',').map((t) => parseRouteTemplate(t.trim(), source))),
  },
  openapi: {
    flag: '--openapi <file>',
    description: 'OpenAPI 3 document (JSON or YAML) whose paths become route templates',
    path: true,
    parse: parseFilePath,
  },
  maxRoutes: {
    flag: '--max-routes <n>',
    description: 'budget of distinct inferred routes; beyond it, new routes are recorded as "other"',
    parse: parseCount,
  },
  workers: {
    flag: '--workers <n|auto>',
    description: 'worker processes sharing the port, with metrics summed across them; auto = available cores',
    parse: parseWorkers,
  },
};

/** Every option, in the table's order (the order of --help). */
export const VALUE_KEYS = Object.keys(OPTIONS) as OptionKey[];

/** `--api-prefix <path>` → `api-prefix` */
export function flagName(key: OptionKey): string {
  return OPTIONS[key].flag.replace(/^--/, '').replace(/ .*$/, '');
}

/** `--api-prefix` ↔ `METRICS_PROXY_API_PREFIX`: env names derive from flag names. */
export function envName(key: OptionKey): string {
  return `METRICS_PROXY_${flagName(key).toUpperCase().replace(/-/g, '_')}`;
}

/** `--connect-timeout` → `connectTimeout`: config-file keys are the flag names in camelCase (`--route` → `routes`). */
export function fileKey(key: OptionKey): string {
  return OPTIONS[key].fileKey ?? flagName(key).replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
}
