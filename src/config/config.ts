/**
 * Configuration: one table of options (options.ts) drives the CLI, the help text, the env var
 * names, the config-file keys and the resolved, frozen Config. Precedence: defaults < config file
 * < env < flags. This module resolves; it also re-exports the layer's public names.
 */
import { readFileLayer } from './file-layer.js';
import { DEFAULTS } from './defaults.js';
import { OPTIONS, VALUE_KEYS, envName, flagName } from './options.js';
import { applyDemo, applyEnvToken, checkPairs } from './rules.js';
import type { Config, ConfigLayers, OptionKey, Origin } from './types.js';

export { DEFAULTS, METRICS_TOKEN_ENV, defaultText } from './defaults.js';
export { OPTIONS, VALUE_KEYS, envName, fileKey, flagName } from './options.js';
export type { OptionSpec } from './options.js';
export type { Config, ConfigLayers, OptionKey, ProxyConfig } from './types.js';

/** The options' values, defaults < file < env < flags, each parsed by its option, and where each came from. */
function mergeLayers(layers: ConfigLayers): { values: Record<string, unknown>; origins: Map<OptionKey, Origin> } {
  const flags = layers.flags ?? {};
  const env = layers.env ?? {};
  const values: Record<string, unknown> = { ...DEFAULTS };
  const origins = new Map<OptionKey, Origin>();
  if (layers.file !== undefined) readFileLayer(layers.file, values, origins);
  for (const key of VALUE_KEYS) {
    const fromFlag = flags[key];
    const fromEnv = env[envName(key)];
    if (fromFlag !== undefined) {
      values[key] = OPTIONS[key].parse(fromFlag, `--${flagName(key)}`);
      origins.set(key, { layer: 'flag', name: `--${flagName(key)}` });
    } else if (fromEnv !== undefined && fromEnv !== '') {
      values[key] = OPTIONS[key].parse(fromEnv, envName(key));
      origins.set(key, { layer: 'env', name: envName(key) });
    }
  }
  return { values, origins };
}

/** Frozen, lists included. */
function freeze(values: Config): Config {
  return Object.freeze({
    ...values,
    bucketsMs: Object.freeze([...values.bucketsMs]),
    durationBucketsSeconds: Object.freeze([...values.durationBucketsSeconds]),
    metricFamilies: Object.freeze([...values.metricFamilies]),
    routes: Object.freeze([...values.routes]),
  });
}

/** Merges the layers (defaults < file < env < flags), validates every value once, and returns a frozen Config. */
export function resolveConfig(layers: ConfigLayers): Config {
  const { values, origins } = mergeLayers(layers);
  applyDemo(values, layers.flags ?? {});
  applyEnvToken(values, origins, layers.env ?? {});
  const config = freeze(values as unknown as Config);
  checkPairs(config, origins);
  return config;
}
