/**
 * Configuration: one table of options (options.ts) drives the CLI, the help text, the env var
 * names, the config-file keys and the resolved, frozen Config. Precedence: defaults < config file
 * < env < flags. This module resolves; it also re-exports the layer's public names.
 */
import { readTokenFile } from './file.js';
import { readFileLayer } from './file-layer.js';
import { DEFAULTS } from './defaults.js';
import { OPTIONS, VALUE_KEYS, envName, flagName } from './options.js';
import { applyDemo, applyEnvToken, checkPairs, nameOf } from './rules.js';
import type { Config, ConfigLayers, OptionKey, Origin, Settings } from './types.js';

export { DEFAULTS, METRICS_TOKEN_ENV, defaultText } from './defaults.js';
export { OPTIONS, VALUE_KEYS, envName, fileKey, flagName } from './options.js';
export type { OptionSpec } from './options.js';
export type { Config, ConfigLayers, OptionKey, ProxyConfig, Settings } from './types.js';

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

/** Frozen, lists included (a Config made from these Settings shares the frozen lists). */
function freeze(values: Settings): Settings {
  return Object.freeze({
    ...values,
    bucketsMs: Object.freeze([...values.bucketsMs]),
    durationBucketsSeconds: Object.freeze([...values.durationBucketsSeconds]),
    metricFamilies: Object.freeze([...values.metricFamilies]),
    routes: Object.freeze([...values.routes]),
  });
}

/** The layers merged and every rule checked: the Settings, and where each value came from. */
function settle(layers: ConfigLayers): { settings: Settings; origins: ReadonlyMap<OptionKey, Origin> } {
  const { values, origins } = mergeLayers(layers);
  applyDemo(values, layers.flags ?? {});
  applyEnvToken(values, origins, layers.env ?? {});
  const settings = freeze(values as unknown as Settings);
  checkPairs(settings, origins);
  return { settings, origins };
}

/** Every option as set, validated and frozen, no file it names read yet: what `check` shows. Pure. */
export function resolveSettings(layers: ConfigLayers): Settings {
  return settle(layers).settings;
}

/**
 * Both views of one resolution: the Settings as the user set them and the Config the proxy runs
 * on, for which the token file has been read (the one file read here).
 */
export function resolveLayers(layers: ConfigLayers): { readonly settings: Settings; readonly config: Config } {
  const { settings, origins } = settle(layers);
  const { metricsTokenFile, ...rest } = settings;
  const metricsToken =
    metricsTokenFile === undefined ? settings.metricsToken : readTokenFile(metricsTokenFile, nameOf(origins, 'metricsTokenFile'));
  return { settings, config: Object.freeze({ ...rest, metricsToken }) };
}

/** Merges the layers (defaults < file < env < flags), validates every value once, reads the token file, and returns a frozen Config. */
export function resolveConfig(layers: ConfigLayers): Config {
  return resolveLayers(layers).config;
}
