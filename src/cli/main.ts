/**
 * The command line: argv (args.ts) → raw strings (+ the --config file) → resolveConfig
 * → app, or → `check`. The only module that touches `process` (signals);
 * `main` returns the exit code.
 */
import cluster from 'node:cluster';
import { CommanderError } from 'commander';
import type { Logger } from 'pino';
import { type App, buildApp } from '../app.js';
import { type CliIo, PROGRAM, type ParsedArgs, parseArgs } from './args.js';
import { runCheck } from './check.js';
import { answerCollections, createClusterRenderer, runPrimary } from './cluster.js';
import { type Config, type ProxyConfig, type Settings, resolveLayers } from '../config/config.js';
import { CONFIG_ENV, loadConfigFile } from '../config/file.js';
import { type DemoUpstream, startDemoUpstream } from './demo.js';
import { ProxyError } from '../errors.js';
import { createLogger, resolveLogFormat } from '../logger.js';

export type { CliIo } from './args.js';

function oneLine(text: string): string {
  return text.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ').trim();
}

function waitForSignal(): { promise: Promise<NodeJS.Signals>; dispose(): void } {
  let onSignal: (signal: NodeJS.Signals) => void = () => {};
  const promise = new Promise<NodeJS.Signals>((resolve) => {
    onSignal = resolve;
  });
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  return {
    promise,
    dispose() {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
    },
  };
}

export async function main(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  io: CliIo = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  try {
    const loaded = loadConfiguration(argv, env, io);
    if (typeof loaded === 'number') return loaded;
    if (loaded.command === 'check') return await runCheck(loaded.settings, loaded.configPath, io);
    return await serve(loaded.config, io);
  } finally {
    // A cluster worker's IPC channel would keep it alive: let go of it so the process can exit.
    if (cluster.isWorker && process.connected) process.disconnect();
  }
}

interface Loaded {
  readonly command: ParsedArgs['command'];
  readonly configPath: string | undefined;
  /** As set, for `check` to show. */
  readonly settings: Settings;
  /** What the proxy runs on: the token file read. */
  readonly config: Config;
}

const QUIET_EXITS = new Set(['commander.helpDisplayed', 'commander.version', 'commander.help']);

/** argv, the environment and the config file → the configuration; or the exit code when there is nothing to run. */
function loadConfiguration(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, io: CliIo): Loaded | number {
  try {
    const parsed = parseArgs(argv, io);
    const fromEnv = env[CONFIG_ENV];
    const configPath = parsed.configPath ?? (fromEnv === undefined || fromEnv === '' ? undefined : fromEnv);
    const file = configPath === undefined ? undefined : loadConfigFile(configPath);
    const { settings, config } = resolveLayers({ flags: parsed.flags, env, ...(file === undefined ? {} : { file }) });
    return { command: parsed.command, configPath, settings, config };
  } catch (err) {
    if (err instanceof CommanderError) {
      if (QUIET_EXITS.has(err.code)) return 0;
      io.stderr.write(`${PROGRAM}: ${oneLine(err.message)}\n`);
      return 2;
    }
    if (!(err instanceof ProxyError)) throw err;
    io.stderr.write(`${PROGRAM}: ${err.message}\n`);
    return 2;
  }
}

const flushed = (logger: Logger): Promise<void> => new Promise<void>((resolve) => logger.flush(() => resolve()));

/** Runs the proxy (or, with --workers, the cluster primary) until a signal; returns the exit code. */
async function serve(config: Config, io: CliIo): Promise<number> {
  const tty = process.stdout.isTTY === true;
  const logger = createLogger(config.logLevel, { format: resolveLogFormat(config.logFormat, tty), colorize: tty });
  const stopOnCrash = installCrashHandlers(logger);
  if (config.workers > 1 && cluster.isPrimary) {
    const code = await runPrimary({ workers: config.workers, log: logger });
    stopOnCrash();
    await flushed(logger);
    return code;
  }
  const demo = config.demo ? await startDemoUpstream() : undefined;
  const upstream = demo?.url ?? config.upstream;
  if (upstream === undefined) throw new Error('resolveConfig guarantees an upstream unless --demo');
  const signals = waitForSignal();
  /** A start-up failure: undo what was started, then one line for ours (exit `code`), a rethrow for bugs. */
  const abandon = async (err: unknown, code: number): Promise<number> => {
    signals.dispose();
    stopOnCrash();
    await demo?.close();
    if (!(err instanceof ProxyError)) throw err;
    io.stderr.write(`${PROGRAM}: ${err.message}\n`);
    return code;
  };
  const app = await startApp({ ...config, upstream }, logger, abandon);
  if (typeof app === 'number') return app;
  if (demo !== undefined) logger.info({ upstream: upstream.href }, 'demo upstream started: try GET /api/ping');
  await stopOnSignal(await signals.promise, { app, demo, logger, signals });
  stopOnCrash();
  await flushed(logger);
  return 0;
}

/** Builds and binds the app; on failure, what `abandon` returns (2 for a bad document or template, 1 for a port or address). */
async function startApp(
  config: ProxyConfig,
  logger: Logger,
  abandon: (err: unknown, code: number) => Promise<number>,
): Promise<App | number> {
  let app: App;
  try {
    const render = cluster.isWorker ? createClusterRenderer({ classicBuckets: config.protobufClassicBuckets }) : undefined;
    app = buildApp(config, { logger, ...(render === undefined ? {} : { render }) });
  } catch (err) {
    return abandon(err, 2); // a bad --openapi document or route template
  }
  try {
    await app.listen();
  } catch (err) {
    return abandon(err, 1); // the port is taken, or the address is wrong
  }
  if (cluster.isWorker) answerCollections(app.registry);
  return app;
}

interface Running {
  readonly app: App;
  readonly demo: DemoUpstream | undefined;
  readonly logger: Logger;
  readonly signals: { dispose(): void };
}

/** The graceful drain after the first signal; a second one while draining leaves at once. */
async function stopOnSignal(signal: NodeJS.Signals, { app, demo, logger, signals }: Running): Promise<void> {
  signals.dispose();
  logger.info({ signal }, 'shutting down');
  const forceExit = (second: NodeJS.Signals): void => {
    logger.warn({ signal: second }, 'second signal: exiting at once');
    logger.flush();
    process.exit(1);
  };
  process.once('SIGTERM', forceExit);
  process.once('SIGINT', forceExit);
  await app.shutdown();
  await demo?.close();
  logger.info('stopped');
  process.off('SIGTERM', forceExit);
  process.off('SIGINT', forceExit);
}

/**
 * A bug that escapes every handler leaves the process in an unknown state: log it with its stack at
 * `fatal` and exit non-zero so the orchestrator restarts a clean process. Returns the uninstaller.
 */
function installCrashHandlers(logger: Logger): () => void {
  const onCrash = (err: unknown, origin: string): void => {
    logger.fatal({ err, origin }, 'uncaught exception: exiting');
    logger.flush();
    process.exit(70);
  };
  const onRejection = (reason: unknown): void => onCrash(reason, 'unhandledRejection');
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onRejection);
  return () => {
    process.off('uncaughtException', onCrash);
    process.off('unhandledRejection', onRejection);
  };
}
