/**
 * The targets from the issue (point 6, "measured like a sidecar"), each checked PASS/MISS with
 * its margin. Comparisons between systems are medians of ratios taken within a round; the
 * ratio's range over the rounds goes with it so that a reader can tell a miss from noise.
 * A target whose inputs were not measured (Caddy not installed, a failed cell) reads n/a.
 */
import { figure } from './format.js';
import { SCRAPE_METHODS, SCRAPE_ROUTES, SCRAPE_STATUSES } from './scrape.js';
import type { BudgetResult } from './scrape-budget.js';
import type { LoadScenarioId } from './scenarios.js';
import { type CellRecord, type ColdStart, type Metric, type ResourceResult, type RoundRatio, type ScrapeSummary, type Summary, findSummary, roundRatio } from './summary.js';
import { TARGET_LABELS, type TargetId } from './targets.js';

const MIB = 1024 * 1024;
const MB = 1_000_000;

export interface TargetCheck {
  readonly name: string;
  /** The limit as text, e.g. "≥ 1.30×". */
  readonly limit: string;
  /** Undefined when it could not be measured (a target not run, or failed). */
  readonly measured: number | undefined;
  readonly unit: string;
  /** How far inside the limit, in `unit`: positive is headroom, negative is how far it misses. */
  readonly margin: number | undefined;
  readonly pass: boolean | undefined;
  /** What the figure is made of (the two systems' medians, the range of the per-round ratios). */
  readonly detail: string;
  /** The load scenario the figure comes from, for the comparisons (a run without it leaves the check out). */
  readonly scenario?: LoadScenarioId;
}

type Bound = { readonly at: number; readonly kind: '≥' | '≤' | '<' };

/** Issue 17: 85 MiB at 1 000 held connections, 130 at 5 000; between and beyond, the line through them. */
function heldConnectionsBoundMiB(connections: number): number {
  return Math.round(85 + ((connections - 1_000) * (130 - 85)) / 4_000);
}

function check(name: string, measured: number | undefined, unit: string, bound: Bound, detail: string): TargetCheck {
  const limit = unit === '×' ? `${bound.kind} ${bound.at.toFixed(2)}×` : `${bound.kind} ${bound.at} ${unit}`;
  if (measured === undefined || !Number.isFinite(measured)) return { name, limit, measured: undefined, unit, margin: undefined, pass: undefined, detail };
  const margin = bound.kind === '≥' ? measured - bound.at : bound.at - measured;
  return { name, limit, measured, unit, margin, pass: bound.kind === '<' ? margin > 0 : margin >= 0, detail };
}

export interface CheckInput {
  readonly cells: readonly CellRecord[];
  readonly summaries: readonly Summary[];
  readonly scrapes: readonly ScrapeSummary[];
  /** The full-budget scrape (issue 16, point 4), when it ran and succeeded. */
  readonly budget?: BudgetResult | undefined;
  readonly resources: readonly ResourceResult[];
  readonly coldStarts: readonly ColdStart[];
  readonly rate: number;
  readonly streamBytes: number;
  readonly idleConnections: number;
}

const UNITS: Record<Metric, (scenario: LoadScenarioId) => string> = {
  rate: (s) => (s === 'ws-echo' ? 'round trips/s' : 'req/s'),
  p99Ms: () => 'ms p99',
  cpuUsPerOp: () => 'CPU µs/op',
};

function ratioCheck(input: CheckInput, name: string, scenario: LoadScenarioId, other: TargetId, metric: Metric, bound: Bound): TargetCheck {
  const r: RoundRatio | undefined = roundRatio(input.cells, scenario, 'mp', other, metric);
  const mp = findSummary(input.summaries, scenario, 'mp')?.[metric];
  const them = findSummary(input.summaries, scenario, other)?.[metric];
  const detail =
    `metrics-proxy ${figure(mp)} vs ${TARGET_LABELS[other]} ${figure(them)} ${UNITS[metric](scenario)} (medians)` +
    (r === undefined ? '' : r.rounds > 1 ? `; per-round ratios ${r.min.toFixed(2)}–${r.max.toFixed(2)} over ${r.rounds} rounds` : '; 1 round');
  return { ...check(name, r?.median, '×', bound, detail), scenario };
}

/**
 * Requests per second per core, metrics-proxy over `other`: 1 / CPU µs per request, i.e. the
 * ratio of their CPU per request taken the other way round (`other`/mp within each round).
 */
function perCoreCheck(input: CheckInput, name: string, scenario: LoadScenarioId, other: TargetId, bound: Bound): TargetCheck {
  const r = roundRatio(input.cells, scenario, other, 'mp', 'cpuUsPerOp');
  const mp = findSummary(input.summaries, scenario, 'mp')?.cpuUsPerOp;
  const them = findSummary(input.summaries, scenario, other)?.cpuUsPerOp;
  const perCore = (us: number | undefined): string => figure(us === undefined ? undefined : 1e6 / us);
  const detail =
    `metrics-proxy ${figure(mp)} vs ${TARGET_LABELS[other]} ${figure(them)} CPU µs/req (medians), i.e. ${perCore(mp)} vs ${perCore(them)} req/s per core` +
    (r === undefined ? '' : r.rounds > 1 ? `; per-round ratios ${r.min.toFixed(2)}–${r.max.toFixed(2)} over ${r.rounds} rounds` : '; 1 round');
  return { ...check(name, r?.median, '×', bound, detail), scenario };
}

