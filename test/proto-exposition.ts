/**
 * Decoding the protobuf exposition with a real protobuf decoder (protobufjs,
 * from the schema in fixtures/prometheus-metrics.proto), and reading native
 * histograms back as Prometheus does: spans and deltas → absolute counts per
 * bucket key.
 */
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const root = protobuf.loadSync(fileURLToPath(new URL('./fixtures/prometheus-metrics.proto', import.meta.url)));
const MetricFamilyType = root.lookupType('io.prometheus.client.MetricFamily');

export interface LabelPair {
  name: string;
  value: string;
}
export interface Exemplar {
  label: LabelPair[];
  value: number;
  timestamp?: { seconds: number; nanos?: number };
}
export interface Histogram {
  sampleCount: number;
  sampleSum: number;
  bucket: Array<{ cumulativeCount: number; upperBound: number; exemplar?: Exemplar }>;
  schema?: number;
  zeroThreshold?: number;
  zeroCount?: number;
  positiveSpan: Array<{ offset?: number; length?: number }>;
  positiveDelta: number[];
  negativeSpan: Array<{ offset?: number; length?: number }>;
  exemplars: Exemplar[];
}
export interface Metric {
  label: LabelPair[];
  counter?: { value: number };
  gauge?: { value: number };
  untyped?: { value: number };
  summary?: { sampleCount: number; sampleSum: number; quantile: Array<{ quantile: number; value: number }> };
  histogram?: Histogram;
}
export interface MetricFamily {
  name: string;
  help: string;
  type: 'COUNTER' | 'GAUGE' | 'SUMMARY' | 'UNTYPED' | 'HISTOGRAM';
  metric: Metric[];
}

/** A delimited stream of MetricFamily messages, decoded; throws on any malformed byte. */
export function decodeExposition(body: Uint8Array): MetricFamily[] {
  const reader = protobuf.Reader.create(body);
  const families: MetricFamily[] = [];
  while (reader.pos < reader.len) {
    const message = MetricFamilyType.decodeDelimited(reader);
    families.push(
      MetricFamilyType.toObject(message, { longs: Number, enums: String, defaults: false, arrays: true }) as MetricFamily,
    );
  }
  return families;
}

export function labelsOf(metric: Metric): Record<string, string> {
  return Object.fromEntries(metric.label.map((l) => [l.name, l.value ?? '']));
}

/** The family's metric whose labels include `labels`. */
export function findMetric(families: readonly MetricFamily[], name: string, labels: Record<string, string> = {}): Metric | undefined {
  const family = families.find((f) => f.name === name);
  return family?.metric.find((m) => Object.entries(labels).every(([k, v]) => labelsOf(m)[k] === v));
}

/** A native histogram's positive buckets as key → count, as Prometheus reads spans and deltas. */
export function nativeBuckets(h: Histogram): Map<number, number> {
  const buckets = new Map<number, number>();
  let key = 0;
  let count = 0;
  let d = 0;
  h.positiveSpan.forEach((span) => {
    key += span.offset ?? 0;
    for (let j = 0; j < (span.length ?? 0); j++) {
      count += h.positiveDelta[d++] as number;
      if (count !== 0) buckets.set(key, count);
      key++;
    }
  });
  if (d !== h.positiveDelta.length) throw new Error(`${h.positiveDelta.length} deltas for ${d} buckets`);
  return buckets;
}

/** Bucket `key` at `schema`: (lower, upper]. */
export function bucketBounds(key: number, schema: number): [number, number] {
  const base = 2 ** (2 ** -schema);
  return [base ** (key - 1), base ** key];
}
