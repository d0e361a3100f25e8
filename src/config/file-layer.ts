/**
 * The config-file layer of resolveConfig: every key known, every value of a usable type and valid
 * by the option's own parser. Errors read `<file>: <key>: <reason>, got <value>` and name
 * `<file>: <key>` in `option`.
 */
import { dirname, isAbsolute, resolve } from 'node:path';
import { ConfigError, InvalidTypeError, OptionNotAllowedError, UnknownOptionError, inConfigFile } from '../errors.js';
import { type ConfigFile, fileValueToRaw } from './file.js';
import { OPTIONS, VALUE_KEYS, fileKey } from './options.js';
import type { OptionKey, Origin } from './types.js';

const KEY_BY_FILE_KEY = new Map<string, OptionKey>(VALUE_KEYS.map((key) => [fileKey(key), key]));

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

function optionOf(name: string, source: string): OptionKey {
  const key = KEY_BY_FILE_KEY.get(name);
  if (key !== undefined) return key;
  const refused = REFUSED_FILE_KEYS[name];
  if (refused !== undefined) throw new OptionNotAllowedError(source, refused);
  throw new UnknownOptionError(source, suggestFileKey(name));
}

function parseFileValue(file: ConfigFile, key: OptionKey, name: string, value: unknown): unknown {
  const spec = OPTIONS[key];
  const converted = fileValueToRaw(value, spec.list === true);
  if ('reason' in converted) throw new InvalidTypeError(`${file.path}: ${name}`, value, converted.reason);
  let parsed: unknown;
  try {
    parsed = spec.parse(converted.raw, name);
  } catch (err) {
    if (err instanceof ConfigError) throw inConfigFile(err, file.path, name, value);
    throw err;
  }
  if (spec.path === true && typeof parsed === 'string' && !isAbsolute(parsed)) return resolve(dirname(file.path), parsed);
  return parsed;
}

/** Sets `values` from the file, and records each value's origin. */
export function readFileLayer(file: ConfigFile, values: Record<string, unknown>, origins: Map<OptionKey, Origin>): void {
  for (const [name, value] of Object.entries(file.values)) {
    const source = `${file.path}: ${name}`;
    const key = optionOf(name, source);
    // A key with no value counts as unset, like an empty env var.
    if (value === null) continue;
    values[key] = parseFileValue(file, key, name, value);
    origins.set(key, { layer: 'file', name: source });
  }
}
