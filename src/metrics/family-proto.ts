/**
 * Our families (families.ts) in the Prometheus protobuf exposition: one
 * MetricFamily message per family, each series' labels encoded once and
 * copied on every scrape. A histogram carries its classic buckets and, when
 * native histograms are on, its native buckets in the same message, so a
 * Prometheus that keeps classic histograms still gets them.
 *
 * Field numbers: client_model's io/prometheus/client/metrics.proto.
 */
import type { CounterFamily, CounterSeries, Exemplar, GaugeFamily, HistogramFamily, HistogramSeries } from './families.js';
import { type NativeBuckets, forEachSpan } from './native-histogram.js';
import { type ProtoWriter, doubleBytes, encodeOnce } from './proto-writer.js';

/** client_model's MetricType enum. */
export const MetricType = { Counter: 0, Gauge: 1, Summary: 2, Untyped: 3, Histogram: 4 } as const;
export type MetricType = (typeof MetricType)[keyof typeof MetricType];

const FAMILY = { name: 1, help: 2, type: 3, metric: 4 } as const;
const METRIC = { label: 1, gauge: 2, counter: 3, summary: 4, untyped: 5, histogram: 7 } as const;
const LABEL_PAIR = { name: 1, value: 2 } as const;
const VALUE = 1; // Gauge.value, Counter.value, Untyped.value
const SUMMARY = { count: 1, sum: 2, quantile: 3 } as const;
const QUANTILE = { quantile: 1, value: 2 } as const;
const HISTOGRAM = {
  count: 1,
  sum: 2,
  bucket: 3,
  schema: 5,
  zeroThreshold: 6,
  zeroCount: 7,
  positiveSpan: 12,
  positiveDelta: 13,
  exemplars: 16,
} as const;
const BUCKET = { cumulativeCount: 1, upperBound: 2, exemplar: 3 } as const;
const SPAN = { offset: 1, length: 2 } as const;
const EXEMPLAR = { label: 1, value: 2, timestamp: 3 } as const;
const TIMESTAMP = { seconds: 1, nanos: 2 } as const;

export interface ProtoOptions {
  /** Classic buckets beside native ones (always sent for a histogram without native buckets). */
  readonly classicBuckets: boolean;
}

/** Length varints of one byte: a message expected under 128 bytes (a longer one is moved, not broken). */
const SHORT = 1;

/** Repeated LabelPair fields of a Metric (or an Exemplar), from parallel names and values. */
export function writeLabelPairs(w: ProtoWriter, names: readonly string[], values: readonly string[]): void {
  for (let i = 0; i < names.length; i++) {
    const pair = w.begin(METRIC.label, SHORT);
    w.string(LABEL_PAIR.name, names[i] as string);
    w.string(LABEL_PAIR.value, values[i] ?? '');
    w.end(pair);
  }
}

function labelsOf(series: CounterSeries | HistogramSeries, names: readonly string[]): Buffer {
  series.protoLabels ??= encodeOnce((w) => writeLabelPairs(w, names, names.map((n) => series.labels[n] as string)));
  return series.protoLabels;
}

/** Opens the family's message: name, help, type. */
export function beginFamily(w: ProtoWriter, name: string, help: string, type: MetricType): number {
  const family = w.beginDelimited();
  w.string(FAMILY.name, name);
  w.string(FAMILY.help, help);
  w.uint(FAMILY.type, type);
  return family;
}

/** One Metric with a single value: counter, gauge or untyped. */
export function writeValueMetric(w: ProtoWriter, labels: Uint8Array, type: MetricType, value: number): void {
  const metric = w.begin(FAMILY.metric);
  w.raw(labels);
  const field = type === MetricType.Counter ? METRIC.counter : type === MetricType.Gauge ? METRIC.gauge : METRIC.untyped;
  const inner = w.begin(field, SHORT);
  w.double(VALUE, value);
  w.end(inner);
  w.end(metric);
}

export function writeSummaryMetric(
  w: ProtoWriter,
  labels: Uint8Array,
  summary: { readonly count: number; readonly sum: number; readonly quantiles: ReadonlyArray<readonly [number, number]> },
): void {
  const metric = w.begin(FAMILY.metric);
  w.raw(labels);
  const inner = w.begin(METRIC.summary);
  w.uint(SUMMARY.count, summary.count);
  w.double(SUMMARY.sum, summary.sum);
  for (const [quantile, value] of summary.quantiles) {
    const q = w.begin(SUMMARY.quantile, SHORT);
    w.double(QUANTILE.quantile, quantile);
    w.double(QUANTILE.value, value);
    w.end(q);
  }
  w.end(inner);
  w.end(metric);
}

function writeExemplar(w: ProtoWriter, field: number, exemplar: Exemplar): void {
  const message = w.begin(field);
  const names = Object.keys(exemplar.labelSet);
  writeLabelPairs(w, names, Object.values(exemplar.labelSet));
  w.double(EXEMPLAR.value, exemplar.value);
  const timestamp = w.begin(EXEMPLAR.timestamp, SHORT);
  const seconds = Math.floor(exemplar.timestamp);
  w.int(TIMESTAMP.seconds, seconds);
  const nanos = Math.round((exemplar.timestamp - seconds) * 1e9);
  if (nanos > 0 && nanos < 1e9) w.uint(TIMESTAMP.nanos, nanos);
  w.end(timestamp);
  w.end(message);
}

