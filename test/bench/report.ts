/**
 * The markdown the bench prints: one table per scenario with its ratios, the scrape, the
 * resources, cold starts and the targets. Tables paste into the README as they are.
 */
import { SCRAPE_METHODS, SCRAPE_STATUSES } from './scrape.js';
import { LOAD_SCENARIOS, type LoadScenario, type LoadScenarioId } from './scenarios.js';
import type { ColdStart, ResourceResult, ScrapeSummary, Summary, TargetCheck } from './summary.js';
import { findSummary as find } from './summary.js';
import { TARGET_LABELS, type TargetId } from './targets.js';

const MIB = 1024 * 1024;

export function num(value: number | undefined, digits = 0): string {
  if (value === undefined || !Number.isFinite(value)) return 'n/a';
  const fixed = value.toFixed(digits);
  // Thin grouping for large integers: 12 345.
  const [int = '', frac] = fixed.split('.');
  const grouped = int.replace(/\B(?=(\d{3})+(?!\d))/g, ' ');
  return frac === undefined ? grouped : `${grouped}.${frac}`;
}

export function ms(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return 'n/a';
  return value < 10 ? value.toFixed(2) : value < 100 ? value.toFixed(1) : value.toFixed(0);
}

export function mib(bytes: number | undefined): string {
  return bytes === undefined || !Number.isFinite(bytes) ? 'n/a' : (bytes / MIB).toFixed(1);
}

function ratio(a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return 'n/a';
  return a / b >= 10 ? (a / b).toFixed(1) : (a / b).toFixed(2);
}

function table(header: readonly string[], align: readonly ('l' | 'r')[], rows: readonly (readonly string[])[]): string {
  const lines = [`| ${header.join(' | ')} |`, `|${align.map((a) => (a === 'r' ? '---:' : '---')).join('|')}|`];
  for (const row of rows) lines.push(`| ${row.join(' | ')} |`);
  return lines.join('\n');
}

export interface ReportInput {
  readonly targets: readonly TargetId[];
  readonly scenarios: readonly LoadScenarioId[];
  readonly unavailable: ReadonlyMap<TargetId, string>;
  readonly summaries: readonly Summary[];
  readonly scrapes: readonly ScrapeSummary[];
  readonly resources: readonly ResourceResult[];
  readonly coldStarts: readonly ColdStart[];
  readonly checks: readonly TargetCheck[];
  readonly rate: number;
}

