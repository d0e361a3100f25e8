/** The full-budget scrape's part of the report (scrape-budget.ts): times and sizes per format, memory, series. */
import { mib, ms, num, table } from './format.js';
import { BUDGET_PROXIES, type BudgetProxy, type BudgetResult, VARIANTS, VARIANT_IDS } from './scrape-budget.js';

const KIB = 1024;

const PROXY_LABELS: Readonly<Record<BudgetProxy, string>> = {
  main: 'metrics-proxy (defaults: classic + native buckets)',
  nativeOnly: 'metrics-proxy --no-protobuf-classic-buckets',
  control: 'metrics-proxy --metrics none (same traffic)',
};

/**
 * What the budget costs in memory: live memory (after a full GC) of main − control once both have
 * been scraped (the series then hold their encoded labels too), in total and per route; and how far
 * the scrapes pushed main's peak above its resident size before them.
 */
export function budgetMemoryCost(r: BudgetResult): {
  readonly liveBytes: number;
  readonly perRouteBytes: number;
  readonly rssBytes: number;
  readonly scrapePeakBytes: number;
} {
  const liveBytes = r.memory.main.scraped.liveBytes - r.memory.control.scraped.liveBytes;
  return {
    liveBytes,
    perRouteBytes: liveBytes / r.routes,
    rssBytes: r.memory.main.scraped.rssBytes - r.memory.control.scraped.rssBytes,
    scrapePeakBytes: r.memory.main.scraped.hwmBytes - r.memory.main.filled.rssBytes,
  };
}

export function budgetSection(r: BudgetResult | undefined, error: string | undefined): string {
  const title = '### /metrics scrape at the full route budget (--max-routes 2000, both families, native histograms on)';
  if (r === undefined) return `${title}\n\nFailed: ${error ?? '?'}`;
  const cost = budgetMemoryCost(r);
  const samples = r.timings.text.samples;
  const classic = r.series.reduce((n, s) => n + s.classic, 0);
  const labelSets = r.series.reduce((n, s) => n + s.labelSets, 0);
  return [
    title,
    '',
    `${num(r.routesSeen)} routes learned (overflow counter ${num(r.overflow)}), ${num(r.requests)} requests sent to each proxy in ${num(r.fillS)} s ` +
      `(${num(r.unexpected)} unexpected statuses); ${samples} timed scrapes per format after 2 warm-up rounds, in rounds over the formats, ` +
      'one at a time on a keep-alive connection; time = request sent → last byte received; CPU = the proxy\'s utime + stime per scrape.',
    '',
    table(
      ['format', 'median ms', 'p90 ms', 'max ms', 'CPU ms', 'wire KiB', 'decoded KiB'],
      ['l', 'r', 'r', 'r', 'r', 'r', 'r'],
      VARIANT_IDS.map((id) => {
        const t = r.timings[id];
        return [VARIANTS[id].title, ms(t.medianMs), ms(t.p90Ms), ms(t.maxMs), ms(t.cpuMs), num(t.bytes / KIB), num(t.decodedBytes / KIB)];
      }),
    ),
    '',
    table(
      ['process', 'live MiB: at start', 'after the fill', 'after the scrapes', 'RSS MiB: at start', 'after the fill', 'after the scrapes', 'peak (VmHWM)'],
      ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
      BUDGET_PROXIES.map((p) => {
        const m = r.memory[p];
        return [
          PROXY_LABELS[p],
          mib(m.start.liveBytes),
          mib(m.filled.liveBytes),
          mib(m.scraped.liveBytes),
          mib(m.start.rssBytes),
          mib(m.filled.rssBytes),
          mib(m.scraped.rssBytes),
          mib(m.scraped.hwmBytes),
        ];
      }),
    ),
    '',
    'Each reading follows a full garbage collection in the process (test/bench/memory-probe.mjs); live = V8 heap in use + memory outside it (Buffers). ' +
      `The budget keeps ${mib(cost.liveBytes)} MiB alive over the same traffic without metrics, ${num(cost.perRouteBytes / KIB, 1)} KiB per route ` +
      `(RSS: ${mib(cost.rssBytes)} MiB more); the scrapes raised the peak ${mib(cost.scrapePeakBytes)} MiB above the RSS before them.`,
    '',
    table(
      ['histogram', 'label sets', 'classic series (buckets + _sum + _count)', 'native series'],
      ['l', 'r', 'r', 'r'],
      [
        ...r.series.map((s) => [s.family, num(s.labelSets), num(s.classic), num(s.labelSets)]),
        ['all route-labelled histograms', num(labelSets), num(classic), num(labelSets)],
      ],
    ),
  ].join('\n');
}
