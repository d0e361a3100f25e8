/**
 * Files the configuration names: the --config file (YAML or JSON) and the
 * metrics token file. Reading is done here, by the CLI, once at start-up;
 * turning file values into validated options is resolveConfig's job (the file
 * layer), through the same parsers as flags and env vars.
 */
import { readFileSync } from 'node:fs';
import { ConfigFileError, TokenFileError, describe } from '../errors.js';
import { parseYaml } from '../lazy-modules.js';

/** The env var that names the config file when --config is not given. */
export const CONFIG_ENV = 'METRICS_PROXY_CONFIG';

/** A config file as read: its path (as given, for messages) and its top-level mapping, not yet validated. */
export interface ConfigFile {
  readonly path: string;
  readonly values: Readonly<Record<string, unknown>>;
}

const firstLine = (err: unknown): string =>
  ((err instanceof Error ? err.message : String(err)).split('\n', 1)[0] ?? '').replace(/:\s*$/, '');

/** Parses the text of a config file; `.json` files with JSON.parse (clearer messages), anything else as YAML. */
export function parseConfigText(text: string, path: string): ConfigFile {
  const json = /\.json$/i.test(path);
  let doc: unknown;
  try {
    doc = json ? JSON.parse(text.replace(/^\uFEFF/, '')) : parseYaml(text, { logLevel: 'error' });
  } catch (err) {
    throw new ConfigFileError('MP_ERR_CONFIG_FILE_INVALID', path, `not valid ${json ? 'JSON' : 'YAML'}: ${firstLine(err)}`, err);
  }
  // An empty file (or one holding only comments) sets nothing: every option keeps its default.
  if (doc === null || doc === undefined) return Object.freeze({ path, values: Object.freeze({}) });
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ConfigFileError('MP_ERR_CONFIG_FILE_INVALID', path, `expected a mapping of option names to values at the top level, got ${describe(doc)}`);
  }
  return Object.freeze({ path, values: Object.freeze({ ...(doc as Record<string, unknown>) }) });
}

/** Reads and parses the --config file; a missing or unreadable file is one ConfigFileError naming it. */
export function loadConfigFile(path: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? firstLine(err);
    throw new ConfigFileError('MP_ERR_CONFIG_FILE_UNREADABLE', path, `cannot read the config file (${code})`, err);
  }
  return parseConfigText(text, path);
}

export type FileValue = { readonly raw: string } | { readonly reason: string };

/**
 * A file value in the raw text form the option parsers take (the env var's form): numbers and
 * booleans as written, lists joined with commas. Native YAML types are welcome; what no flag could
 * express (a mapping, a list for a single-valued option, a nested list) is a type error.
 */
export function fileValueToRaw(value: unknown, list: boolean): FileValue {
  const scalar = (v: unknown): string | undefined =>
    typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : undefined;
  if (Array.isArray(value)) {
    if (!list) return { reason: 'expected a single value, not a list' };
    const items = value.map(scalar);
    if (items.some((item) => item === undefined || item.includes(','))) {
      return { reason: 'expected a list of plain values (strings or numbers, no commas inside an item)' };
    }
    return { raw: items.join(',') };
  }
  const raw = scalar(value);
  if (raw === undefined) return { reason: list ? 'expected a list or a comma-separated string' : 'expected a string, number or boolean' };
  return { raw };
}

/** The metrics bearer token from its file (named `option` where it was set): one word, surrounding blanks and newline ignored. */
export function readTokenFile(path: string, option: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? firstLine(err);
    throw new TokenFileError('MP_ERR_TOKEN_FILE_UNREADABLE', option, path, code, err);
  }
  const token = text.trim();
  if (token === '' || /\s/.test(token)) {
    throw new TokenFileError('MP_ERR_TOKEN_FILE_INVALID', option, path, 'expected one non-empty word');
  }
  return token;
}
