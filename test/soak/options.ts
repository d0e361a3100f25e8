/** Command-line options of the soak run: `--minutes N` (fractional allowed) and `--concurrency C`. */
import { parseArgs } from 'node:util';

export interface SoakOptions {
  readonly minutes: number;
  readonly concurrency: number;
}

export const USAGE = `usage: npm run soak -- [--minutes N] [--concurrency C]

  --minutes N       total run time including warm-up; fractional allowed (default 10)
  --concurrency C   operations in flight at once (default 32)

Needs a built dist/ (npm run build). Exits 1 if memory, fds or event-loop delay grow
past their limits after warm-up, or if /metrics disagrees with what was sent.`;

export class UsageError extends Error {}

export function parseSoakOptions(argv: readonly string[]): SoakOptions | 'help' {
  let values: { minutes?: string; concurrency?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: { minutes: { type: 'string' }, concurrency: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help === true) return 'help';
  const minutes = values.minutes === undefined ? 10 : Number(values.minutes);
  if (!Number.isFinite(minutes) || minutes <= 0 || minutes > 7 * 24 * 60) {
    throw new UsageError(`invalid value for --minutes: ${JSON.stringify(values.minutes)} (expected a positive number)`);
  }
  const concurrency = values.concurrency === undefined ? 32 : Number(values.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 4096) {
    throw new UsageError(`invalid value for --concurrency: ${JSON.stringify(values.concurrency)} (expected an integer from 1 to 4096)`);
  }
  return { minutes, concurrency };
}
