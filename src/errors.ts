/**
 * Every error metrics-proxy raises on purpose carries a stable `code`:
 * tests and callers branch on the code, never on message text.
 */
export class ProxyError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

export type ConfigErrorCode = 'MP_ERR_CONFIG' | 'MP_ERR_CONFIG_FILE';

/**
 * A flag, env var, config-file key or option value that cannot be used. The message names the
 * option and the value; `reason` is the bare explanation ("expected …"), so a layer that words
 * its messages differently (the config file) can reuse it.
 */
export class ConfigError extends ProxyError {
  readonly option: string;
  readonly reason: string | undefined;

  constructor(option: string, message: string, details: { readonly reason?: string; readonly code?: ConfigErrorCode } = {}) {
    super(details.code ?? 'MP_ERR_CONFIG', message);
    this.option = option;
    this.reason = details.reason;
  }
}

/** The --config file itself cannot be used: missing, unreadable, not YAML/JSON, or not a mapping. */
export class ConfigFileError extends ConfigError {
  constructor(file: string, message: string) {
    super(file, message, { code: 'MP_ERR_CONFIG_FILE' });
  }
}

/** The listening socket could not be bound (port in use, permission, bad address). */
export class ListenError extends ProxyError {
  constructor(message: string, cause: unknown) {
    super('MP_ERR_LISTEN', message, { cause });
  }
}

export type UpstreamTimeoutCode =
  | 'MP_ERR_CONNECT_TIMEOUT'
  | 'MP_ERR_RESPONSE_TIMEOUT'
  | 'MP_ERR_IDLE_TIMEOUT'
  | 'MP_ERR_CLIENT_IDLE';

/** An upstream request the proxy gave up on; the code tells which timer fired. */
export class UpstreamTimeoutError extends ProxyError {
  constructor(code: UpstreamTimeoutCode, ms: number) {
    super(code, `${code.slice(7).toLowerCase().replace(/_/g, ' ')} after ${ms} ms`);
  }
}