/** Issue 16, point 4: at --max-routes 2000, a protobuf scrape under 50 ms, a text 0.0.4 one under 100 ms. */
function budgetChecks(budget: BudgetResult | undefined): TargetCheck[] {
  const t = budget?.timings;
  const routes = budget === undefined ? '2 000 routes' : `${budget.routesSeen} routes`;
  const detail = (a: number | undefined, b: number | undefined, names: string): string =>
    a === undefined || b === undefined ? '' : `median of ${t?.text.samples ?? 0}, ${names}: ${a.toFixed(1)} / ${b.toFixed(1)} ms`;
  return [
    check(
      `scrape at the full budget (${routes}), protobuf as Prometheus asks`,
      t === undefined ? undefined : Math.max(t.protobuf.medianMs, t['protobuf-gzip'].medianMs),
      'ms',
      { at: 50, kind: '<' },
      detail(t?.protobuf.medianMs, t?.['protobuf-gzip'].medianMs, 'the slower of identity and gzip'),
    ),
    check(
      `scrape at the full budget (${routes}), text 0.0.4`,
      t === undefined ? undefined : t.text.medianMs,
      'ms',
      { at: 100, kind: '<' },
      t === undefined ? '' : `median of ${t.text.samples}, p90 ${t.text.p90Ms.toFixed(1)} ms, ${(t.text.decodedBytes / MIB).toFixed(1)} MiB`,
    ),
  ];
}

export function evaluateTargets(input: CheckInput): TargetCheck[] {
  const mpResources = input.resources.find((r) => r.target === 'mp');
  const scrape = input.scrapes.find((s) => s.target === 'mp' && s.level === 'full');
  const streamed = input.streamBytes >= 1024 ** 3 ? `${input.streamBytes / 1024 ** 3} GiB` : `${input.streamBytes / MIB} MiB`;
  const bareIdle = input.resources.find((r) => r.target === 'bare')?.idle;
  const cold = input.coldStarts.find((c) => c.target === 'mp');
  return [
    ratioCheck(input, 'small GET, 50 conns: req/s vs Caddy (metrics on)', 'get-50', 'caddy', 'rate', { at: 1.3, kind: '≥' }),
    ratioCheck(input, 'small GET, 50 conns: CPU µs per request vs bare http-proxy', 'get-50', 'bare', 'cpuUsPerOp', { at: 0.7, kind: '≤' }),
    ratioCheck(input, '16 KiB responses, 50 conns: req/s vs Caddy (metrics on)', 'get-16k', 'caddy', 'rate', { at: 1.2, kind: '≥' }),
    ratioCheck(input, 'small GET, 200 conns: req/s vs bare http-proxy', 'get-200', 'bare', 'rate', { at: 1, kind: '≥' }),
    ratioCheck(input, '1 MiB uploads, 10 conns: req/s vs bare http-proxy', 'post-1m', 'bare', 'rate', { at: 1, kind: '≥' }),
    ratioCheck(input, 'WebSocket echo, 50 clients: round trips/s vs bare http-proxy', 'ws-echo', 'bare', 'rate', { at: 1, kind: '≥' }),
    ratioCheck(input, `p99 at ${input.rate} req/s offered vs bare http-proxy`, 'fixed-rate', 'bare', 'p99Ms', { at: 1, kind: '≤' }),
    perCoreCheck(input, 'small GET over HTTP/2 (h2c): req/s per core vs Caddy (metrics on)', 'h2-get', 'caddy', { at: 1, kind: '≥' }),
    perCoreCheck(input, 'gRPC unary over h2c: req/s per core vs Caddy (metrics on)', 'grpc-unary', 'caddy', { at: 1, kind: '≥' }),
    // Issue 17's memory bounds, in MiB as /proc reports them (kB / 1024).
    check(
      'idle RSS 2 s after start',
      mpResources?.idle === undefined ? undefined : mpResources.idle.startRssBytes / MIB,
      'MiB',
      { at: 55, kind: '≤' },
      bareIdle === undefined ? 'VmRSS, before any request' : `VmRSS, before any request; bare http-proxy ${(bareIdle.startRssBytes / MIB).toFixed(1)} MiB`,
    ),
    check(
      `peak RSS with ${input.idleConnections} open client connections`,
      mpResources?.idle === undefined ? undefined : mpResources.idle.hwmBytes / MIB,
      'MiB',
      { at: heldConnectionsBoundMiB(input.idleConnections), kind: '≤' },
      bareIdle === undefined ? 'VmHWM of the process' : `VmHWM of the process; bare http-proxy ${(bareIdle.hwmBytes / MIB).toFixed(1)} MiB`,
    ),
    check(
      `RSS growth, ${streamed} streamed each way at once`,
      mpResources?.stream === undefined ? undefined : mpResources.stream.growthBytes / MB,
      'MB',
      { at: 20, kind: '<' },
      'peak after the transfer − RSS before it',
    ),
    check(
      `scrape, default route budget full (${SCRAPE_ROUTES} routes, ${SCRAPE_ROUTES * SCRAPE_METHODS.length * SCRAPE_STATUSES.length} label sets)`,
      scrape === undefined ? undefined : Math.max(scrape.textMedianMs, scrape.prometheusMedianMs),
      'ms',
      { at: 20, kind: '<' },
      'median, the slower of text and OpenMetrics+gzip',
    ),
    ...budgetChecks(input.budget),
    check(
      'cold start to listening (median, on the proxy core)',
      cold?.medianMs,
      'ms',
      { at: 300, kind: '<' },
      cold === undefined ? '' : `${cold.samples} starts, max ${cold.maxMs.toFixed(0)} ms`,
    ),
  ];
}
