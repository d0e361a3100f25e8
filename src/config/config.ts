/**
 * Configuration: one table of options drives the CLI, the help text, the env
 * var names, the config-file keys and the resolved, frozen Config.
 * Precedence: defaults < config file < env < flags.
 */
import { dirname, isAbsolute, resolve } from 'node:path';
import { type ConfigFile, describe, fileValueToRaw } from './file.js';
import { ConfigError } from '../errors.js';
import { DEFAULT_DURATION_BUCKETS_SECONDS } from '../metrics/standard.js';
import { DEFAULT_SLO_OBJECTIVE } from '../metrics/slo.js';
import {
  type LogFormatSetting,
  type LogLevel,
  type MetricFamilyName,
  parseBoolean,
  parseBuckets,
  parseCount,
  parseFamilies,
  parseSecondsBuckets,
  parseWorkers,
  parseHost,
  parseFilePath,
  parseHeaderSize,
  parseLogFormat,
  parseLogLevel,
  parseMillis,
  parsePort,
  parsePositiveMillis,
  parseRoutePath,
  parseRatio,
  parseUpstream,
} from './parsers.js';
import { parseRouteTemplate } from '../metrics/routes.js';

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
  /** Idle upstream connections are closed after this unless the upstream's `Keep-Alive: timeout=` says sooner. */
  readonly upstreamKeepAliveTimeoutMs: number;
  /** Connections to the upstream at most; further requests wait for one (bounded by the response timeout). */
  readonly upstreamMaxConnections: number;
  /** Larger request heads get 431. */
  readonly maxHeaderSize: number;
  /** After SIGTERM: keep serving this long (readiness already 503) before refusing new connections. */
  readonly drainDelayMs: number;
  /** After the drain delay: how long in-flight requests may take before they are cut. */
  readonly shutdownTimeoutMs: number;
  /** Upstream path for the readiness check (HTTP GET, 2xx/3xx = ready); undefined = a TCP connect. */
  readonly readyPath: string | undefined;
  /** A separate admin listener for metrics and health; undefined = served on the main port. */
  readonly metricsPort: number | undefined;
  /** Address of the admin listener; undefined = the same as `host`. */
  readonly metricsHost: string | undefined;
  /** A file holding the bearer token the metrics path requires. */
  readonly metricsTokenFile: string | undefined;
  /** The bearer token itself, from the environment only (a flag would show in `ps`). */
  readonly metricsToken: string | undefined;
  /** Which metric families to expose; process metrics are always on. */
  readonly metricFamilies: readonly MetricFamilyName[];
  /** http_server_request_duration_seconds bucket bounds. */
  readonly durationBucketsSeconds: readonly number[];
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

type ValueKey = Exclude<keyof Config, 'demo' | 'metricsToken'>;

export interface OptionSpec<K extends ValueKey> {
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
  readonly parse: (raw: string, source: string) => Config[K];
}

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
  upstreamKeepAliveTimeoutMs: 4_000,
  upstreamMaxConnections: 256,
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
  routes: Object.freeze([] as string[]),
  openapi: undefined,
  maxRoutes: 100,
  workers: 1,
} satisfies Config);

/** The env var that carries the metrics bearer token itself (there is deliberately no flag for it). */
export const METRICS_TOKEN_ENV = 'METRICS_PROXY_METRICS_TOKEN';

