/**
 * The `--workers` scrape: the primary sums every worker's collection exactly (cluster-merge.ts)
 * into one collection, which the scraped worker renders in the format the scraper asked for
 * (createSumRenderer). Counters never go backwards when a worker dies: what a worker had counted
 * by its last collection stays in the sum after it exits. Its counters and histograms (cumulative,
 * so summed, native buckets included; gauges die with it) are folded into one running total of
 * every retired worker, whose size is bounded by the series ever seen, not by the number of
 * crashes. No node:cluster here: the primary (cli/cluster.ts) feeds it.
 */
import { Registry } from 'prom-client';
import { type ExpositionFormat, type Rendered, createRenderer } from './exposition.js';
import type { ProtoOptions } from '../metrics/family-proto.js';
import { collectionOf, createCollectionMerger, createFamilyMerger, fillRegistry } from './cluster-merge.js';
import { type Collection, type FamilySnapshot, type MetricJson, isFamilySnapshot, snapshotFamily } from './cluster-snapshot.js';

export type { Collection, MetricJson } from './cluster-snapshot.js';

export interface ClusterSum {
  /** A live worker's latest collection: what stays in the sum if it exits. */
  seen(workerId: number, collection: Collection): void;
  /** The worker exited: fold its last collection's counters and histograms into the retired total. */
  retire(workerId: number): void;
  /** This scrape's collections from the live workers, plus the retired total, summed into one. */
  sum(collected: readonly Collection[]): Collection;
  /** The retired total: one metric per name, one series per label set, however many workers retired. */
  retired(): Collection;
}

type Metric = Collection['metrics'][number];
type ValueJson = MetricJson['values'][number];

const cumulative = (metric: Metric): boolean =>
  isFamilySnapshot(metric) ? metric.kind !== 'gauge' : metric.type === 'counter' || metric.type === 'histogram';

function seriesKey(value: ValueJson): string {
  const labels = Object.entries(value.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `${value.metricName ?? ''}\u0000${JSON.stringify(labels)}`;
}

interface Totals {
  readonly metric: Omit<MetricJson, 'values'>;
  readonly series: Map<string, ValueJson>;
}

/** Adds one of prom-client's metrics into the running totals, series by series. */
function addInto(totals: Map<string, Totals>, metric: MetricJson): void {
  let into = totals.get(metric.name);
  if (into === undefined) {
    const { values: _values, ...meta } = metric;
    totals.set(metric.name, (into = { metric: meta, series: new Map() }));
  }
  for (const value of metric.values) {
    const key = seriesKey(value);
    const before = into.series.get(key);
    into.series.set(key, before === undefined ? value : { ...before, value: before.value + value.value });
  }
}

export function createClusterSum(): ClusterSum {
  const lastSeen = new Map<number, Collection>();
  const families = createFamilyMerger();
  const others = new Map<string, Totals>();
  let retired: Collection = { metrics: [] };
  const merge = createCollectionMerger();

  return {
    seen(workerId, collection) {
      lastSeen.set(workerId, collection);
    },
    retire(workerId) {
      const seen = lastSeen.get(workerId);
      lastSeen.delete(workerId);
      if (seen === undefined) return;
      for (const metric of seen.metrics) {
        if (!cumulative(metric)) continue;
        if (isFamilySnapshot(metric)) families.add(metric);
        else addInto(others, metric);
      }
      const ours: FamilySnapshot[] = [...families.families.values()].map(snapshotFamily);
      const theirs: MetricJson[] = [...others.values()].map(({ metric, series }) => ({ ...metric, values: [...series.values()] }));
      retired = { metrics: [...ours, ...theirs] };
    },
    sum: (collected) => collectionOf(merge([...collected, retired])),
    retired: () => retired,
  };
}

/**
 * The worker's side: the primary's sum in the format the scraper asked for. One render at a time,
 * since the next merge zeroes the families the last one rendered; one registry and renderer
 * throughout, refilled each time, so that the renderer sizes its buffer after the last render.
 */
export function createSumRenderer(protobuf: ProtoOptions = { classicBuckets: true }): (sum: Collection, format: ExpositionFormat) => Promise<Rendered> {
  const merge = createCollectionMerger();
  const registry = new Registry();
  const render = createRenderer(registry, protobuf);
  let queue: Promise<unknown> = Promise.resolve();
  return (sum, format) => {
    const rendered = queue.then(() => {
      fillRegistry(registry, merge([sum]));
      return render(format);
    });
    queue = rendered.catch(() => {});
    return rendered;
  };
}
