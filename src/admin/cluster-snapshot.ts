/**
 * What a `--workers` worker hands the primary at each scrape: its registry in a compact form.
 * Our families (metrics/families.ts) travel as a few flat arrays each — every series' label
 * values in one string array, every number in one Float64Array — which node:cluster's advanced
 * serialization copies as bytes; prom-client's own metrics (process_*, nodejs_*: few) travel as
 * their `get()` answers, for AggregatorRegistry's per-metric aggregators.
 *
 * Plain data only: no classes cross the IPC channel; cluster-merge.ts sums these into families on
 * the other side. The primary's sum, sent back to the worker being scraped, takes the same form.
 */
import type { Registry } from 'prom-client';
import { CounterFamily, type Exemplar, GaugeFamily, HistogramFamily } from '../metrics/families.js';
import type { NativeBuckets, NativeHistogramSettings } from '../metrics/native-histogram.js';

/** One metric of prom-client's `get()` (what `registry.getMetricsAsJSON()` lists). */
export interface MetricJson {
  readonly name: string;
  readonly help: string;
  readonly type: string;
  readonly aggregator?: string;
  readonly values: ReadonlyArray<{
    readonly value: number;
    readonly labels: Readonly<Record<string, string | number>>;
    readonly metricName?: string;
  }>;
}

interface SnapshotBase {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  /** Every series' label values in labelNames order, series after series. */
  readonly labelValues: readonly string[];
}

export interface ValueSnapshot extends SnapshotBase {
  readonly kind: 'counter' | 'gauge';
  /** One value per series. */
  readonly values: Float64Array;
}

/** An exemplar with the series (index in the snapshot) and the bucket it belongs to. */
export interface SnapshotExemplar {
  readonly series: number;
  readonly bucket: number;
  readonly exemplar: Exemplar;
}

export interface HistogramSnapshot extends SnapshotBase {
  readonly kind: 'histogram';
  readonly buckets: readonly number[];
  readonly native: NativeHistogramSettings | undefined;
  /** Per series, buckets.length + 3 numbers: the count of each bucket (not cumulative, +Inf last), the sum, the count. */
  readonly values: Float64Array;
  /**
   * Per series (when native is set): schema, zero count, the key of the first populated bucket, the
   * number n of buckets from there to the last populated one, then those n counts.
   */
  readonly nativeBuckets: Float64Array | undefined;
  readonly exemplars: readonly SnapshotExemplar[];
}

export type FamilySnapshot = ValueSnapshot | HistogramSnapshot;

/** A registry in the compact form, in registration order. */
export interface Collection {
  readonly metrics: ReadonlyArray<FamilySnapshot | MetricJson>;
}

export const NATIVE_HEADER = 4;

export function isFamilySnapshot(metric: FamilySnapshot | MetricJson): metric is FamilySnapshot {
  return 'kind' in metric;
}

type OwnFamily = CounterFamily | GaugeFamily | HistogramFamily;

export function isOwnFamily(metric: unknown): metric is OwnFamily {
  return metric instanceof CounterFamily || metric instanceof GaugeFamily || metric instanceof HistogramFamily;
}

function labelValuesOf(family: OwnFamily): string[] {
  const out: string[] = [];
  for (const series of family.seriesList()) for (const name of family.labelNames) out.push(series.labels[name] as string);
  return out;
}

function snapshotValues(family: CounterFamily | GaugeFamily): ValueSnapshot {
  const values: number[] = [];
  for (const series of family.seriesList()) values.push(series.value);
  return {
    kind: family.type,
    name: family.name,
    help: family.help,
    labelNames: family.labelNames,
    labelValues: labelValuesOf(family),
    values: Float64Array.from(values),
  };
}

/** The populated part of a series' native window: [first, last + 1) indices, empty when nothing is populated. */
function populatedRange(counts: Float64Array): [number, number] {
  let first = 0;
  while (first < counts.length && counts[first] === 0) first++;
  let end = counts.length;
  while (end > first && counts[end - 1] === 0) end--;
  return [first, end];
}

function nativeOf(natives: ReadonlyArray<NativeBuckets | undefined>): Float64Array {
  let length = 0;
  const ranges = natives.map((native) => {
    const range = native === undefined ? ([0, 0] as [number, number]) : populatedRange(native.counts);
    length += NATIVE_HEADER + range[1] - range[0];
    return range;
  });
  const out = new Float64Array(length);
  let at = 0;
  natives.forEach((native, i) => {
    const [first, end] = ranges[i] as [number, number];
    out[at] = native?.schema ?? 0;
    out[at + 1] = native?.zeroCount ?? 0;
    out[at + 2] = (native?.offset ?? 0) + first;
    out[at + 3] = end - first;
    if (native !== undefined) out.set(native.counts.subarray(first, end), at + NATIVE_HEADER);
    at += NATIVE_HEADER + end - first;
  });
  return out;
}

function snapshotHistogram(family: HistogramFamily): HistogramSnapshot {
  const stride = family.buckets.length + 3;
  const series = [...family.seriesList()];
  const values = new Float64Array(series.length * stride);
  const exemplars: SnapshotExemplar[] = [];
  series.forEach((s, i) => {
    const at = i * stride;
    values.set(s.counts, at);
    values[at + stride - 2] = s.sum;
    values[at + stride - 1] = s.count;
    s.exemplars?.forEach((exemplar, bucket) => {
      if (exemplar !== undefined) exemplars.push({ series: i, bucket, exemplar });
    });
  });
  return {
    kind: 'histogram',
    name: family.name,
    help: family.help,
    labelNames: family.labelNames,
    labelValues: labelValuesOf(family),
    buckets: family.buckets,
    native: family.native,
    values,
    nativeBuckets: family.native === undefined ? undefined : nativeOf(series.map((s) => s.native)),
    exemplars,
  };
}

export function snapshotFamily(family: OwnFamily): FamilySnapshot {
  return family instanceof HistogramFamily ? snapshotHistogram(family) : snapshotValues(family);
}

/** The registry as a worker hands it over: our families compact, prom-client's as `get()` answers them. */
export async function collectRegistry(registry: Registry): Promise<Collection> {
  const metrics = await Promise.all(
    registry.getMetricsAsArray().map((metric) =>
      isOwnFamily(metric) ? Promise.resolve(snapshotFamily(metric)) : (metric as unknown as { get(): Promise<MetricJson> }).get(),
    ),
  );
  return { metrics };
}