export const OPTIONS: { readonly [K in ValueKey]: OptionSpec<K> } = {
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
    description: 'time from the end of the request to the upstream response headers; 504 on expiry; 0 = off',
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
  upstreamKeepAliveTimeoutMs: {
    flag: '--upstream-keep-alive-timeout <ms>',
    description:
      'close idle upstream connections after this, unless the upstream\'s Keep-Alive: timeout= hint says sooner; keep it below the upstream\'s own idle timeout',
    parse: parsePositiveMillis,
  },
  upstreamMaxConnections: {
    flag: '--upstream-max-connections <n>',
    description: 'connections to the upstream at most; further requests wait for a free one, within the upstream timeout',
    parse: parseCount,
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

export const VALUE_KEYS = Object.keys(OPTIONS) as ValueKey[];

/** `--api-prefix <path>` → `api-prefix` */
export function flagName(key: ValueKey): string {
  return OPTIONS[key].flag.replace(/^--/, '').replace(/ .*$/, '');
}

/** `--api-prefix` ↔ `METRICS_PROXY_API_PREFIX`: env names derive from flag names. */
export function envName(key: ValueKey): string {
  return `METRICS_PROXY_${flagName(key).toUpperCase().replace(/-/g, '_')}`;
}

/** `--connect-timeout` → `connectTimeout`: config-file keys are the flag names in camelCase (`--route` → `routes`). */
export function fileKey(key: ValueKey): string {
  return OPTIONS[key].fileKey ?? flagName(key).replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
}

export function defaultText(key: ValueKey): string | undefined {
  const value = DEFAULTS[key];
  if (value === undefined || (Array.isArray(value) && value.length === 0)) return undefined;
  return Array.isArray(value) ? value.join(',') : String(value);
}

export interface ConfigLayers {
  /** Raw flag values as commander gives them (strings), plus the boolean `demo`. */
  readonly flags?: Partial<Record<ValueKey, string>> & { readonly demo?: boolean };
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** The --config file as read (see config-file.ts); validated here like the other layers. */
  readonly file?: ConfigFile;
}

const KEY_BY_FILE_KEY = new Map<string, ValueKey>(VALUE_KEYS.map((key) => [fileKey(key), key]));

/** Keys a config file may not hold, and why. */
const REFUSED_FILE_KEYS: Readonly<Record<string, string>> = {
  metricsToken:
    'the token itself is not accepted in a config file (config files end up in config maps and repositories): ' +
    'set metricsTokenFile to a file mounted from a secret, or METRICS_PROXY_METRICS_TOKEN',
  demo: 'demo is a command-line flag only (a local try-out, not deployment configuration)',
  config: 'a config file cannot name another config file',
};

const normalise = (name: string): string => name.toLowerCase().replace(/[-_]/g, '');

/** The file key an unknown key was probably meant to be: another spelling, a Config field name, or a typo. */
function suggestFileKey(name: string): string | undefined {
  const wanted = normalise(name);
  for (const key of VALUE_KEYS) {
    if ([fileKey(key), key].some((known) => normalise(known) === wanted)) return fileKey(key);
  }
  let best: { key: string; distance: number } | undefined;
  for (const known of KEY_BY_FILE_KEY.keys()) {
    const distance = editDistance(wanted, normalise(known));
    if (distance <= 2 && (best === undefined || distance < best.distance)) best = { key: known, distance };
  }
  return best?.key;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_v, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] as number) + 1, (current[j - 1] as number) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] as number;
}

/**
 * The file layer: every key known, every value of a usable type and valid by the option's own
 * parser. Errors read `<file>: <key>: <reason>, got <value>` and name the file key in `option`.
 */
function readFileLayer(file: ConfigFile, resolved: Record<string, unknown>, sources: Map<ValueKey, string>): void {
  for (const [name, value] of Object.entries(file.values)) {
    const source = `${file.path}: ${name}`;
    const key = KEY_BY_FILE_KEY.get(name);
    if (key === undefined) {
      const refused = REFUSED_FILE_KEYS[name];
      if (refused !== undefined) throw new ConfigError(source, `${source}: ${refused}`, { reason: refused });
      const suggestion = suggestFileKey(name);
      const reason = `unknown option${suggestion === undefined ? '' : ` (did you mean ${suggestion}?)`}; the keys are the flag names in camelCase, see --help`;
      throw new ConfigError(source, `${source}: ${reason}`, { reason });
    }
    // A key with no value counts as unset, like an empty env var.
    if (value === null) continue;
    const spec = OPTIONS[key];
    const converted = fileValueToRaw(value, spec.list === true);
    if ('reason' in converted) {
      throw new ConfigError(source, `${source}: ${converted.reason}, got ${describe(value)}`, { reason: converted.reason });
    }
    let parsed: unknown;
    try {
      parsed = spec.parse(converted.raw, source);
    } catch (err) {
      // Route-template errors carry their reason in a closing parenthesis rather than in `reason`.
      const reason = err instanceof ConfigError ? (err.reason ?? /\(([^()]+)\)$/.exec(err.message)?.[1]) : undefined;
      if (reason === undefined) throw err;
      throw new ConfigError(source, `${source}: ${reason}, got ${describe(value)}`, { reason });
    }
    if (spec.path === true && typeof parsed === 'string' && !isAbsolute(parsed)) parsed = resolve(dirname(file.path), parsed);
    resolved[key] = parsed;
    sources.set(key, source);
  }
}

