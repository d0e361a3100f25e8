/**
 * The markdown the bench prints: one table per scenario with its ratios, the scrape, the
 * resources, cold starts and the targets. Tables paste into the README as they are.
 */
import type { TargetCheck } from './checks.js';
import { mib, ms, num, ratio, table } from './format.js';
import { renderOverview } from './overview.js';
import { budgetSection } from './report-budget.js';
import { SCRAPE_METHODS, SCRAPE_STATUSES } from './scrape.js';
import { LOAD_SCENARIOS, type LoadScenario, type LoadScenarioId } from './scenarios.js';
import type { CellRecord, ColdStart, Contention, Metric, ResourceResult, ScrapeSummary, Summary } from './summary.js';
import { findSummary as find, roundRatio } from './summary.js';
import { TARGET_LABELS, type TargetId } from './targets.js';

const MIB = 1024 * 1024;

export interface ReportInput {
  readonly targets: readonly TargetId[];
  readonly scenarios: readonly LoadScenarioId[];
  readonly unavailable: ReadonlyMap<TargetId, string>;
  readonly cells: readonly CellRecord[];
  readonly summaries: readonly Summary[];
  readonly scrapes: readonly ScrapeSummary[];
  /** The full-budget scrape cell, when it ran. */
  readonly budget?: CellRecord | undefined;
  readonly resources: readonly ResourceResult[];
  readonly coldStarts: readonly ColdStart[];
  readonly checks: readonly TargetCheck[];
  readonly contention: Contention | undefined;
  readonly rate: number;
}

const COLUMNS = 13;
const NO_PROCESS: readonly TargetId[] = ['direct'];

function scenarioRow(input: ReportInput, scenario: LoadScenario, target: TargetId): string[] | undefined {
  const s = find(input.summaries, scenario.id, target);
  const why = input.unavailable.get(target);
  if (s === undefined || s.rounds === 0) {
    if (why === undefined && s === undefined) return undefined;
    return [TARGET_LABELS[target], ...Array<string>(COLUMNS - 2).fill('n/a'), why === undefined ? 'failed' : 'n/a'];
  }
  const spread = s.rate > 0 ? ((s.rateMax - s.rateMin) / s.rate) * 100 : Number.NaN;
  const own = !NO_PROCESS.includes(target);
  return [
    TARGET_LABELS[target],
    num(s.rate),
    s.rounds > 1 ? `${num(spread, 1)} %` : '—',
    ms(s.p50Ms),
    ms(s.p99Ms),
    ms(s.p999Ms),
    own ? num(s.cpuUsPerOp, 1) : '—',
    own ? num(s.faultsPerOp, s.faultsPerOp < 10 ? 2 : 0) : '—',
    own ? num(s.targetCpuPct) : '—',
    num(s.proxyCoreOthersPct),
    num(s.loadCoreBusyPct),
    own ? mib(s.peakRssBytes) : '—',
    s.failedCells > 0 ? `${num(s.errors)} (+${s.failedCells} failed cells)` : num(s.errors),
  ];
}

function ratioText(input: ReportInput, scenario: LoadScenarioId, a: TargetId, b: TargetId, metric: Metric): string | undefined {
  if (!input.targets.includes(a) || !input.targets.includes(b)) return undefined;
  const r = roundRatio(input.cells, scenario, a, b, metric);
  const name = `${SHORT[a]}/${SHORT[b]}`;
  if (r === undefined) return `${name} n/a`;
  return `${name} ${ratio(r.median)}${r.rounds > 1 ? ` (${ratio(r.min)}–${ratio(r.max)})` : ''}`;
}

const SHORT: Record<TargetId, string> = {
  direct: 'direct',
  'node-floor': 'Node floor',
  bare: 'bare',
  mp: 'metrics-proxy',
  caddy: 'Caddy',
  nginx: 'nginx',
  'mp-nometrics': '--metrics none',
};

