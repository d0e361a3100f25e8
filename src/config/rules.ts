/**
 * The rules across options, checked once every layer is in: --demo against --upstream, the token
 * from the environment against a token file, and pairs of values that must differ or go together.
 * Each error names the options where they were set, in the words of that layer.
 */
import {
  MissingOptionError,
  OptionRequiresError,
  OptionsClashError,
  OptionsExclusiveError,
} from '../errors.js';
import { METRICS_TOKEN_ENV } from './defaults.js';
import { envName, fileKey, flagName } from './options.js';
import type { ConfigLayers, OptionKey, Origin, Settings } from './types.js';

type Values = Record<string, unknown>;
type Origins = ReadonlyMap<OptionKey, Origin>;

/** Where a value was set (`--port`, `METRICS_PROXY_PORT`, `proxy.yaml: port`); the flag when it was not. */
export function nameOf(origins: Origins, key: OptionKey): string {
  return origins.get(key)?.name ?? `--${flagName(key)}`;
}

/** Another option in the words of the layer `key` was set in: `--metrics-port`, `METRICS_PROXY_METRICS_PORT` or `metricsPort`. */
function nameBeside(origins: Origins, key: OptionKey, other: OptionKey): string {
  const layer = origins.get(key)?.layer;
  if (origins.has(other) || layer === undefined || layer === 'flag') return nameOf(origins, other);
  return layer === 'env' ? envName(other) : fileKey(other);
}

/** --demo stands in for an upstream (and, being a flag, beats one from the environment or the file). */
export function applyDemo(values: Values, flags: NonNullable<ConfigLayers['flags']>): void {
  const demo = flags.demo === true;
  values.demo = demo;
  if (demo) {
    if (flags.upstream !== undefined) throw new OptionsExclusiveError('--upstream', '--demo');
    values.upstream = undefined;
  } else if (values.upstream === undefined) {
    throw new MissingOptionError(
      '--upstream',
      `--upstream <url> (or ${envName('upstream')}, or upstream in the config file) is required unless --demo is given`,
    );
  }
}

/** METRICS_PROXY_METRICS_TOKEN, which has no flag and no config key: never beside a token file. */
export function applyEnvToken(values: Values, origins: Origins, env: NonNullable<ConfigLayers['env']>): void {
  const token = env[METRICS_TOKEN_ENV];
  if (token === undefined || token.trim() === '') return;
  if (values.metricsTokenFile !== undefined) throw new OptionsExclusiveError(nameOf(origins, 'metricsTokenFile'), METRICS_TOKEN_ENV);
  values.metricsToken = token.trim();
}

/** Pairs of options: values that must differ, and an option that means nothing without another. */
export function checkPairs(settings: Settings, origins: Origins): void {
  const clash = (key: OptionKey, value: number | string, other: OptionKey): OptionsClashError =>
    new OptionsClashError(nameOf(origins, key), value, nameOf(origins, other), origins.get(key)?.layer === 'file');
  if (settings.metricsPort !== undefined && settings.metricsPort !== 0 && settings.metricsPort === settings.port) {
    throw clash('metricsPort', settings.metricsPort, 'port');
  }
  if (settings.metricsPath === settings.apiPrefix) throw clash('metricsPath', settings.metricsPath, 'apiPrefix');
  if (settings.metricsHost !== undefined && settings.metricsPort === undefined) {
    throw new OptionRequiresError(
      nameOf(origins, 'metricsHost'),
      settings.metricsHost,
      nameBeside(origins, 'metricsHost', 'metricsPort'),
      'without it there is no separate metrics listener to bind',
      origins.get('metricsHost')?.layer === 'file',
    );
  }
}
