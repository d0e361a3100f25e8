/**
 * Every error metrics-proxy raises on purpose, each with its own stable `code`, in one file (as
 * fastify's lib/errors.js and undici's lib/core/errors.js keep theirs). Callers and tests branch on
 * `code` and read the fields; nothing parses message text. Messages are one line that names the
 * option and the value. A bottom module: it imports nothing.
 */

/** The table: every code, what raises it. */
export const ERROR_CODES = {
  MP_ERR_INVALID_VALUE: 'an option value its parser refuses (flag, env var or config-file key)',
  MP_ERR_INVALID_TYPE: 'a config-file value of a type no flag could express (a mapping, a list for a single value)',
  MP_ERR_UNKNOWN_OPTION: 'a config-file key that names no option',
  MP_ERR_OPTION_NOT_ALLOWED: 'a config-file key that is refused there (the token itself, demo, config)',
  MP_ERR_MISSING_OPTION: 'a required option is not set (--upstream without --demo)',
  MP_ERR_OPTIONS_EXCLUSIVE: 'two options that cannot be used together',
  MP_ERR_OPTIONS_CLASH: 'two options whose values must differ',
  MP_ERR_OPTION_REQUIRES: 'an option that is only meaningful with another one, which is not set',
  MP_ERR_UNEXPECTED_ARGUMENT: 'a command-line argument that is not an option',
  MP_ERR_CONFIG_FILE_UNREADABLE: 'the --config file cannot be read',
  MP_ERR_CONFIG_FILE_INVALID: 'the --config file is not YAML/JSON, or not a mapping',
  MP_ERR_TOKEN_FILE_UNREADABLE: 'the --metrics-token-file cannot be read',
  MP_ERR_TOKEN_FILE_INVALID: 'the --metrics-token-file does not hold one word',
  MP_ERR_OPENAPI_UNREADABLE: 'the --openapi document cannot be read',
  MP_ERR_OPENAPI_INVALID: 'the --openapi document is not OpenAPI 3, or one of its paths is not a route template',
  MP_ERR_ROUTE_TEMPLATE: 'a route template that cannot be parsed',
  MP_ERR_ROUTE_OUTSIDE_PREFIX: 'a route template outside the API prefix',
  MP_ERR_LISTEN: 'a listening socket cannot be bound (port in use, permission, bad address)',
  MP_ERR_CONNECT_TIMEOUT: 'the upstream connect timer fired',
  MP_ERR_RESPONSE_TIMEOUT: 'the upstream response-headers timer fired',
  MP_ERR_IDLE_TIMEOUT: 'no bytes moved for the idle timeout, the upstream being the one silent',
  MP_ERR_CLIENT_IDLE: 'no bytes moved for the idle timeout, the client being the one silent',
  MP_ERR_METRICS_UNAVAILABLE: 'under --workers, a worker or the primary did not answer a scrape in time (answered 503)',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class ProxyError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

export type ConfigErrorCode = Exclude<ErrorCode, 'MP_ERR_LISTEN' | 'MP_ERR_METRICS_UNAVAILABLE' | UpstreamTimeoutCode>;

export interface ConfigErrorFields {
  readonly code: ConfigErrorCode;
  /** The value as given: a flag's text, a config file's value. Never a secret. */
  readonly value?: unknown;
  /** The bare explanation ("expected …"), which a layer that words messages its own way can reuse. */
  readonly reason: string;
  /** The other option of a pair (exclusive, clashing, required). */
  readonly other?: string;
  readonly cause?: unknown;
}

/**
 * A configuration problem. `option` says where: `--port`, `METRICS_PROXY_PORT`, `<file>: <key>`, or a
 * file's path; `value` and `reason` what and why.
 */
export class ConfigError extends ProxyError {
  declare readonly code: ConfigErrorCode;
  readonly option: string;
  readonly value: unknown;
  readonly reason: string;
  readonly other: string | undefined;

  constructor(option: string, message: string, fields: ConfigErrorFields) {
    super(fields.code, message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.option = option;
    this.value = fields.value;
    this.reason = fields.reason;
    this.other = fields.other;
  }
}

/** A value as a config-file message shows it: JSON for scalars and lists (shortened), a word for anything else. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'object' && !Array.isArray(value)) return value instanceof Uint8Array ? 'binary data' : 'a mapping';
  const text = JSON.stringify(value) ?? typeof value;
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** `invalid value for --port: "abc" (reason)`, or as a config file says it: `proxy.yaml: port: reason, got "abc"`. */
function valueMessage(option: string, value: unknown, reason: string, fromFile: boolean): string {
  if (fromFile) return `${option}: ${reason}, got ${describe(value)}`;
  return `invalid value for ${option}: ${JSON.stringify(typeof value === 'string' ? value : describe(value))} (${reason})`;
}

/**
 * A parser's error as the config file reports it, with the same code and reason: `<file>: <key>:
 * <reason>, got <value>`, with `<file>: <key>` as the option and the file's value.
 */
export function inConfigFile(err: ConfigError, file: string, key: string, value: unknown): ConfigError {
  const option = `${file}: ${key}`;
  return new ConfigError(option, valueMessage(option, value, err.reason, true), { code: err.code, value, reason: err.reason, other: err.other, cause: err });
}

export class InvalidValueError extends ConfigError {
  constructor(option: string, value: unknown, reason: string, fromFile = false) {
    super(option, valueMessage(option, value, reason, fromFile), { code: 'MP_ERR_INVALID_VALUE', value, reason });
  }
}

export class InvalidTypeError extends ConfigError {
  constructor(option: string, value: unknown, reason: string) {
    super(option, valueMessage(option, value, reason, true), { code: 'MP_ERR_INVALID_TYPE', value, reason });
  }
}

export class UnknownOptionError extends ConfigError {
  /** The key that was probably meant, if any. */
  readonly suggestion: string | undefined;

  constructor(option: string, suggestion: string | undefined) {
    const reason = `unknown option${suggestion === undefined ? '' : ` (did you mean ${suggestion}?)`}; the keys are the flag names in camelCase, see --help`;
    super(option, `${option}: ${reason}`, { code: 'MP_ERR_UNKNOWN_OPTION', reason });
    this.suggestion = suggestion;
  }
}

/** The value is deliberately not kept: the refused key may be the token itself. */
export class OptionNotAllowedError extends ConfigError {
  constructor(option: string, reason: string) {
    super(option, `${option}: ${reason}`, { code: 'MP_ERR_OPTION_NOT_ALLOWED', reason });
  }
}

export class MissingOptionError extends ConfigError {
  constructor(option: string, reason: string) {
    super(option, `missing option: ${reason}`, { code: 'MP_ERR_MISSING_OPTION', reason });
  }
}

export class OptionsExclusiveError extends ConfigError {
  constructor(option: string, other: string) {
    const reason = `cannot be used together with ${other}`;
    super(option, `invalid options: ${option} and ${other} cannot be used together`, { code: 'MP_ERR_OPTIONS_EXCLUSIVE', reason, other });
  }
}

/** Two options whose values must differ (`--metrics-port` and `--port`), worded like the layer `option` came from. */
export class OptionsClashError extends ConfigError {
  constructor(option: string, value: unknown, other: string, fromFile: boolean) {
    const reason = `must differ from ${other}`;
    super(option, valueMessage(option, value, reason, fromFile), { code: 'MP_ERR_OPTIONS_CLASH', value, reason, other });
  }
}

/** An option set without the one it belongs to (`--metrics-host` without `--metrics-port`). */
export class OptionRequiresError extends ConfigError {
  constructor(option: string, value: unknown, other: string, why: string, fromFile: boolean) {
    const reason = `requires ${other}; ${why}`;
    super(option, valueMessage(option, value, reason, fromFile), { code: 'MP_ERR_OPTION_REQUIRES', value, reason, other });
  }
}

export class UnexpectedArgumentError extends ConfigError {
  constructor(argument: string) {
    const reason = 'every option is a --flag; see --help';
    super(argument, `unexpected argument: ${JSON.stringify(argument)} (${reason})`, { code: 'MP_ERR_UNEXPECTED_ARGUMENT', value: argument, reason });
  }
}

/** The --config file itself cannot be used. `option` and `value` are its path. */
export class ConfigFileError extends ConfigError {
  constructor(code: 'MP_ERR_CONFIG_FILE_UNREADABLE' | 'MP_ERR_CONFIG_FILE_INVALID', path: string, reason: string, cause?: unknown) {
    super(path, `${path}: ${reason}`, { code, value: path, reason, cause });
  }
}

/** The metrics token file cannot be used. `option` names where it was set, `value` is its path (never its content). */
export class TokenFileError extends ConfigError {
  constructor(code: 'MP_ERR_TOKEN_FILE_UNREADABLE' | 'MP_ERR_TOKEN_FILE_INVALID', option: string, path: string, reason: string, cause?: unknown) {
    const message =
      code === 'MP_ERR_TOKEN_FILE_UNREADABLE'
        ? `cannot read ${option} ${JSON.stringify(path)}: ${reason}`
        : `invalid token in ${option} ${JSON.stringify(path)}: ${reason}`;
    super(option, message, { code, value: path, reason, cause });
  }
}

/** The --openapi document cannot be used. `value` is its file; `path` the document's path key at fault, if one is. */
export class OpenApiError extends ConfigError {
  readonly path: string | undefined;

  constructor(code: 'MP_ERR_OPENAPI_UNREADABLE' | 'MP_ERR_OPENAPI_INVALID', file: string, reason: string, details: { path?: string; cause?: unknown } = {}) {
    super('--openapi', `invalid --openapi file ${JSON.stringify(file)}: ${reason}`, { code, value: file, reason, cause: details.cause });
    this.path = details.path;
  }
}

export class RouteTemplateError extends ConfigError {
  constructor(option: string, template: string, reason: string) {
    super(option, `invalid route template for ${option}: ${JSON.stringify(template)} (${reason})`, { code: 'MP_ERR_ROUTE_TEMPLATE', value: template, reason });
  }
}

export class RouteOutsidePrefixError extends ConfigError {
  constructor(option: string, template: string, apiPrefix: string) {
    const reason = `outside the API prefix ${apiPrefix}`;
    super(option, `route template ${JSON.stringify(template)} for ${option} is ${reason}`, { code: 'MP_ERR_ROUTE_OUTSIDE_PREFIX', value: template, reason });
  }
}

/**
 * The metrics cannot be had right now, though nothing is broken: under --workers, a worker or the
 * primary did not answer in time. The metrics endpoint answers 503 (a scraper retries next interval)
 * instead of 500, and never a partial sum, which would look like a counter reset.
 */
export class MetricsUnavailableError extends ProxyError {
  constructor(message: string) {
    super('MP_ERR_METRICS_UNAVAILABLE', message);
  }
}

/** The listening socket could not be bound (port in use, permission, bad address). */
export class ListenError extends ProxyError {
  constructor(message: string, cause: unknown) {
    super('MP_ERR_LISTEN', message, { cause });
  }
}

export type UpstreamTimeoutCode = 'MP_ERR_CONNECT_TIMEOUT' | 'MP_ERR_RESPONSE_TIMEOUT' | 'MP_ERR_IDLE_TIMEOUT' | 'MP_ERR_CLIENT_IDLE';

/** An upstream request the proxy gave up on; the code tells which timer fired. */
export class UpstreamTimeoutError extends ProxyError {
  declare readonly code: UpstreamTimeoutCode;
  readonly timeoutMs: number;

  constructor(code: UpstreamTimeoutCode, ms: number) {
    super(code, `${code.slice(7).toLowerCase().replace(/_/g, ' ')} after ${ms} ms`);
    this.timeoutMs = ms;
  }
}

/**
 * How reaching or reading the upstream failed: the `error.type` label of the metrics and the key of
 * the proxy's 502/504 mapping (src/proxy/upstream-errors.ts). Here, at the bottom, so the metrics
 * layer can name it without importing the proxy layer above it.
 */
export type UpstreamFailureKind =
  | 'connect_refused'
  | 'connect_timeout'
  | 'response_timeout'
  | 'idle_timeout'
  | 'reset'
  | 'dns'
  | 'tls'
  | 'protocol'
  | 'unknown';
