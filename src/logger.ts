/** pino, writing JSON lines to stdout through a bounded asynchronous buffer. */
import { type DestinationStream, type Logger, pino } from 'pino';
import type { LogLevel } from './parsers.js';

/** A stalled stdout must not grow memory without bound: past this, lines are dropped. */
const MAX_BUFFERED_LOG_BYTES = 8 * 1024 * 1024;

export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  return pino(
    { level, base: { name: 'metrics-proxy' }, timestamp: pino.stdTimeFunctions.isoTime },
    destination ?? pino.destination({ dest: 1, sync: false, maxLength: MAX_BUFFERED_LOG_BYTES }),
  );
}
