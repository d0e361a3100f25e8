/** Command-line options of `npm run bench`. */
import { parseArgs } from 'node:util';
import { SCENARIO_IDS, type ScenarioId } from './scenarios.js';
import { DEFAULT_TARGETS, NODE_TARGETS, TARGET_IDS, type TargetId } from './targets.js';

export type UpstreamChoice = 'auto' | 'node' | 'nginx';

export interface BenchOptions {
  readonly quick: boolean;
  /** --profile: instead of the bench, a CPU profile of each target under the small-GET load. */
  readonly profile: boolean;
  /** False with --no-pin: everything unpinned (for a machine with one core). */
  readonly pin: boolean;
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
  /** False with --no-nginx: run as if nginx were not installed (Node upstream, no nginx target). */
  readonly nginx: boolean;
  /** Skip the one-off resource measurements (idle connections, 1 GiB streaming). */
  readonly resources: boolean;
  readonly idleConnections: number;
  readonly streamBytes: number;
  /** --retry-noisy N: measure a cell again, up to N times, while other processes competed during it. */
  readonly retryNoisy: number;
  /** --mp-args "FLAGS": more command-line flags for metrics-proxy (mp, mp-nometrics) in the load cells and --profile. */
  readonly mpArgs: readonly string[];
}

export const USAGE = `usage: npm run bench -- [--quick] [--rounds N] [--duration S] [--rate R]
                        [--upstream auto|node|nginx] [--targets a,b,...] [--scenarios a,b,...]
                        [--no-nginx] [--no-resources] [--connections N] [--no-pin] [--retry-noisy N]
                        [--mp-args "FLAGS"]
       npm run bench -- --profile [--duration S] [--targets mp,bare,...] [--scenarios get-50,grpc-unary,...]
                                  [--mp-args "FLAGS"]

  --quick            smoke check: 1 round, 2 s cells after 1 s of warm-up, 256 MiB streamed
                     instead of 1 GiB (about 2 minutes; the numbers are only indicative)
  --rounds N         interleaved rounds; each figure is the median over rounds (default 3)
  --duration S       whole seconds measured per cell, after 1 s of warm-up (default 5)
  --rate R           offered rate of the fixed-rate latency scenario, req/s (default 2000)
  --upstream U       HTTP upstream: nginx when installed (auto, the default), or the Node one
  --targets LIST     of ${TARGET_IDS.join(', ')}
                     (default ${DEFAULT_TARGETS.join(',')}; mp-nometrics is a diagnostic)
  --scenarios LIST   of ${SCENARIO_IDS.join(', ')} (default all); scrape times
                     /metrics with the default route budget full, then at --max-routes 2000
                     (three proxies filled with 200 000 requests each, about 2 minutes; 40 000
                     with --quick)
  --no-nginx         run as if nginx were not installed (Node upstream, nginx column n/a)
  --no-resources     skip the idle-connections and streaming measurements
  --connections N    client connections held open by the idle-connections measurement
                     (default 1000; its RSS bound is 85 MiB at 1000, 130 at 5000)
  --no-pin           do not pin with taskset (the default pins the proxy under test on core 1,
                     everything else on core 0)
  --retry-noisy N    measure a cell again (after waiting up to 2 min for a quiet machine), up
                     to N times, when other processes took over 10 % of the proxy core or over
                     25 % of a core anywhere during it (default 0: every cell is kept)
  --mp-args "FLAGS"  more metrics-proxy flags (split on spaces, no quoting) for mp and
                     mp-nometrics in the load cells and under --profile, not in the scrape and
                     resource cells; e.g. --mp-args "--idle-timeout 0" for an A/B against a run
                     without; recorded in the report header and the JSON (--host, --port and
                     --upstream are the bench's own)
  --profile          no bench: run each Node target of --targets (default: mp) under the load of
                     each scenario of --scenarios (default: get-50, wrk with 50 connections;
                     h2-get and grpc-unary use h2load) with node --cpu-prof for --duration
                     seconds (default 10, 3 with --quick) and print where its CPU time goes,
                     by file/package and by function; the .cpuprofile is kept in bench-results/

Needs a built dist/ (npm run build) and wrk (apt-get install wrk); uses Caddy, nginx and, for
the HTTP/2 scenarios, h2load (apt-get install nghttp2-client) when installed. Results: a markdown report on stdout and bench-results/bench-<timestamp>.json.
Method: docs/performance.md.`;

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