function scenarioSection(input: ReportInput, scenario: LoadScenario): string | undefined {
  const rows: string[][] = [];
  for (const target of input.targets) {
    const s = find(input.summaries, scenario.id, target);
    const why = input.unavailable.get(target);
    if (s === undefined || s.rounds === 0) {
      if (why !== undefined || s !== undefined) rows.push([TARGET_LABELS[target], 'n/a', 'n/a', 'n/a', 'n/a', 'n/a', 'n/a', 'n/a', why === undefined ? 'failed' : 'n/a']);
      continue;
    }
    const spread = s.rate > 0 ? ((s.rateMax - s.rateMin) / s.rate) * 100 : Number.NaN;
    rows.push([
      TARGET_LABELS[target],
      num(s.rate),
      s.rounds > 1 ? `${num(spread, 1)} %` : '—',
      ms(s.p50Ms),
      ms(s.p99Ms),
      ms(s.p999Ms),
      target === 'direct' ? '—' : num(s.cpuUsPerOp),
      target === 'direct' ? '—' : mib(s.peakRssBytes),
      s.failedCells > 0 ? `${num(s.errors)} (+${s.failedCells} failed cells)` : num(s.errors),
    ]);
  }
  if (rows.length === 0) return undefined;
  const unit = scenario.unit;
  const out = [
    `### ${scenario.title}`,
    '',
    table(
      ['target', unit, 'spread', 'p50 ms', 'p99 ms', 'p99.9 ms', 'CPU µs/op', 'peak RSS MiB', 'errors'],
      ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
      rows,
    ),
    '',
  ];
  const get = (t: TargetId): Summary | undefined => find(input.summaries, scenario.id, t);
  const pick = (t: TargetId): number | undefined => (scenario.headline === 'rate' ? get(t)?.rate : get(t)?.p99Ms);
  const what = scenario.headline === 'rate' ? unit : 'p99 latency (lower is better)';
  out.push(
    `Ratios of ${what}: metrics-proxy/bare ${ratio(pick('mp'), pick('bare'))} · metrics-proxy/direct ${ratio(pick('mp'), pick('direct'))} · ` +
      `metrics-proxy/nginx ${ratio(pick('mp'), pick('nginx'))} · workers-2/workers-1 ${ratio(pick('mp-w2'), pick('mp'))}` +
      (input.targets.includes('mp-nometrics') ? ` · metrics-proxy/--metrics none ${ratio(pick('mp'), pick('mp-nometrics'))}` : ''),
  );
  const cpu = (t: TargetId): number | undefined => get(t)?.cpuUsPerOp;
  out.push(
    `CPU per ${scenario.id === 'ws-echo' ? 'round trip' : 'request'} (all of a target's processes): metrics-proxy/bare ${ratio(cpu('mp'), cpu('bare'))} · ` +
      `metrics-proxy/nginx ${ratio(cpu('mp'), cpu('nginx'))} · workers-2/workers-1 ${ratio(cpu('mp-w2'), cpu('mp'))}` +
      (input.targets.includes('mp-nometrics') ? ` · metrics-proxy/--metrics none ${ratio(cpu('mp'), cpu('mp-nometrics'))}` : ''),
  );
  if (scenario.headline === 'p99') {
    const added = (t: TargetId): string => {
      const a = get(t)?.p99Ms;
      const d = get('direct')?.p99Ms;
      return a === undefined || d === undefined || !Number.isFinite(a - d) ? 'n/a' : `${a - d >= 0 ? '+' : ''}${(a - d).toFixed(2)} ms`;
    };
    out.push(
      `p99 added over direct at ${num(input.rate)} req/s offered: bare ${added('bare')} · metrics-proxy ${added('mp')} · ` +
        `workers 2 ${added('mp-w2')} · nginx ${added('nginx')}`,
    );
  }
  return out.join('\n');
}

export function renderReport(input: ReportInput): string {
  const parts: string[] = [];
  for (const scenario of LOAD_SCENARIOS.filter((s) => input.scenarios.includes(s.id))) {
    const section = scenarioSection(input, scenario);
    if (section !== undefined) parts.push(section);
  }
  if (input.scrapes.length > 0) {
    parts.push(
      [
        '### /metrics scrape with the route budget full',
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
          input.resources.map((r) => [
            TARGET_LABELS[r.target],
            r.idle === undefined ? `failed: ${r.idleError ?? '?'}` : mib(r.idle.rssBytes),
            mib(r.idle?.hwmBytes),
            r.stream === undefined ? `failed: ${r.streamError ?? '?'}` : mib(r.stream.baselineRssBytes),
            mib(r.stream?.hwmBytes),
            mib(r.stream?.growthBytes),
            mib(r.stream?.growthOverWarmUpBytes),
            num(r.stream?.uploadMiBps),
            num(r.stream?.downloadMiBps),
          ]),
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
  parts.push(
    [
      '### Targets',
      '',
      table(
        ['target', 'limit', 'measured', 'gap', 'result'],
        ['l', 'l', 'r', 'r', 'l'],
        input.checks.map((c) => [
          c.name,
          c.limit,
          c.measured === undefined ? 'n/a' : `${num(c.measured, c.unit === '%' || c.unit === 'ms' ? 2 : 1)} ${c.unit}`,
          c.gap === undefined ? 'n/a' : `${c.gap > 0 ? '+' : ''}${num(c.gap, c.unit === '%' || c.unit === 'ms' ? 2 : 1)} ${c.unit}`,
          c.pass === undefined ? 'n/a' : c.pass ? 'PASS' : '**MISS**',
        ]),
      ),
      '',
      'gap = measured − limit: negative is headroom, positive is how far it misses.',
    ].join('\n'),
  );
  return parts.join('\n\n');
}