/** What a histogram Metric is made of, whoever holds it (our series, or prom-client's values). */
export interface HistogramData {
  /** Upper bounds, ascending, without +Inf. */
  readonly bounds: readonly number[];
  /** Per bucket, not cumulative; one more than bounds (+Inf last). Empty: no classic buckets. */
  readonly counts: ArrayLike<number>;
  readonly sum: number;
  readonly count: number;
  readonly exemplars?: ReadonlyArray<Exemplar | undefined> | undefined;
  readonly native?: Readonly<NativeBuckets> | undefined;
  readonly zeroThreshold?: number;
}

/** Each bound's 8 bytes, per bounds array (a family's buckets: the same array every scrape). */
const boundBytes = new WeakMap<readonly number[], readonly Uint8Array[]>();

function bytesOfBounds(bounds: readonly number[]): readonly Uint8Array[] {
  let bytes = boundBytes.get(bounds);
  if (bytes === undefined) {
    bytes = bounds.map(doubleBytes);
    boundBytes.set(bounds, bytes);
  }
  return bytes;
}

function writeClassicBuckets(w: ProtoWriter, h: HistogramData): void {
  const bounds = bytesOfBounds(h.bounds);
  const { counts, exemplars } = h;
  let cumulative = 0;
  // +Inf is implied by sample_count; Prometheus adds it back.
  for (let i = 0; i < bounds.length; i++) {
    cumulative += counts[i] as number;
    const exemplar = exemplars?.[i];
    if (exemplar === undefined) {
      // The common case, in one go: its length is known before it is written.
      w.uintDoubleMessage(HISTOGRAM.bucket, BUCKET.cumulativeCount, cumulative, BUCKET.upperBound, bounds[i] as Uint8Array);
      continue;
    }
    const bucket = w.begin(HISTOGRAM.bucket);
    w.uint(BUCKET.cumulativeCount, cumulative);
    w.double(BUCKET.upperBound, h.bounds[i] as number);
    writeExemplar(w, BUCKET.exemplar, exemplar);
    w.end(bucket);
  }
  const overflow = exemplars?.[h.bounds.length];
  if (overflow !== undefined) {
    // An exemplar above the last bound rides on an explicit +Inf bucket.
    const bucket = w.begin(HISTOGRAM.bucket);
    w.uint(BUCKET.cumulativeCount, h.count);
    w.double(BUCKET.upperBound, Infinity);
    writeExemplar(w, BUCKET.exemplar, overflow);
    w.end(bucket);
  }
}

function writeNativeBuckets(w: ProtoWriter, native: Readonly<NativeBuckets>, zeroThreshold: number): void {
  w.sint(HISTOGRAM.schema, native.schema);
  w.double(HISTOGRAM.zeroThreshold, zeroThreshold);
  w.uint(HISTOGRAM.zeroCount, native.zeroCount);
  const runs: number[] = [];
  forEachSpan(native, (gap, start, length) => {
    const span = w.begin(HISTOGRAM.positiveSpan, SHORT);
    w.sint(SPAN.offset, gap);
    w.uint(SPAN.length, length);
    w.end(span);
    runs.push(start, length);
  });
  if (runs.length === 0) {
    // No bucket yet: a no-op span still marks the histogram native for every Prometheus version.
    const span = w.begin(HISTOGRAM.positiveSpan, SHORT);
    w.end(span);
    return;
  }
  const deltas = w.begin(HISTOGRAM.positiveDelta, SHORT);
  let previous = 0;
  for (let r = 0; r < runs.length; r += 2) {
    const start = runs[r] as number;
    previous = w.packedDeltas(native.counts, start, start + (runs[r + 1] as number), previous);
  }
  w.end(deltas);
}

export function writeHistogramMetric(w: ProtoWriter, labels: Uint8Array, h: HistogramData, options: ProtoOptions): void {
  const metric = w.begin(FAMILY.metric);
  w.raw(labels);
  const inner = w.begin(METRIC.histogram);
  w.uint(HISTOGRAM.count, h.count);
  w.double(HISTOGRAM.sum, h.sum);
  if (h.native === undefined || options.classicBuckets) writeClassicBuckets(w, h);
  if (h.native !== undefined) {
    writeNativeBuckets(w, h.native, h.zeroThreshold ?? 0);
    // Native-only ingestion reads exemplars here; each carries its own timestamp, as Prometheus requires.
    if (h.exemplars !== undefined) for (const exemplar of h.exemplars) if (exemplar !== undefined) writeExemplar(w, HISTOGRAM.exemplars, exemplar);
  }
  w.end(inner);
  w.end(metric);
}

function encodeHistogramFamily(w: ProtoWriter, family: HistogramFamily, options: ProtoOptions): void {
  const start = beginFamily(w, family.name, family.help, MetricType.Histogram);
  const zeroThreshold = family.native?.zeroThreshold ?? 0;
  for (const series of family.seriesList()) {
    writeHistogramMetric(
      w,
      labelsOf(series, family.labelNames),
      { bounds: family.buckets, counts: series.counts, sum: series.sum, count: series.count, exemplars: series.exemplars, native: series.native, zeroThreshold },
      options,
    );
  }
  w.end(start);
}

/** One of our families as a MetricFamily message of the delimited stream. */
export function encodeFamily(w: ProtoWriter, family: CounterFamily | GaugeFamily | HistogramFamily, options: ProtoOptions): void {
  // As client_golang's Gather: a family without series is left out (the text formats keep its HELP and TYPE).
  if (family.seriesList().next().done === true) return;
  if (family.type === 'histogram') {
    encodeHistogramFamily(w, family, options);
    return;
  }
  const type = family.type === 'counter' ? MetricType.Counter : MetricType.Gauge;
  const start = beginFamily(w, family.name, family.help, type);
  for (const series of family.seriesList()) writeValueMetric(w, labelsOf(series, family.labelNames), type, series.value);
  w.end(start);
}
