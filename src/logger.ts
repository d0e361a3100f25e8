/**
 * pino, writing to stdout through a bounded asynchronous buffer: JSON lines, or
 * human-readable lines formatted by pino-pretty in this thread (its factory, not
 * its worker-thread transport), then through the same bounded buffer.
 */
import { createRequire } from 'node:module';
import { type DestinationStream, type Logger, pino } from 'pino';
import type PinoPretty from 'pino-pretty';

// pino-pretty (and its dependencies) only load when pretty output is asked for: production logs are JSON.
const require = createRequire(import.meta.url);

/** A stalled stdout must not grow memory without bound: past this, lines are dropped. */
const MAX_BUFFERED_LOG_BYTES = 8 * 1024 * 1024;

/** pino's levels, and `silent`. Here, at the bottom, so the config layer above can validate against them. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** `auto` = human-readable when stdout is a terminal, else JSON; decided at start-up by the CLI. */
export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;
export type LogFormatSetting = (typeof LOG_FORMATS)[number];

export type LogFormat = Exclude<LogFormatSetting, 'auto'>;

export interface LoggerOptions {
  /** Default `json`. */
  readonly format?: LogFormat;
  /** Where lines go; default stdout through a bounded asynchronous buffer. */
  readonly destination?: DestinationStream;
  /** Pretty format only: ANSI colours (only sensible on a terminal). Default off. */
  readonly colorize?: boolean;
}

/** `--log-format auto`: pretty for a person at a terminal, JSON for everything else (pipes, files, collectors). */
export function resolveLogFormat(setting: LogFormatSetting, stdoutIsTTY: boolean): LogFormat {
  if (setting === 'auto') return stdoutIsTTY ? 'pretty' : 'json';
  return setting;
}

function prettyStream(out: DestinationStream, colorize: boolean): DestinationStream {
  const { prettyFactory } = require('pino-pretty') as typeof PinoPretty;
  const format = prettyFactory({
    colorize,
    singleLine: true,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname,name',
  });
  const flushable = out as DestinationStream & { flush?: (cb: (err?: Error) => void) => void };
  return {
    write: (line: string) => out.write(format(line)),
    // logger.flush() reaches the buffer behind the formatter.
    flush: (cb: (err?: Error) => void) => (flushable.flush === undefined ? cb() : flushable.flush(cb)),
  } as DestinationStream;
}

/**
 * A logger at `level`. The second argument may also be a bare destination stream (the
 * earlier signature), which means JSON to that stream.
 */
export function createLogger(level: LogLevel, options: LoggerOptions | DestinationStream = {}): Logger {
  const opts: LoggerOptions = 'write' in options ? { destination: options } : options;
  const out = opts.destination ?? pino.destination({ dest: 1, sync: false, maxLength: MAX_BUFFERED_LOG_BYTES });
  const destination = opts.format === 'pretty' ? prettyStream(out, opts.colorize === true) : out;
  return pino({ level, base: { name: 'metrics-proxy' }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}
