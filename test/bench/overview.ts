/**
 * The one table a README shows: each scenario's headline figure per system (medians over
 * rounds), CPU per small GET, and metrics-proxy's ratios to Caddy and bare http-proxy (medians
 * of per-round ratios).
 */
import { figure, ratio, table } from './format.js';
import { LOAD_SCENARIOS, type LoadScenarioId } from './scenarios.js';
import { type CellRecord, type Metric, type Summary, findSummary, roundRatio } from './summary.js';
import type { TargetId } from './targets.js';

const COLUMNS: ReadonlyArray<[TargetId, string]> = [
  ['direct', 'direct'],
  ['node-floor', 'Node floor'],
  ['bare', 'bare http-proxy'],
  ['mp', 'metrics-proxy'],
  ['caddy', 'Caddy (metrics)'],
  ['nginx', 'nginx'],
];

const SHORT_TITLES: Record<LoadScenarioId, string> = {
  'get-50': 'small GET, 50 conns (req/s)',
  'get-16k': '16 KiB response, 50 conns (req/s)',
  'get-200': 'small GET, 200 conns (req/s)',
  'post-1m': '1 MiB upload, 10 conns (req/s)',
  'ws-echo': 'WebSocket echo, 50 clients (round trips/s)',
  'fixed-rate': 'p99 at the fixed rate (ms)',
  'h2-get': 'small GET over h2c, 10 conns × 10 streams (req/s)',
  'grpc-unary': 'gRPC unary over h2c, 10 conns × 10 streams (req/s)',
};

/** The CPU rows: CPU µs per request of these scenarios. */
const CPU_ROWS: ReadonlyArray<[LoadScenarioId, string]> = [
  ['get-50', 'CPU µs per small GET, 50 conns'],
  ['h2-get', 'CPU µs per small GET over h2c'],
  ['grpc-unary', 'CPU µs per gRPC unary call'],
];

export interface OverviewInput {
  readonly targets: readonly TargetId[];
  readonly scenarios: readonly LoadScenarioId[];
  readonly cells: readonly CellRecord[];
  readonly summaries: readonly Summary[];
  readonly rate: number;
}

export function renderOverview(input: OverviewInput): string {
  const columns = COLUMNS.filter(([t]) => input.targets.includes(t));
  const rows: string[][] = [];
  const ratioCell = (scenario: LoadScenarioId, other: TargetId, metric: Metric): string =>
    input.targets.includes(other) ? ratio(roundRatio(input.cells, scenario, 'mp', other, metric)?.median) : 'n/a';
  for (const scenario of LOAD_SCENARIOS.filter((s) => input.scenarios.includes(s.id))) {
    const metric: Metric = scenario.headline === 'rate' ? 'rate' : 'p99Ms';
    rows.push([
      scenario.id === 'fixed-rate' ? `p99 at ${input.rate} req/s offered (ms)` : SHORT_TITLES[scenario.id],
      ...columns.map(([t]) => (scenario.targets.includes(t) ? figure(findSummary(input.summaries, scenario.id, t)?.[metric]) : '')),
      ratioCell(scenario.id, 'caddy', metric),
      scenario.targets.includes('bare') ? ratioCell(scenario.id, 'bare', metric) : '',
    ]);
  }
  for (const [id, title] of CPU_ROWS.filter(([s]) => input.scenarios.includes(s))) {
    const scenario = LOAD_SCENARIOS.find((s) => s.id === id);
    rows.push([
      title,
      ...columns.map(([t]) => (t === 'direct' || !scenario?.targets.includes(t) ? '' : figure(findSummary(input.summaries, id, t)?.cpuUsPerOp))),
      ratioCell(id, 'caddy', 'cpuUsPerOp'),
      scenario?.targets.includes('bare') === true ? ratioCell(id, 'bare', 'cpuUsPerOp') : '',
    ]);
  }
  return [
    '### Overview',
    '',
    table(['scenario', ...columns.map(([, label]) => label), 'mp/Caddy', 'mp/bare'], ['l', ...columns.map(() => 'r' as const), 'r', 'r'], rows),
    '',
    'Medians over rounds; the last two columns are medians of the ratios taken within each round.',
  ].join('\n');
}