/** Merges the layers (defaults < file < env < flags), validates every value once, and returns a frozen Config. */
export function resolveConfig(layers: ConfigLayers): Config {
  const flags = layers.flags ?? {};
  const env = layers.env ?? {};
  const resolved: Record<string, unknown> = { ...DEFAULTS };
  /** Where each value came from, in the words an error message should use. */
  const sources = new Map<ValueKey, string>();
  if (layers.file !== undefined) readFileLayer(layers.file, resolved, sources);
  for (const key of VALUE_KEYS) {
    const fromFlag = flags[key];
    const fromEnv = env[envName(key)];
    if (fromFlag !== undefined) {
      resolved[key] = OPTIONS[key].parse(fromFlag, `--${flagName(key)}`);
      sources.set(key, `--${flagName(key)}`);
    } else if (fromEnv !== undefined && fromEnv !== '') {
      resolved[key] = OPTIONS[key].parse(fromEnv, envName(key));
      sources.set(key, envName(key));
    }
  }
  const sourceOf = (key: ValueKey): string => sources.get(key) ?? `--${flagName(key)}`;
  const demo = flags.demo === true;
  resolved.demo = demo;
  if (demo) {
    if (flags.upstream !== undefined) {
      throw new ConfigError('--upstream', 'invalid options: --upstream and --demo cannot be used together');
    }
    // --demo is a flag, so it beats an upstream taken from the environment or the config file.
    resolved.upstream = undefined;
  } else if (resolved.upstream === undefined) {
    throw new ConfigError(
      '--upstream',
      `missing option: --upstream <url> (or ${envName('upstream')}, or upstream in the config file) is required unless --demo is given`,
    );
  }
  const token = env[METRICS_TOKEN_ENV];
  if (token !== undefined && token.trim() !== '') {
    if (resolved.metricsTokenFile !== undefined) {
      const other = sources.get('metricsTokenFile') ?? '--metrics-token-file';
      throw new ConfigError(other, `invalid options: ${METRICS_TOKEN_ENV} and ${other} cannot be used together`);
    }
    resolved.metricsToken = token.trim();
  }
  const config = resolved as unknown as Config;
  /** A value that clashes with another option, worded like the errors of the layer it came from. */
  const clash = (key: ValueKey, value: number | string, other: ValueKey): ConfigError => {
    const source = sourceOf(key);
    const reason = `must differ from ${sourceOf(other)}`;
    const fromFile = layers.file !== undefined && source.startsWith(`${layers.file.path}: `);
    const message = fromFile
      ? `${source}: ${reason}, got ${describe(value)}`
      : `invalid value for ${source}: ${JSON.stringify(String(value))} (${reason})`;
    return new ConfigError(source, message, { reason });
  };
  if (config.metricsPort !== undefined && config.metricsPort !== 0 && config.metricsPort === config.port) {
    throw clash('metricsPort', config.metricsPort, 'port');
  }
  if (config.metricsPath === config.apiPrefix) throw clash('metricsPath', config.metricsPath, 'apiPrefix');
  return Object.freeze({
    ...config,
    bucketsMs: Object.freeze([...config.bucketsMs]),
    durationBucketsSeconds: Object.freeze([...config.durationBucketsSeconds]),
    metricFamilies: Object.freeze([...config.metricFamilies]),
    routes: Object.freeze([...config.routes]),
  });
}
