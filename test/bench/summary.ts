/**
 * From cells to results: per target, medians over rounds (peaks: the highest); between two
 * targets, ratios taken within each round (both measured minutes apart, under the same
 * conditions) and their median over rounds. The targets from the issue: checks.ts.
 */
import type { Measured } from './load.js';
import type { IdleConnections, Streamed } from './resources.js';
import type { ScrapeResult } from './scrape.js';
import type { BudgetResult } from './scrape-budget.js';
import type { LoadScenarioId } from './scenarios.js';
import { max, median, min } from './stats.js';
import type { TargetId } from './targets.js';

/** How the run used the cores, in % of one core over the measured run. */
export interface CellUsage {
  /** CPU time of the target's processes per operation, µs (from /proc/PID/stat; not for `direct`). */
  readonly cpuUsPerOp?: number;
  /** Minor page faults of the target's processes per operation (from /proc/PID/stat; not for `direct`). */
  readonly faultsPerOp?: number;
  /** The target's processes: ≈ 100 % when the proxy is the bottleneck. */
  readonly targetCpuPct?: number;
  /** Everything else that ran on the proxy core (other users' processes): should be ≈ 0. */
  readonly proxyCoreOthersPct?: number;
  /** The load core (wrk or the bench's clients, the upstream, irq): near 100 % means the rig, not the proxy, may be the limit. */
  readonly loadCoreBusyPct?: number;
  /** Hypervisor steal over all cores. */
  readonly stealPct?: number;
  /** Processes the bench did not start, on any core, in % of one core. */
  readonly othersPct?: number;
  /** The busiest of them (command line and %). */
  readonly othersTop?: string;
}

export type CellMeasured = Measured & CellUsage;

export interface CellRecord {
  readonly round: number;
  /** `scrape-budget`: the full-budget cell of the `scrape` scenario. */
  readonly scenario: LoadScenarioId | 'scrape' | 'scrape-budget';
  readonly target: TargetId;
  readonly measured?: CellMeasured;
  readonly scrape?: ScrapeResult;
  /** The scrape at the full route budget (--max-routes 2000): scrape-budget.ts. */
  readonly budget?: BudgetResult;
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
  readonly faultsPerOp: number;
  readonly targetCpuPct: number;
  readonly proxyCoreOthersPct: number;
  readonly loadCoreBusyPct: number;
  /** The highest peak over the rounds. */
  readonly peakRssBytes: number;
  readonly errors: number;
  readonly failedCells: number;
}

export function summarise(cells: readonly CellRecord[], scenario: LoadScenarioId, target: TargetId): Summary | undefined {
  const mine = cells.filter((c) => c.scenario === scenario && c.target === target);
  const ok = mine.filter((c) => c.measured !== undefined);
  if (mine.length === 0) return undefined;
  const pick = (f: (m: CellMeasured) => number | undefined): number[] => ok.map((c) => f(c.measured as CellMeasured) ?? Number.NaN);
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
    cpuUsPerOp: median(pick((m) => m.cpuUsPerOp)),
    faultsPerOp: median(pick((m) => m.faultsPerOp)),
    targetCpuPct: median(pick((m) => m.targetCpuPct)),
    proxyCoreOthersPct: median(pick((m) => m.proxyCoreOthersPct)),
    loadCoreBusyPct: median(pick((m) => m.loadCoreBusyPct)),
    peakRssBytes: max(ok.map((c) => c.peakRssBytes ?? Number.NaN)),
    errors: pick((m) => m.errors).reduce((a, b) => a + b, 0),
    failedCells: mine.length - ok.length,
  };
}

export function findSummary(summaries: readonly Summary[], scenario: LoadScenarioId, target: TargetId): Summary | undefined {
  return summaries.find((s) => s.scenario === scenario && s.target === target);
}

export type Metric = 'rate' | 'p99Ms' | 'cpuUsPerOp';

export interface RoundRatio {
  /** Median over rounds of a/b within each round. */
  readonly median: number;
  readonly min: number;
  readonly max: number;
  /** Rounds in which both were measured. */
  readonly rounds: number;
}

/** a/b of `metric` within each round where both cells succeeded; undefined when no round has both. */
export function roundRatio(cells: readonly CellRecord[], scenario: LoadScenarioId, a: TargetId, b: TargetId, metric: Metric): RoundRatio | undefined {
  const value = (target: TargetId, round: number): number | undefined =>
    cells.find((c) => c.scenario === scenario && c.target === target && c.round === round && c.measured !== undefined)?.measured?.[metric];
  const ratios: number[] = [];
  const rounds = new Set(cells.map((c) => c.round));
  for (const round of rounds) {
    const x = value(a, round);
    const y = value(b, round);
    if (x !== undefined && y !== undefined && Number.isFinite(x) && Number.isFinite(y) && y !== 0) ratios.push(x / y);
  }
  if (ratios.length === 0) return undefined;
  return { median: median(ratios), min: min(ratios), max: max(ratios), rounds: ratios.length };
}

/** Load from processes the bench did not start, and steal, over every measured cell: the noise warning. */
export interface Contention {
  readonly cells: number;
  /** On the proxy core (its busy time minus the target's CPU). */
  readonly proxyCoreMedianPct: number;
  readonly proxyCoreMaxPct: number;
  /** On any core, from every other process's CPU time. */
  readonly othersMedianPct: number;
  readonly othersMaxPct: number;
  readonly worstCell: string;
  readonly worstTop: string;
  readonly stealMaxPct: number;
}

export function contention(cells: readonly CellRecord[]): Contention | undefined {
  const measured = cells.filter((c) => c.measured?.othersPct !== undefined);
  if (measured.length === 0) return undefined;
  const others = (c: CellRecord): number => c.measured?.othersPct ?? 0;
  const worst = measured.reduce((w, c) => (others(c) > others(w) ? c : w));
  return {
    cells: measured.length,
    proxyCoreMedianPct: median(measured.map((c) => c.measured?.proxyCoreOthersPct ?? Number.NaN)),
    proxyCoreMaxPct: max(measured.map((c) => c.measured?.proxyCoreOthersPct ?? Number.NaN)),
    othersMedianPct: median(measured.map(others)),
    othersMaxPct: max(measured.map(others)),
    worstCell: `round ${worst.round + 1}, ${worst.scenario}, ${worst.target}`,
    worstTop: worst.measured?.othersTop ?? '',
    stealMaxPct: max(measured.map((c) => c.measured?.stealPct ?? Number.NaN)),
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
  const ok = cells.filter((c) => c.scenario === 'scrape' && c.target === target && c.scrape !== undefined).map((c) => (c.scrape as ScrapeResult)[level]);
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
