/** Public API: embed the proxy in another program, or drive it from tests. */
export { buildApp } from './app.js';
export type { App, AppDeps, ListeningAddress } from './app.js';
export { DEFAULTS, envName, resolveConfig } from './config/config.js';
export type { Config, ConfigLayers, ProxyConfig } from './config/config.js';
export { loadConfigFile } from './config/file.js';
export type { ConfigFile } from './config/file.js';
export {
  ERROR_CODES,
  ConfigError,
  ConfigFileError,
  InvalidTypeError,
  InvalidValueError,
  ListenError,
  MissingOptionError,
  OpenApiError,
  OptionNotAllowedError,
  OptionRequiresError,
  OptionsClashError,
  OptionsExclusiveError,
  ProxyError,
  RouteOutsidePrefixError,
  RouteTemplateError,
  TokenFileError,
  UnexpectedArgumentError,
  UnknownOptionError,
  UpstreamTimeoutError,
} from './errors.js';
export type { ConfigErrorCode, ErrorCode, UpstreamFailureKind, UpstreamTimeoutCode } from './errors.js';
export { createLogger } from './logger.js';
export { withAccessLog } from './metrics/access-log.js';
export { OTHER_METHOD, STANDARD_METHODS, methodLabel } from './metrics/recorder.js';
export { main } from './cli/main.js';
export { startDemoUpstream } from './cli/demo.js';
export type { DemoUpstream } from './cli/demo.js';
