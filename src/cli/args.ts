/**
 * The command line's grammar: one commander program built from the option table (flags, help text,
 * env names, config keys), parsed into raw strings for resolveConfig. No `process` here: argv and
 * the output streams are passed in.
 */
import { createRequire } from 'node:module';
import { Command, Option } from 'commander';
import { type ConfigLayers, type OptionKey, OPTIONS, VALUE_KEYS, defaultText, envName, fileKey } from '../config/config.js';
import { CONFIG_ENV } from '../config/file.js';
import { UnexpectedArgumentError } from '../errors.js';

export const PROGRAM = 'metrics-proxy';

export interface CliIo {
  readonly stdout: { write(text: string): unknown };
  readonly stderr: { write(text: string): unknown };
}

type RawFlags = NonNullable<ConfigLayers['flags']>;

export interface ParsedArgs {
  /** `run` serves; `check` validates, probes the upstream and exits. */
  readonly command: 'run' | 'check';
  readonly flags: RawFlags;
  /** --config, when given (METRICS_PROXY_CONFIG is looked at by the caller). */
  readonly configPath: string | undefined;
}

function packageVersion(): string {
  const require = createRequire(import.meta.url);
  return (require('../../package.json') as { version: string }).version;
}

function createProgram(io: CliIo): Command {
  return new Command(PROGRAM)
    .description('Reverse proxy that records Prometheus request metrics for any HTTP/WebSocket upstream')
    .version(packageVersion(), '-V, --version')
    .helpOption('-h, --help')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      outputError: () => {}, // main() prints the one-line error itself
    });
}

/** One flag per option of the table (and `--no-…` for on/off ones); returns which option each commander attribute is. */
function addTableOptions(program: Command): Map<string, OptionKey> {
  const keyByAttribute = new Map<string, OptionKey>();
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
  return keyByAttribute;
}

/** Commander's values as resolveConfig takes them: text, on/off options too, so one parser serves every layer. */
function rawFlags(opts: Record<string, unknown>, keyByAttribute: ReadonlyMap<string, OptionKey>): RawFlags {
  const flags: { -readonly [K in keyof RawFlags]: RawFlags[K] } = {};
  for (const [attribute, value] of Object.entries(opts)) {
    const key = keyByAttribute.get(attribute);
    if (key !== undefined && (typeof value === 'string' || typeof value === 'boolean')) flags[key] = String(value);
  }
  if (opts.demo === true) flags.demo = true;
  return flags;
}

/** argv → the command and the raw flags; throws a CommanderError (help, version, a bad flag) or an UnexpectedArgumentError. */
export function parseArgs(argv: readonly string[], io: CliIo): ParsedArgs {
  let command: ParsedArgs['command'] = 'run';
  const program = createProgram(io);
  program.addOption(
    new Option('--config <file>', `YAML or JSON file holding any of the options below, under their config keys (env: ${CONFIG_ENV})`),
  );
  const keyByAttribute = addTableOptions(program);
  program.addOption(new Option('--demo', 'start a built-in demo upstream (GET /api/ping) and proxy to it'));
  program.allowExcessArguments(true);
  program.action(() => {
    const stray = program.args[0];
    if (stray !== undefined) throw new UnexpectedArgumentError(stray);
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
  const opts = program.opts<Record<string, unknown>>();
  return { command, flags: rawFlags(opts, keyByAttribute), configPath: typeof opts.config === 'string' ? opts.config : undefined };
}
