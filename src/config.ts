/**
 * Configuration: one table of options drives the CLI, the help text, the env
 * var names and the resolved, frozen Config. Precedence: defaults < env < flags.
 */
import { ConfigError } from './errors.js';
import {
  type LogLevel,
  parseBuckets,
  parseHost,
  parseLogLevel,
  parsePort,
  parseRoutePath,
  parseUpstream,
} from './parsers.js';

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
}

/** What the proxy itself needs: a Config whose upstream is known. */
export interface ProxyConfig extends Config {
  readonly upstream: URL;
}

type ValueKey = Exclude<keyof Config, 'demo'>;

export interface OptionSpec<K extends ValueKey> {
  /** Commander flag syntax, e.g. `--port <n>`. */
  readonly flag: string;
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
} satisfies Config);

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
  bucketsMs: { flag: '--buckets <ms,...>', description: 'apiDuration bucket bounds in milliseconds', parse: parseBuckets },
  logLevel: { flag: '--log-level <level>', description: 'pino log level', parse: parseLogLevel },
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

export function defaultText(key: ValueKey): string | undefined {
  const value = DEFAULTS[key];
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(',') : String(value);
}

export interface ConfigLayers {
  /** Raw flag values as commander gives them (strings), plus the boolean `demo`. */
  readonly flags?: Partial<Record<ValueKey, string>> & { readonly demo?: boolean };
  readonly env?: Readonly<Record<string, string | undefined>>;
}

/** Merges the layers, validates every value once, and returns a frozen Config. */
export function resolveConfig(layers: ConfigLayers): Config {
  const flags = layers.flags ?? {};
  const env = layers.env ?? {};
  const resolved: Record<string, unknown> = { ...DEFAULTS };
  for (const key of VALUE_KEYS) {
    const fromFlag = flags[key];
    const fromEnv = env[envName(key)];
    if (fromFlag !== undefined) {
      resolved[key] = OPTIONS[key].parse(fromFlag, `--${flagName(key)}`);
    } else if (fromEnv !== undefined && fromEnv !== '') {
      resolved[key] = OPTIONS[key].parse(fromEnv, envName(key));
    }
  }
  const demo = flags.demo === true;
  resolved.demo = demo;
  if (demo) {
    if (flags.upstream !== undefined) {
      throw new ConfigError('--upstream', 'invalid options: --upstream and --demo cannot be used together');
    }
    // --demo is a flag, so it beats an upstream taken from the environment.
    resolved.upstream = undefined;
  } else if (resolved.upstream === undefined) {
    throw new ConfigError(
      '--upstream',
      `missing option: --upstream <url> (or ${envName('upstream')}) is required unless --demo is given`,
    );
  }
  const config = resolved as unknown as Config;
  if (config.metricsPath === config.apiPrefix) {
    throw new ConfigError(
      '--metrics-path',
      `invalid value for --metrics-path: ${JSON.stringify(config.metricsPath)} (must differ from --api-prefix)`,
    );
  }
  return Object.freeze({ ...config, bucketsMs: Object.freeze([...config.bucketsMs]) });
}
