/** Command-line options of `npm run bench`. */
import { parseArgs } from 'node:util';
import { SCENARIO_IDS, type ScenarioId } from './scenarios.js';
import { DEFAULT_TARGETS, TARGET_IDS, type TargetId } from './targets.js';

export type UpstreamChoice = 'auto' | 'node' | 'nginx';

export interface BenchOptions {
  readonly quick: boolean;
  readonly rounds: number;
  /** Seconds of measurement per cell. */
  readonly durationS: number;
  /** Seconds of warm-up per cell, on the same fresh process, before measuring. */
  readonly warmUpS: number;
  /** Offered rate of the fixed-rate scenario, requests/s. */
  readonly rate: number;
  readonly upstream: UpstreamChoice;
  readonly targets: readonly TargetId[];
  readonly scenarios: readonly ScenarioId[];
  /** False with --no-nginx: run as if nginx were not installed. */
  readonly nginx: boolean;
  /** Skip the one-off resource measurements (idle connections, 1 GiB streaming). */
  readonly resources: boolean;
  readonly idleConnections: number;
  readonly streamBytes: number;
}

export const USAGE = `usage: npm run bench -- [--quick] [--rounds N] [--duration S] [--rate R]
                        [--upstream auto|node|nginx] [--targets a,b,...] [--scenarios a,b,...]
                        [--no-nginx] [--no-resources]

  --quick            smoke check: 1 round, 2 s cells, 256 MiB streamed instead of 1 GiB
  --rounds N         interleaved rounds; each figure is the median over rounds (default 3)
  --duration S       seconds measured per cell, after a warm-up of min(0.5, S/4) s (default 4)
  --rate R           offered rate of the fixed-rate latency scenario, req/s (default 2000)
  --upstream U       HTTP upstream: nginx when installed (auto, the default), or the Node one
  --targets LIST     of ${TARGET_IDS.join(', ')}
                     (default ${DEFAULT_TARGETS.join(',')}; mp-nometrics is a diagnostic)
  --scenarios LIST   of ${SCENARIO_IDS.join(', ')} (default all)
  --no-nginx         run as if nginx were not installed (Node upstream, nginx column n/a)
  --no-resources     skip the idle-connections and streaming measurements

Needs a built dist/ (npm run build). Results: a markdown report on stdout and
bench-results/bench-<timestamp>.json.`;

export class UsageError extends Error {}

function list<T extends string>(raw: string | undefined, allowed: readonly T[], fallback: readonly T[], flag: string): readonly T[] {
  if (raw === undefined) return fallback;
  const items = raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const bad = items.find((s) => !(allowed as readonly string[]).includes(s));
  if (bad !== undefined || items.length === 0) {
    throw new UsageError(`invalid value for ${flag}: ${JSON.stringify(raw)} (expected a comma-separated list of ${allowed.join(', ')})`);
  }
  return allowed.filter((a) => items.includes(a));
}

function positive(raw: string | undefined, fallback: number, flag: string, integer: boolean): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw new UsageError(`invalid value for ${flag}: ${JSON.stringify(raw)} (expected a positive ${integer ? 'integer' : 'number'})`);
  }
  return value;
}

export function parseBenchOptions(argv: readonly string[]): BenchOptions | 'help' {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        quick: { type: 'boolean' },
        rounds: { type: 'string' },
        duration: { type: 'string' },
        rate: { type: 'string' },
        upstream: { type: 'string' },
        targets: { type: 'string' },
        scenarios: { type: 'string' },
        'no-resources': { type: 'boolean' },
        'no-nginx': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help === true) return 'help';
  const str = (name: string): string | undefined => (typeof values[name] === 'string' ? (values[name] as string) : undefined);
  const quick = values.quick === true;
  const rounds = positive(str('rounds'), quick ? 1 : 3, '--rounds', true);
  const durationS = positive(str('duration'), quick ? 2 : 4, '--duration', false);
  const upstream = str('upstream') ?? 'auto';
  if (upstream !== 'auto' && upstream !== 'node' && upstream !== 'nginx') {
    throw new UsageError(`invalid value for --upstream: ${JSON.stringify(upstream)} (expected auto, node or nginx)`);
  }
  if (upstream === 'nginx' && values['no-nginx'] === true) throw new UsageError('--upstream nginx and --no-nginx cannot be used together');
  return {
    quick,
    rounds,
    durationS,
    warmUpS: Math.min(0.5, durationS / 4),
    rate: positive(str('rate'), 2_000, '--rate', true),
    upstream,
    targets: list(str('targets'), TARGET_IDS, DEFAULT_TARGETS, '--targets'),
    scenarios: list(str('scenarios'), SCENARIO_IDS, SCENARIO_IDS, '--scenarios'),
    nginx: values['no-nginx'] !== true,
    resources: values['no-resources'] !== true,
    idleConnections: 1_000,
    streamBytes: quick ? 256 * 1024 * 1024 : 1024 * 1024 * 1024,
  };
}