/** The flags the bench gives metrics-proxy itself (targets.ts): --mp-args may not change them. */
const BENCH_OWNED_FLAGS = ['--host', '--port', '--upstream'];

/**
 * `--mp-args "--idle-timeout 0"` as `--mp-args=--idle-timeout 0`: parseArgs refuses a separate
 * value that starts with a dash, and every value of this option does.
 */
function joinMpArgs(argv: readonly string[]): string[] {
  const joined: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const value = argv[i + 1];
    if (arg === '--mp-args' && value !== undefined) {
      joined.push(`--mp-args=${value}`);
      i++;
    } else {
      joined.push(arg);
    }
  }
  return joined;
}

function mpArgsOf(raw: string | undefined): readonly string[] {
  if (raw === undefined) return [];
  const args = raw.split(/\s+/).filter((a) => a !== '');
  if (args.length === 0 || !(args[0] as string).startsWith('-')) {
    throw new UsageError(`invalid value for --mp-args: ${JSON.stringify(raw)} (expected metrics-proxy flags, such as "--idle-timeout 0")`);
  }
  const owned = args.find((a) => BENCH_OWNED_FLAGS.includes(a.split('=')[0] as string));
  if (owned !== undefined) throw new UsageError(`--mp-args cannot set ${owned.split('=')[0] ?? owned}: the bench sets it`);
  return args;
}

export function parseBenchOptions(argv: readonly string[]): BenchOptions | 'help' {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: joinMpArgs(argv),
      options: {
        quick: { type: 'boolean' },
        rounds: { type: 'string' },
        'retry-noisy': { type: 'string' },
        duration: { type: 'string' },
        rate: { type: 'string' },
        upstream: { type: 'string' },
        targets: { type: 'string' },
        scenarios: { type: 'string' },
        'no-resources': { type: 'boolean' },
        connections: { type: 'string' },
        'no-nginx': { type: 'boolean' },
        'no-pin': { type: 'boolean' },
        profile: { type: 'boolean' },
        'mp-args': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help === true) return 'help';
  const str = (name: string): string | undefined => (typeof values[name] === 'string' ? (values[name]) : undefined);
  const quick = values.quick === true;
  const profile = values.profile === true;
  const rounds = positive(str('rounds'), quick ? 1 : 3, '--rounds', true);
  // Whole seconds: wrk takes no fractions.
  const durationS = positive(str('duration'), profile ? (quick ? 3 : 10) : quick ? 2 : 5, '--duration', true);
  const upstream = str('upstream') ?? 'auto';
  if (upstream !== 'auto' && upstream !== 'node' && upstream !== 'nginx') {
    throw new UsageError(`invalid value for --upstream: ${JSON.stringify(upstream)} (expected auto, node or nginx)`);
  }
  if (upstream === 'nginx' && values['no-nginx'] === true) throw new UsageError('--upstream nginx and --no-nginx cannot be used together');
  const targets = list(str('targets'), TARGET_IDS, profile ? ['mp'] : DEFAULT_TARGETS, '--targets');
  if (profile && !targets.every((t) => NODE_TARGETS.includes(t))) {
    throw new UsageError(`--profile profiles Node processes only: --targets must be among ${NODE_TARGETS.join(', ')}`);
  }
  const scenarios = list(str('scenarios'), SCENARIO_IDS, profile ? ['get-50'] : SCENARIO_IDS, '--scenarios');
  if (profile && scenarios.includes('scrape')) throw new UsageError('--profile runs load scenarios: scrape cannot be profiled');
  return {
    quick,
    profile,
    pin: values['no-pin'] !== true,
    rounds,
    durationS,
    warmUpS: profile && !quick ? 2 : 1,
    rate: positive(str('rate'), 2_000, '--rate', true),
    upstream,
    targets,
    scenarios,
    nginx: values['no-nginx'] !== true,
    resources: values['no-resources'] !== true,
    idleConnections: positive(str('connections'), 1_000, '--connections', true),
    streamBytes: quick ? 256 * 1024 * 1024 : 1024 * 1024 * 1024,
    retryNoisy: str('retry-noisy') === '0' ? 0 : positive(str('retry-noisy'), 0, '--retry-noisy', true),
    mpArgs: mpArgsOf(str('mp-args')),
  };
}
