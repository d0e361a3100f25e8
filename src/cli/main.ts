/**
 * The command line: commander → raw strings (+ the --config file) → resolveConfig
 * → app, or → `check`. The only module that touches `process` (signals);
 * `main` returns the exit code.
 */
import cluster from 'node:cluster';
import { createRequire } from 'node:module';
import { Command, CommanderError, Option } from 'commander';
import { buildApp } from '../app.js';
import { runCheck } from './check.js';
import { answerCollections, createClusterRenderer, runPrimary } from './cluster.js';
import { type Config, OPTIONS, VALUE_KEYS, defaultText, envName, fileKey, resolveConfig } from '../config/config.js';
import { CONFIG_ENV, loadConfigFile, readTokenFile } from '../config/file.js';
import { startDemoUpstream } from './demo.js';
import { ConfigError, ProxyError } from '../errors.js';
import { createLogger, resolveLogFormat } from '../logger.js';
import type { Logger } from 'pino';

export interface CliIo {
  readonly stdout: { write(text: string): unknown };
  readonly stderr: { write(text: string): unknown };
}

const PROGRAM = 'metrics-proxy';

function packageVersion(): string {
  const require = createRequire(import.meta.url);
  return (require('../../package.json') as { version: string }).version;
}

type RawFlags = NonNullable<Parameters<typeof resolveConfig>[0]['flags']>;

interface ParsedArgs {
  /** `run` serves; `check` validates, probes the upstream and exits. */
  readonly command: 'run' | 'check';
  readonly flags: RawFlags;
  /** --config, when given (METRICS_PROXY_CONFIG is looked at by the caller). */
  readonly configPath: string | undefined;
}

function parseArgs(argv: readonly string[], io: CliIo): ParsedArgs {
  let command: ParsedArgs['command'] = 'run';
  const program = new Command(PROGRAM)
    .description('Reverse proxy that records Prometheus request metrics for any HTTP/WebSocket upstream')
    .version(packageVersion(), '-V, --version')
    .helpOption('-h, --help')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      outputError: () => {}, // main() prints the one-line error itself
    });
  program.addOption(
    new Option('--config <file>', `YAML or JSON file holding any of the options below, under their config keys (env: ${CONFIG_ENV})`),
  );
  const keyByAttribute = new Map<string, (typeof VALUE_KEYS)[number]>();
  for (const key of VALUE_KEYS) {
    const spec = OPTIONS[key];
    const fallback = defaultText(key);
    const option = new Option(
      spec.flag,
      `${spec.description} (env: ${envName(key)}, config: ${fileKey(key)}${fallback === undefined ? '' : `, default: ${fallback}`})`,
    );
    if (spec.repeatable === true) option.argParser((value: string, previous?: string) => (previous === undefined ? value : `${previous},${value}`));
    keyByAttribute.set(option.attributeName(), key);
    program.addOption(option);
    // An on/off option can also be turned off from the command line, over the env and the config file.
    if (!spec.flag.includes('<')) program.addOption(new Option(spec.flag.replace(/^--/, '--no-'), `turn ${spec.flag} off`));
  }
  program.addOption(new Option('--demo', 'start a built-in demo upstream (GET /api/ping) and proxy to it'));
  program.allowExcessArguments(true);
  program.action(() => {
    const stray = program.args[0];
    if (stray !== undefined) {
      throw new ConfigError(stray, `unexpected argument: ${JSON.stringify(stray)} (every option is a --flag; see --help)`);
    }
  });
  program
    .command('check')
    .description('validate the configuration, print it resolved (secrets masked) as JSON, and probe the upstream; exit 0 ready, 1 unreachable, 2 invalid')
    .addHelpText('after', `\nTakes every option of ${PROGRAM} (see ${PROGRAM} --help), before or after "check".`)
    .allowExcessArguments(false)
    .action(() => {
      command = 'check';
    });
  program.parse([...argv], { from: 'node' });

  const flags: Record<string, string | boolean> = {};
  for (const [attribute, value] of Object.entries(program.opts())) {
    const key = keyByAttribute.get(attribute);
    if (key === undefined) continue;
    // On/off options reach resolveConfig as text, like their env var, so one parser serves all layers.
    if (typeof value === 'string' || typeof value === 'boolean') flags[key] = String(value);
  }
  if (program.opts().demo === true) flags.demo = true;
  const config: unknown = program.opts().config;
  return { command, flags: flags as RawFlags, configPath: typeof config === 'string' ? config : undefined };
}

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
    return await run(argv, env, io);
  } finally {
    // A cluster worker's IPC channel would keep it alive: let go of it so the process can exit.
    if (cluster.isWorker && process.connected) process.disconnect();
  }
}

async function run(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  io: CliIo,
): Promise<number> {
  let config: Config;
  let parsed: ParsedArgs;
  let configPath: string | undefined;
  try {
    parsed = parseArgs(argv, io);
    const fromEnv = env[CONFIG_ENV];
    configPath = parsed.configPath ?? (fromEnv === undefined || fromEnv === '' ? undefined : fromEnv);
    const file = configPath === undefined ? undefined : loadConfigFile(configPath);
    config = resolveConfig({ flags: parsed.flags, env, ...(file === undefined ? {} : { file }) });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') {
        return 0;
      }
      io.stderr.write(`${PROGRAM}: ${oneLine(err.message)}\n`);
      return 2;
    }
    if (err instanceof ProxyError) {
      io.stderr.write(`${PROGRAM}: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (parsed.command === 'check') return runCheck(config, configPath, io);

  let metricsToken = config.metricsToken;
  if (config.metricsTokenFile !== undefined) {
    try {
      metricsToken = readTokenFile(config.metricsTokenFile, '--metrics-token-file');
    } catch (err) {
      io.stderr.write(`${PROGRAM}: ${(err as Error).message}\n`);
      return 2;
    }
  }

  const tty = process.stdout.isTTY === true;
  const logger = createLogger(config.logLevel, { format: resolveLogFormat(config.logFormat, tty), colorize: tty });
  const stopOnCrash = installCrashHandlers(logger);
  if (config.workers > 1 && cluster.isPrimary) {
    const code = await runPrimary({ workers: config.workers, log: logger });
    stopOnCrash();
    await new Promise<void>((resolve) => logger.flush(() => resolve()));
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
  let app: ReturnType<typeof buildApp>;
  try {
    app = buildApp({ ...config, upstream, metricsToken }, { logger, ...(cluster.isWorker ? { render: createClusterRenderer() } : {}) });
  } catch (err) {
    return abandon(err, 2); // a bad --openapi document or route template
  }
  try {
    await app.listen();
  } catch (err) {
    return abandon(err, 1); // the port is taken, or the address is wrong
  }
  if (cluster.isWorker) answerCollections(app.registry);
  if (demo !== undefined) logger.info({ upstream: upstream.href }, 'demo upstream started: try GET /api/ping');

  const signal = await signals.promise;
  signals.dispose();
  logger.info({ signal }, 'shutting down');
  // A second signal while draining: leave at once.
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
  stopOnCrash();
  await new Promise<void>((resolve) => logger.flush(() => resolve()));
  return 0;
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
