/**
 * From cells to results: medians over rounds (peaks: the highest), and the targets from the
 * issue checked with PASS/MISS and the gap to each limit.
 */
import type { Measured } from './load.js';
import type { IdleConnections, Streamed } from './resources.js';
import { SCRAPE_METHODS, SCRAPE_ROUTES, SCRAPE_STATUSES, type ScrapeResult } from './scrape.js';
import type { LoadScenarioId } from './scenarios.js';
import { max, median, min } from './stats.js';
import type { TargetId } from './targets.js';

const MIB = 1024 * 1024;
const MB = 1_000_000;

export interface CellRecord {
  readonly round: number;
  readonly scenario: LoadScenarioId | 'scrape';
  readonly target: TargetId;
  readonly measured?: Measured;
  readonly scrape?: ScrapeResult;
  /** VmHWM summed over the target's processes at the end of the cell. */
  readonly peakRssBytes?: number;
  readonly coldStartMs?: number;
  readonly error?: string;
}

export interface Summary {
  readonly scenario: LoadScenarioId;
  readonly target: TargetId;
  readonly rounds: number;
  readonly rate: number;
  readonly rateMin: number;
  readonly rateMax: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly cpuUsPerOp: number;
  /** The highest peak over the rounds. */
  readonly peakRssBytes: number;
  readonly errors: number;
  readonly failedCells: number;
}

export function summarise(cells: readonly CellRecord[], scenario: LoadScenarioId, target: TargetId): Summary | undefined {
  const mine = cells.filter((c) => c.scenario === scenario && c.target === target);
  const ok = mine.filter((c) => c.measured !== undefined);
  if (mine.length === 0) return undefined;
  const pick = (f: (m: Measured) => number): number[] => ok.map((c) => f(c.measured as Measured));
  return {
    scenario,
    target,
    rounds: ok.length,
    rate: median(pick((m) => m.rate)),
    rateMin: min(pick((m) => m.rate)),
    rateMax: max(pick((m) => m.rate)),
    p50Ms: median(pick((m) => m.p50Ms)),
    p99Ms: median(pick((m) => m.p99Ms)),
    p999Ms: median(pick((m) => m.p999Ms)),
    cpuUsPerOp: median(pick((m) => m.cpuUsPerOp ?? Number.NaN)),
    peakRssBytes: max(ok.map((c) => c.peakRssBytes ?? Number.NaN)),
    errors: pick((m) => m.errors).reduce((a, b) => a + b, 0),
    failedCells: mine.length - ok.length,
  };
}

export interface ScrapeSummary {
  readonly target: TargetId;
  readonly level: 'light' | 'full';
  readonly rounds: number;
  readonly routes: number;
  readonly labelSets: number;
  readonly textMedianMs: number;
  readonly textP90Ms: number;
  readonly textBytes: number;
  readonly prometheusMedianMs: number;
  readonly prometheusP90Ms: number;
  readonly prometheusWireBytes: number;
  readonly populateUnexpected: number;
}

export function summariseScrape(cells: readonly CellRecord[], target: TargetId, level: 'light' | 'full'): ScrapeSummary | undefined {
  const ok = cells
    .filter((c) => c.scenario === 'scrape' && c.target === target && c.scrape !== undefined)
    .map((c) => (c.scrape as ScrapeResult)[level]);
  if (ok.length === 0) return undefined;
  return {
    target,
    level,
    rounds: ok.length,
    routes: max(ok.map((s) => s.routes)),
    labelSets: max(ok.map((s) => s.labelSets)),
    textMedianMs: median(ok.map((s) => s.text.medianMs)),
    textP90Ms: median(ok.map((s) => s.text.p90Ms)),
    textBytes: max(ok.map((s) => s.text.decodedBytes)),
    prometheusMedianMs: median(ok.map((s) => s.prometheus.medianMs)),
    prometheusP90Ms: median(ok.map((s) => s.prometheus.p90Ms)),
    prometheusWireBytes: max(ok.map((s) => s.prometheus.bytes)),
    populateUnexpected: ok.reduce((sum, s) => sum + s.populated.unexpected, 0),
  };
}