function scenarioSection(input: ReportInput, scenario: LoadScenario): string | undefined {
  const rows = input.targets.filter((t) => scenario.targets.includes(t)).map((t) => scenarioRow(input, scenario, t)).filter((r): r is string[] => r !== undefined);
  if (rows.length === 0) return undefined;
  const out = [
    `### ${scenario.title}`,
    '',
    `Load: ${scenario.generator}${scenario.headline === 'p99' ? `, ${num(input.rate)} req/s offered` : ''}.`,
    '',
    table(
      ['system', scenario.unit, 'spread', 'p50 ms', 'p99 ms', 'p99.9 ms', 'CPU µs/op', 'page faults/op', 'proxy CPU %', 'others on proxy core %', 'load core %', 'peak RSS MiB', 'errors'],
      ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
      rows,
    ),
    '',
  ];
  const headline: Metric = scenario.headline === 'rate' ? 'rate' : 'p99Ms';
  const pairs: Array<[TargetId, TargetId]> = [
    ['mp', 'caddy'],
    ['mp', 'bare'],
    ['mp', 'nginx'],
    ['mp', 'node-floor'],
    ['mp', 'mp-nometrics'],
  ];
  const line = (metric: Metric): string =>
    pairs
      .map(([a, b]) => (scenario.targets.includes(b) ? ratioText(input, scenario.id, a, b, metric) : undefined))
      .filter((t): t is string => t !== undefined)
      .join(' · ');
  out.push(`Medians of per-round ratios (range), ${headline === 'rate' ? scenario.unit : 'p99 latency, lower is better'}: ${line(headline)}`);
  out.push(`CPU per ${scenario.id === 'ws-echo' ? 'round trip' : 'request'}: ${line('cpuUsPerOp')}`);
  return out.join('\n');
}

function contentionText(c: Contention): string {
  const proxyCore = Number.isFinite(c.proxyCoreMaxPct)
    ? ` On the proxy core: median ${c.proxyCoreMedianPct.toFixed(1)} %, max ${c.proxyCoreMaxPct.toFixed(1)} %.`
    : '';
  const noisy = c.othersMaxPct > 5 || c.proxyCoreMaxPct > 5;
  return (
    `### Other load on the machine\n\nProcesses the bench did not start, during the ${c.cells} measured runs: median ${c.othersMedianPct.toFixed(1)} % of a core, ` +
    `max ${c.othersMaxPct.toFixed(1)} % (${c.worstCell}${c.worstTop === '' ? '' : `: ${c.worstTop}`}).${proxyCore} ` +
    `Hypervisor steal up to ${c.stealMaxPct.toFixed(1)} %. ` +
    (noisy ? '**Other processes competed for the cores: the cells they overlapped are noisy; rerun on a quiet machine before trusting a close call.**' : 'Nothing else competed for the cores.')
  );
}

function targetsSection(checks: readonly TargetCheck[]): string {
  const rows = checks.map((c) => {
    const digits = c.unit === '×' ? 2 : 1;
    const unit = c.unit === '×' ? '×' : ` ${c.unit}`;
    return [
      c.name,
      c.limit,
      c.measured === undefined ? 'n/a' : `${num(c.measured, digits)}${unit}`,
      c.margin === undefined ? 'n/a' : `${c.margin > 0 ? '+' : ''}${num(c.margin, digits)}${unit}`,
      c.pass === undefined ? 'n/a' : c.pass ? 'PASS' : '**MISS**',
      c.detail,
    ];
  });
  return [
    '### Targets',
    '',
    table(['target', 'limit', 'measured', 'margin', 'result', 'from'], ['l', 'l', 'r', 'r', 'l', 'l'], rows),
    '',
    'Ratios are metrics-proxy over the other system, median of the ratios taken within each round. ' +
      'margin: positive is headroom, negative is how far it misses.',
  ].join('\n');
}

