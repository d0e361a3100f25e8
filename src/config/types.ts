/**
 * The configuration's types: `Settings` is every option as set (a token file still a path), `Config`
 * is what the proxy runs on (the token itself), `ConfigLayers` the input of resolveConfig.
 */
import type { ConfigFile } from './file.js';
import type { LogFormatSetting, LogLevel } from '../logger.js';
import type { MetricFamilyName, UpstreamProtocol } from './parsers.js';

export interface Config {
  /** Undefined only when `demo` is set: the demo upstream's address is known after it starts. */
  readonly upstream: URL | undefined;
  readonly demo: boolean;
  readonly port: number;
  readonly host: string;
  readonly apiPrefix: string;
  readonly metricsPath: string;
  readonly bucketsMs: readonly number[];
  readonly logLevel: LogLevel;
  /** `auto`: human-readable when stdout is a terminal, else JSON (the CLI decides at start-up). */
  readonly logFormat: LogFormatSetting;
  /** One `request` log line per forwarded request; off by default (it costs on the hot path). */
  readonly accessLog: boolean;
  /** Availability objective, 0 < slo < 1, exposed as metrics_proxy_slo_objective_ratio. */
  readonly slo: number;
  /** Upstream TCP/TLS connect; on expiry 504. */
  readonly connectTimeoutMs: number;
  /** From the end of the client's request to the upstream's response headers; 0 = off. */
  readonly upstreamTimeoutMs: number;
  /** No bytes in either direction of an HTTP exchange for this long closes it; 0 = off. */
  readonly idleTimeoutMs: number;
  /** The same for an open WebSocket session; 0 = off. */
  readonly wsIdleTimeoutMs: number;
  /** Idle client keep-alive connections are closed after this (above load balancers' 60 s). */
  readonly keepAliveTimeoutMs: number;
  /**
   * Slowloris: a request head must be in within this, from the accept for a connection's first
   * request (HTTP/2: the preface and SETTINGS), from its first byte for a keep-alive connection's next.
   */
  readonly requestHeaderTimeoutMs: number;
  /**
   * Idle upstream connections are closed after this when the upstream's response carries no
   * `Keep-Alive: timeout=` hint. With one, the hint decides, shorter or longer: 1 s before it, at
   * most 600 s (undici's keepAliveMaxTimeout); a hint of 1 s or less closes the connection after that response.
   */
  readonly upstreamKeepAliveTimeoutMs: number;
  /** Connections to the upstream at most; further requests wait for one (bounded by the response timeout). */
  readonly upstreamMaxConnections: number;
  /** `http1`: gRPC calls go upstream over HTTP/2, the rest over HTTP/1.1; `http2`: every request goes over HTTP/2. */
  readonly upstreamProtocol: UpstreamProtocol;
  /** SETTINGS_MAX_CONCURRENT_STREAMS advertised to HTTP/2 clients. */
  readonly http2MaxConcurrentStreams: number;
  /** An HTTP/2 client connection with no open stream for this long gets GOAWAY and is closed; 0 = off. */
  readonly http2IdleTimeoutMs: number;
  /** Larger request heads get 431 (HTTP/2: larger header lists are refused). */
  readonly maxHeaderSize: number;
  /** After SIGTERM: keep serving this long (readiness already 503) before refusing new connections. */
  readonly drainDelayMs: number;
  /** After the drain delay: how long in-flight requests may take before they are cut. */
  readonly shutdownTimeoutMs: number;
  /** Upstream path for the readiness check (HTTP GET, 2xx/3xx = ready); undefined = a TCP connect. */
  readonly readyPath: string | undefined;
  /** A separate admin listener for metrics and health; undefined = served on the main port. */
  readonly metricsPort: number | undefined;
  /** Address of the admin listener; undefined = the same as `host`. Only with `metricsPort`. */
  readonly metricsHost: string | undefined;
  /**
   * The bearer token the metrics path (and the status data) require: METRICS_PROXY_METRICS_TOKEN,
   * or the content of --metrics-token-file, which resolveConfig reads.
   */
  readonly metricsToken: string | undefined;
  /**
   * Never set. A Config carries the token itself (resolveConfig has read the file), so a token file
   * handed to buildApp, which reads only `metricsToken`, is a type error rather than a silently
   * unauthenticated metrics endpoint.
   */
  readonly metricsTokenFile?: undefined;
  /** Which metric families to expose; process metrics are always on. */
  readonly metricFamilies: readonly MetricFamilyName[];
  /** http_server_request_duration_seconds bucket bounds. */
  readonly durationBucketsSeconds: readonly number[];
  /** Native histograms' bucket growth factor (client_golang's NativeHistogramBucketFactor); 0 = no native buckets. */
  readonly nativeHistogramBucketFactor: number;
  /** Populated native buckets per series before its schema is reduced. */
  readonly nativeHistogramMaxBuckets: number;
  /** Whether the protobuf exposition carries the classic buckets too (text formats always do). */
  readonly protobufClassicBuckets: boolean;
  /** Route templates for http_route (`/api/users/:id`), most specific match wins. */
  readonly routes: readonly string[];
  /** An OpenAPI 3 document whose paths become route templates. */
  readonly openapi: string | undefined;
  /** How many distinct inferred routes before new ones become `other`. */
  readonly maxRoutes: number;
  /** Processes sharing the port (node:cluster); 1 = no cluster. */
  readonly workers: number;
}

/** What the proxy itself needs: a Config whose upstream is known. */
export interface ProxyConfig extends Config {
  readonly upstream: URL;
}

/**
 * Every option's value as set, validated, before any file it names is read: what `check` shows.
 * `metricsToken` is only the one from the environment here.
 */
export interface Settings extends Omit<Config, 'metricsTokenFile'> {
  /** A file holding the bearer token the metrics path requires. */
  readonly metricsTokenFile: string | undefined;
}

/** The options of the table: a flag, an env var and a config-file key each. */
export type OptionKey = Exclude<keyof Settings, 'demo' | 'metricsToken'>;

export interface ConfigLayers {
  /** Raw flag values as commander gives them (strings), plus the boolean `demo`. */
  readonly flags?: Partial<Record<OptionKey, string>> & { readonly demo?: boolean };
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** The --config file as read (see file.ts); validated here like the other layers. */
  readonly file?: ConfigFile;
}

/** Which layer a value came from, and its name there: `--port`, `METRICS_PROXY_PORT`, `proxy.yaml: port`. */
export interface Origin {
  readonly layer: 'file' | 'env' | 'flag';
  readonly name: string;
}
