/** Public API: embed the proxy in another program, or drive it from tests. */
export { buildApp } from './app.js';
export type { App, AppDeps, ListeningAddress } from './app.js';
export { DEFAULTS, envName, resolveConfig } from './config.js';
export type { Config, ConfigLayers, ProxyConfig } from './config.js';
export { loadConfigFile } from './config-file.js';
export type { ConfigFile } from './config-file.js';
export { ConfigError, ConfigFileError, ListenError, ProxyError } from './errors.js';
export { createLogger } from './logger.js';
export { withAccessLog } from './access-log.js';
export { OTHER_METHOD, STANDARD_METHODS, methodLabel } from './metrics.js';
export { main } from './cli.js';
export { startDemoUpstream } from './demo.js';
export type { DemoUpstream } from './demo.js';