export function renderReport(input: ReportInput): string {
  const parts: string[] = [renderOverview(input), targetsSection(input.checks)];
  if (input.contention !== undefined) parts.push(contentionText(input.contention));
  for (const scenario of LOAD_SCENARIOS.filter((s) => input.scenarios.includes(s.id))) {
    const section = scenarioSection(input, scenario);
    if (section !== undefined) parts.push(section);
  }
  if (input.scrapes.length > 0) {
    parts.push(
      [
        '### /metrics scrape with the default route budget (--max-routes 100) full',
        '',
        table(
          ['target', 'fill', 'routes', 'label sets', 'text: median ms', 'p90 ms', 'KiB', 'Prometheus (OpenMetrics+gzip): median ms', 'p90 ms', 'wire KiB'],
          ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
          input.scrapes.map((s) => [
            TARGET_LABELS[s.target],
            s.level === 'light' ? 'each route once' : `× ${SCRAPE_METHODS.length} methods × ${SCRAPE_STATUSES.length} statuses`,
            num(s.routes),
            num(s.labelSets),
            ms(s.textMedianMs),
            ms(s.textP90Ms),
            num(s.textBytes / 1024),
            ms(s.prometheusMedianMs),
            ms(s.prometheusP90Ms),
            num(s.prometheusWireBytes / 1024),
          ]),
        ),
      ].join('\n'),
    );
  }
  if (input.budget !== undefined) parts.push(budgetSection(input.budget.budget, input.budget.error));
  if (input.resources.length > 0) {
    const idleN = input.resources.find((r) => r.idle !== undefined)?.idle?.connections ?? 0;
    const streamed = input.resources.find((r) => r.stream !== undefined)?.stream?.bytesEachWay ?? 0;
    parts.push(
      [
        `### Resources (one fresh process per measurement)`,
        '',
        table(
          [
            'target',
            `${num(idleN)} open conns: RSS MiB`,
            'peak MiB',
            `${streamed >= 1024 ** 3 ? `${streamed / 1024 ** 3} GiB` : `${streamed / MIB} MiB`} each way at once: RSS before MiB`,
            'peak MiB',
            'growth MiB',
            'peak − warm-up peak MiB',
            'up MiB/s',
            'down MiB/s',
          ],
          ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
          input.resources.map((r) => {
            const streamText = (v: string): string => (r.stream === undefined ? (r.streamError === undefined ? '—' : 'n/a') : v);
            return [
              TARGET_LABELS[r.target],
              r.idle === undefined ? `failed: ${r.idleError ?? '?'}` : mib(r.idle.rssBytes),
              mib(r.idle?.hwmBytes),
              r.stream === undefined ? (r.streamError === undefined ? '—' : `failed: ${r.streamError}`) : mib(r.stream.baselineRssBytes),
              streamText(mib(r.stream?.hwmBytes)),
              streamText(mib(r.stream?.growthBytes)),
              streamText(mib(r.stream?.growthOverWarmUpBytes)),
              streamText(num(r.stream?.uploadMiBps)),
              streamText(num(r.stream?.downloadMiBps)),
            ];
          }),
        ),
        '',
        'Peak = VmHWM summed over the target\'s processes (it includes start-up). Streaming: a 64 MiB warm-up each way, half a second of rest, ' +
          'then the long transfer; growth = peak after it − RSS before it (checked against the target); ' +
          'peak − warm-up peak = what the long transfer added over the short one (≈ 0 when memory does not grow with the bytes).',
      ].join('\n'),
    );
  }
  if (input.coldStarts.length > 0) {
    parts.push(
      [
        '### Cold start (spawn → listening, every start in the run)',
        '',
        table(
          ['target', 'median ms', 'max ms', 'starts'],
          ['l', 'r', 'r', 'r'],
          input.coldStarts.map((c) => [TARGET_LABELS[c.target], ms(c.medianMs), ms(c.maxMs), num(c.samples)]),
        ),
      ].join('\n'),
    );
  }
  if (input.unavailable.size > 0) {
    parts.push(['Not measured:', ...[...input.unavailable].map(([t, why]) => `- ${TARGET_LABELS[t]}: ${why}`)].join('\n'));
  }
  return parts.join('\n\n');
}
