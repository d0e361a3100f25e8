/**
 * prom-client's own metrics (the process and Node.js defaults, and anything
 * else registered the prom-client way) in the protobuf exposition, from the
 * values their `get()` answers: series grouped by their labels, a histogram's
 * `_bucket`/`_sum`/`_count` samples and a summary's quantiles put back
 * together into one Metric each.
 */
import {
  MetricType,
  beginFamily,
  writeHistogramMetric,
  writeLabelPairs,
  writeSummaryMetric,
  writeValueMetric,
} from '../metrics/family-proto.js';
import { type ProtoWriter, encodeOnce } from '../metrics/proto-writer.js';

/** One metric as prom-client's `get()` answers it. */
export interface MetricJson {
  readonly name: string;
  readonly help: string;
  readonly type: string;
  readonly values: ReadonlyArray<{
    readonly value: number;
    readonly labels: Readonly<Record<string, string | number | undefined>>;
    readonly metricName?: string;
  }>;
}

interface Grouped {
  readonly labels: Buffer;
  readonly bounds: number[];
  readonly cumulative: number[];
  readonly quantiles: Array<[number, number]>;
  sum: number;
  count: number;
}

const TYPES: Readonly<Record<string, MetricType>> = {
  counter: MetricType.Counter,
  gauge: MetricType.Gauge,
  histogram: MetricType.Histogram,
  summary: MetricType.Summary,
};

/** The metric's series, keyed by their labels without `le` or `quantile`. */
function group(metric: MetricJson): Map<string, Grouped> {
  const groups = new Map<string, Grouped>();
  for (const sample of metric.values) {
    const { le, quantile, ...rest } = sample.labels;
    const names = Object.keys(rest).sort();
    const values = names.map((n) => String(rest[n]));
    const key = JSON.stringify([names, values]);
    let g = groups.get(key);
    if (g === undefined) {
      const labels = encodeOnce((w) => writeLabelPairs(w, names, values));
      groups.set(key, (g = { labels, bounds: [], cumulative: [], quantiles: [], sum: 0, count: 0 }));
    }
    const suffix = sample.metricName?.slice(metric.name.length);
    if (suffix === '_sum') g.sum = sample.value;
    else if (suffix === '_count') g.count = sample.value;
    else if (le !== undefined && le !== '+Inf') {
      g.bounds.push(Number(le));
      g.cumulative.push(sample.value);
    } else if (quantile !== undefined) g.quantiles.push([Number(quantile), sample.value]);
    else if (le === undefined) g.sum = sample.value; // a counter's or gauge's own value
  }
  return groups;
}

/** Cumulative counts (prom-client's) → per-bucket counts plus the +Inf remainder, as HistogramData wants. */
function perBucket(cumulative: readonly number[], count: number): number[] {
  const counts = cumulative.map((c, i) => c - (i === 0 ? 0 : (cumulative[i - 1] as number)));
  counts.push(count - (cumulative[cumulative.length - 1] ?? 0));
  return counts;
}

export function encodeJsonMetric(w: ProtoWriter, metric: MetricJson): void {
  const type = TYPES[metric.type] ?? MetricType.Untyped;
  const groups = group(metric);
  if (groups.size === 0) return;
  const family = beginFamily(w, metric.name, metric.help, type);
  for (const g of groups.values()) {
    if (type === MetricType.Histogram) {
      const order = g.bounds.map((_, i) => i).sort((a, b) => (g.bounds[a] as number) - (g.bounds[b] as number));
      const bounds = order.map((i) => g.bounds[i] as number);
      const cumulative = order.map((i) => g.cumulative[i] as number);
      writeHistogramMetric(w, g.labels, { bounds, counts: perBucket(cumulative, g.count), sum: g.sum, count: g.count }, { classicBuckets: true });
    } else if (type === MetricType.Summary) {
      writeSummaryMetric(w, g.labels, { count: g.count, sum: g.sum, quantiles: g.quantiles });
    } else {
      writeValueMetric(w, g.labels, type, g.sum);
    }
  }
  w.end(family);
}