export interface ResourceResult {
  readonly target: TargetId;
  readonly idle?: IdleConnections;
  readonly idleError?: string;
  readonly stream?: Streamed;
  readonly streamError?: string;
}

export interface ColdStart {
  readonly target: TargetId;
  readonly medianMs: number;
  readonly maxMs: number;
  readonly samples: number;
}

export interface TargetCheck {
  readonly name: string;
  readonly limit: string;
  /** Undefined when it could not be measured (a target not run, or failed). */
  readonly measured: number | undefined;
  readonly unit: string;
  /** Measured minus the limit, in `unit`: ≤ 0 (or < 0 for strict limits) passes. */
  readonly gap: number | undefined;
  readonly pass: boolean | undefined;
}

export function findSummary(summaries: readonly Summary[], scenario: LoadScenarioId, target: TargetId): Summary | undefined {
  return summaries.find((s) => s.scenario === scenario && s.target === target);
}

function check(name: string, limit: string, measured: number | undefined, unit: string, bound: number, strict: boolean): TargetCheck {
  if (measured === undefined || !Number.isFinite(measured)) return { name, limit, measured: undefined, unit, gap: undefined, pass: undefined };
  const gap = measured - bound;
  return { name, limit, measured, unit, gap, pass: strict ? gap < 0 : gap <= 0 };
}

export interface CheckInput {
  readonly summaries: readonly Summary[];
  readonly scrapes: readonly ScrapeSummary[];
  readonly resources: readonly ResourceResult[];
  readonly coldStarts: readonly ColdStart[];
  readonly rate: number;
  readonly streamBytes: number;
  readonly idleConnections: number;
}

export function evaluateTargets(input: CheckInput): TargetCheck[] {
  const get = (s: LoadScenarioId, t: TargetId): Summary | undefined => findSummary(input.summaries, s, t);
  const cost = (s: LoadScenarioId): number | undefined => {
    const mp = get(s, 'mp')?.rate;
    const bare = get(s, 'bare')?.rate;
    return mp === undefined || bare === undefined ? undefined : (1 - mp / bare) * 100;
  };
  const mpP99 = get('fixed-rate', 'mp')?.p99Ms;
  const directP99 = get('fixed-rate', 'direct')?.p99Ms;
  const mpResources = input.resources.find((r) => r.target === 'mp');
  const scrape = input.scrapes.find((s) => s.target === 'mp' && s.level === 'full');
  const streamed = input.streamBytes >= 1024 ** 3 ? `${input.streamBytes / 1024 ** 3} GiB` : `${input.streamBytes / MIB} MiB`;
  return [
    check('throughput cost vs bare, small GET, 50 connections', '≤ 5 %', cost('get-50'), '%', 5, false),
    check('throughput cost vs bare, small GET, 200 connections', '≤ 5 %', cost('get-200'), '%', 5, false),
    check(
      `p99 added over direct at ${input.rate} req/s (small GET)`,
      '≤ 1 ms',
      mpP99 === undefined || directP99 === undefined ? undefined : mpP99 - directP99,
      'ms',
      1,
      false,
    ),
    check(
      `peak RSS with ${input.idleConnections} open client connections`,
      '≤ 80 MB (76.3 MiB)',
      mpResources?.idle === undefined ? undefined : mpResources.idle.hwmBytes / MB,
      'MB',
      80,
      false,
    ),
    check(
      `RSS growth, ${streamed} streamed each way at once`,
      '< 20 MB (19.1 MiB)',
      mpResources?.stream === undefined ? undefined : mpResources.stream.growthBytes / MB,
      'MB',
      20,
      true,
    ),
    check(
      `scrape, route budget full (${SCRAPE_ROUTES * SCRAPE_METHODS.length * SCRAPE_STATUSES.length} label sets; median, slower of text and OpenMetrics+gzip)`,
      '< 20 ms',
      scrape === undefined ? undefined : Math.max(scrape.textMedianMs, scrape.prometheusMedianMs),
      'ms',
      20,
      true,
    ),
    check('cold start to listening (median)', '< 300 ms', input.coldStarts.find((c) => c.target === 'mp')?.medianMs, 'ms', 300, true),
  ];
}
