/**
 * Verdicts and output: resource growth after warm-up, /metrics against the
 * client-side tallies, a plain-text table, and the JSON summary.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseExposition, sampleValue } from '../helpers.js';
import { METHODS, type Tallies, httpTotals } from './traffic.js';
import type { UpstreamCounts } from './upstream.js';

export const MAX_GROWTH_PERCENT = 10;
/** Event-loop delay fails only past both the percentage and this many ms: small values are noise. */
export const MAX_LAG_GROWTH_MS = 5;

export interface ResourceRow {
  readonly metric: string;
  readonly unit: string;
  readonly baseline: number;
  readonly end: number;
  readonly growthPercent: number;
  readonly limit: string;
  readonly ok: boolean;
}

export interface ResourcePoint {
  readonly rssBytes: number;
  readonly heapUsedBytes: number;
  readonly fds: number;
  readonly lagP99Ms: number;
}

function growth(baseline: number, end: number): number {
  return baseline === 0 ? (end === 0 ? 0 : Infinity) : ((end - baseline) / baseline) * 100;
}

const MIB = 1024 * 1024;

export function resourceRows(baseline: ResourcePoint, end: ResourcePoint): ResourceRow[] {
  const within = (b: number, e: number): boolean => growth(b, e) <= MAX_GROWTH_PERCENT;
  const pct = `≤ +${MAX_GROWTH_PERCENT} %`;
  const rows: ResourceRow[] = [
    { metric: 'RSS', unit: 'MiB', baseline: baseline.rssBytes / MIB, end: end.rssBytes / MIB, limit: pct, ok: within(baseline.rssBytes, end.rssBytes), growthPercent: 0 },
    { metric: 'heap used', unit: 'MiB', baseline: baseline.heapUsedBytes / MIB, end: end.heapUsedBytes / MIB, limit: pct, ok: within(baseline.heapUsedBytes, end.heapUsedBytes), growthPercent: 0 },
    { metric: 'open fds', unit: '', baseline: baseline.fds, end: end.fds, limit: pct, ok: within(baseline.fds, end.fds), growthPercent: 0 },
    {
      metric: 'event-loop delay p99 (under load)',
      unit: 'ms',
      baseline: baseline.lagP99Ms,
      end: end.lagP99Ms,
      limit: `≤ +${MAX_GROWTH_PERCENT} % or ≤ +${MAX_LAG_GROWTH_MS} ms`,
      ok: within(baseline.lagP99Ms, end.lagP99Ms) || end.lagP99Ms - baseline.lagP99Ms <= MAX_LAG_GROWTH_MS,
      growthPercent: 0,
    },
  ];
  return rows.map((row) => ({ ...row, growthPercent: growth(row.baseline, row.end) }));
}

export interface CountRow {
  readonly check: string;
  readonly expected: number;
  readonly actual: number;
  readonly ok: boolean;
}

/** /metrics (after traffic stopped and settled) against what the client sent and saw. */
export function countRows(metricsText: string, tallies: Tallies): CountRow[] {
  const rows: CountRow[] = [];
  const add = (check: string, expected: number, actual: number): void => {
    rows.push({ check, expected, actual, ok: expected === actual });
  };
  const samples = parseExposition(metricsText);
  const apiCountTotal = samples.filter((s) => s.name === 'apiCount').reduce((sum, s) => sum + s.value, 0);
  add('sum of apiCount = HTTP requests + websocket handshakes', httpTotals(tallies).sent + tallies.ws.attempted, apiCountTotal);
  const methodsSeen = new Set(samples.filter((s) => s.name === 'apiCount').map((s) => s.labels.method ?? ''));
  for (const method of new Set<string>([...METHODS, ...methodsSeen])) {
    const sent = (METHODS as readonly string[]).includes(method) ? tallies.http[method as (typeof METHODS)[number]].sent : 0;
    const expected = sent + (method === 'GET' ? tallies.ws.attempted : 0);
    const count = sampleValue(metricsText, 'apiCount', { method }) ?? 0;
    add(`apiCount{method="${method}"}${method === 'GET' ? ' (incl. websocket handshakes)' : ''}`, expected, count);
    add(`apiDuration_count{method="${method}"} = apiCount{method="${method}"}`, count, sampleValue(metricsText, 'apiDuration_count', { method }) ?? 0);
  }
  add('apiErrorCount{type="api"} = 5xx responses received', tallies.fail500 + tallies.unexpected5xx, sampleValue(metricsText, 'apiErrorCount', { type: 'api' }) ?? NaN);
  add('apiErrorCount{type="ws"} = 0', 0, sampleValue(metricsText, 'apiErrorCount', { type: 'ws' }) ?? NaN);
  return rows;
}

function formatNumber(value: number, unit: string): string {
  if (!Number.isFinite(value)) return String(value);
  if (unit === '') return String(Math.round(value));
  return value.toFixed(unit === 'ms' ? 2 : 1);
}

export function formatGrowth(percent: number): string {
  if (!Number.isFinite(percent)) return String(percent);
  return `${percent >= 0 ? '+' : ''}${percent.toFixed(1)} %`;
}

/** Left-aligned first column, right-aligned others, a rule under the header. */
export function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function resourceTable(rows: readonly ResourceRow[]): string {
  return table(
    ['metric', 'after warm-up', 'end', 'growth', 'limit', ''],
    rows.map((r) => [
      `${r.metric}${r.unit === '' ? '' : ` (${r.unit})`}`,
      formatNumber(r.baseline, r.unit),
      formatNumber(r.end, r.unit),
      formatGrowth(r.growthPercent),
      r.limit,
      r.ok ? 'ok' : 'FAIL',
    ]),
  );
}

/** What the client sent and how it ended, by method, beside what the upstream received. */
export function trafficTable(tallies: Tallies, upstream: UpstreamCounts): string {
  return table(
    ['method', 'sent', 'completed', 'aborted', '5xx', 'failed', 'upstream saw'],
    [
      ...METHODS.map((m) => {
        const t = tallies.http[m];
        return [m, t.sent, t.completed, t.aborted, t.status5xx, t.failed, upstream.requests[m] ?? 0].map(String);
      }),
      ['websocket', tallies.ws.attempted, tallies.ws.completed, 0, 0, tallies.ws.failed, upstream.wsConnections].map(String),
    ],
  );
}

export function countTable(rows: readonly CountRow[]): string {
  return table(
    ['count check', 'client tally', '/metrics', ''],
    rows.map((r) => [r.check, String(r.expected), String(r.actual), r.ok ? 'ok' : 'MISMATCH']),
  );
}

/** Writes `bench-results/soak-<timestamp>.json` under `root`; returns its path. */
export async function writeSummary(root: string, startedAt: Date, summary: unknown): Promise<string> {
  const dir = join(root, 'bench-results');
  await mkdir(dir, { recursive: true });
  const file = join(dir, `soak-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  await writeFile(file, `${JSON.stringify(summary, null, 2)}\n`);
  return file;
}
