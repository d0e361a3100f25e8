/**
 * Reading prom-client's own values back out of a registry, for the status data: the samples of one
 * metric, their sum, and a histogram's samples as bucket bounds with cumulative counts per key.
 */
import type { Registry } from 'prom-client';
import type { Latency } from './status-snapshot.js';

/** One sample of prom-client's `metric.get()`. */
export interface Sample {
  readonly value: number;
  readonly labels: Readonly<Record<string, string | number | undefined>>;
  readonly metricName?: string;
}

/** The metric's samples; undefined when the registry has no metric of that name (its family is off). */
export async function samples(registry: Registry, name: string): Promise<Sample[] | undefined> {
  const metric = registry.getSingleMetric(name);
  return metric === undefined ? undefined : (await metric.get()).values;
}

export function sum(values: readonly Sample[]): number {
  return values.reduce((total, s) => total + s.value, 0);
}

export interface Buckets {
  /** Over every key. */
  readonly latency: Latency;
  /** Cumulative counts on latency.bounds plus +Inf, per key. */
  readonly perKey: ReadonlyMap<string, number[]>;
}

function bucketBounds(values: readonly Sample[]): number[] {
  const found = new Set<number>();
  for (const s of values) if (s.metricName?.endsWith('_bucket') && typeof s.labels.le === 'number') found.add(s.labels.le);
  return [...found].sort((a, b) => a - b);
}

/** Histogram samples → bucket bounds (ascending, times `scale`) and, per key, cumulative counts on them plus +Inf. */
export function buckets(values: readonly Sample[], scale: number, keyOf: (s: Sample) => string): Buckets {
  const raw = bucketBounds(values);
  const index = new Map(raw.map((le, i) => [le, i]));
  const perKey = new Map<string, number[]>();
  let total = 0;
  for (const s of values) {
    if (s.metricName?.endsWith('_sum')) total += s.value;
    if (!s.metricName?.endsWith('_bucket')) continue;
    const key = keyOf(s);
    let counts = perKey.get(key);
    if (counts === undefined) perKey.set(key, (counts = new Array<number>(raw.length + 1).fill(0)));
    const at = s.labels.le === '+Inf' ? raw.length : index.get(s.labels.le as number);
    if (at !== undefined) counts[at] = (counts[at] as number) + s.value;
  }
  const all = new Array<number>(raw.length + 1).fill(0);
  for (const counts of perKey.values()) counts.forEach((c, i) => (all[i] = (all[i] as number) + c));
  return { latency: { bounds: raw.map((b) => b * scale), counts: all, sum: total * scale }, perKey };
}
