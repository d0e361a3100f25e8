/**
 * Our own metric families: counters, gauges and histograms whose series are
 * looked up once per label set and then updated with plain arithmetic, and
 * which render their own exposition text from label strings built once.
 *
 * Why not prom-client's classes: its `inc`/`observe` validate and hash the
 * label object on every call, and its formatter rebuilds every label string on
 * every scrape, which made a scrape of a full route budget cost 75–120 ms of
 * blocked event loop. These families keep prom-client's contract — they
 * register on a prom-client Registry and answer `get()` in its JSON shape, so
 * `getMetricsAsJSON`, the cluster aggregation and `registry.metrics()` keep
 * working — and add `render()`, which the exposition uses instead.
 *
 * One trap, shared with prom-client's own counters: prom-client's `registry.metrics()` on a registry
 * in OpenMetrics mode renames counters (`x_total` → `x`) and never renames them back. The exposition
 * never calls it that way (exposition.ts renders these families itself and restores prom-client's).
 */
import type { Registry } from 'prom-client';
import { type NativeBuckets, type NativeHistogramSettings, createNativeBuckets, observeNative } from './native-histogram.js';
import { COMMA, type LineOpeners, TextWriter, encoded, escapeHelp, formatNumber, labelText, lineOpeners, openLine, textLabelsOf, writeNumber } from './text-writer.js';
import { type Exemplar, type ExemplarLabels, exemplarOf } from './exemplars.js';

export { escapeLabelValue, formatNumber } from './text-writer.js';
export type { Exemplar, ExemplarLabels } from './exemplars.js';

type MetricType = 'counter' | 'gauge' | 'histogram';

export interface FamilyOptions {
  readonly name: string;
  readonly help: string;
  readonly labelNames?: readonly string[];
  /** Where the family is exposed; undefined for a family built to be rendered on its own (a cluster-wide sum). */
  readonly registry: Registry | undefined;
}

/** One value of prom-client's `get()` answer. */
interface ValueJson {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
  exemplar?: { labelSet: Record<string, string>; value: number; timestamp: number };
}

abstract class Family<S extends { readonly labels: Readonly<Record<string, string>>; readonly labelText: string; textLabels: Buffer | undefined }> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  readonly aggregator = 'sum';
  abstract readonly type: MetricType;
  protected readonly children = new Map<string, S>();

  constructor(options: FamilyOptions) {
    this.name = options.name;
    this.help = options.help;
    this.labelNames = options.labelNames ?? [];
    // A registry treats anything with name, help, type and get() as a metric.
    options.registry?.registerMetric(this as never);
  }

  /** Every series, in creation order: for the exposition formats that render from outside (protobuf). */
  seriesList(): IterableIterator<S> {
    return this.children.values();
  }

  /** The series of these label values (in labelNames order), created on first use. Callers on a hot path keep it. */
  series(...values: string[]): S {
    if (values.length !== this.labelNames.length) {
      throw new TypeError(`${this.name}: expected ${this.labelNames.length} label values, got ${values.length}`);
    }
    // One value is its own key; several are JSON-encoded, which no value can forge (a joined key could).
    const key = values.length === 1 ? (values[0] as string) : JSON.stringify(values);
    let child = this.children.get(key);
    if (child === undefined) {
      const labels: Record<string, string> = {};
      this.labelNames.forEach((name, i) => {
        labels[name] = values[i] as string;
      });
      child = this.create(Object.freeze(labels), labelText(this.labelNames, values));
      this.children.set(key, child);
    }
    return child;
  }

  protected abstract create(labels: Readonly<Record<string, string>>, labelText: string): S;
  /** Writes the series' sample lines, each preceded by its newline. */
  protected abstract writeSeries(child: S, openMetrics: boolean, w: TextWriter): void;
  protected abstract valuesOf(child: S): ValueJson[];

  /** The name and type line OpenMetrics wants; counters drop `_total` there, and unsuffixed ones become `unknown`. */
  protected header(_openMetrics: boolean): { readonly family: string; readonly type: string } {
    return { family: this.name, type: this.type };
  }

  /** The family in a text format: its HELP and TYPE lines, then a line per sample, without a final newline. */
  render(openMetrics: boolean): string {
    const w = new TextWriter();
    this.renderTo(w, openMetrics);
    return w.finish().toString('utf8');
  }

  /** What render() returns, written into `w` (the exposition writes every family into one buffer). */
  renderTo(w: TextWriter, openMetrics: boolean): void {
    const { family, type } = this.header(openMetrics);
    w.string(`# HELP ${family} ${escapeHelp(this.help, openMetrics)}\n# TYPE ${family} ${type}`);
    for (const child of this.children.values()) this.writeSeries(child, openMetrics, w);
  }

  /**
   * prom-client's `get()` shape (labels spread, `metricName` on histogram samples), for aggregation and JSON.
   * A registry awaits it; the values are at hand, so the promise is already settled.
   */
  get(): Promise<{ name: string; help: string; type: MetricType; values: ValueJson[]; aggregator: string }> {
    const values: ValueJson[] = [];
    for (const child of this.children.values()) values.push(...this.valuesOf(child));
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator });
  }

  reset(): void {
    this.children.clear();
  }
}

export interface CounterSeries {
  readonly labels: Readonly<Record<string, string>>;
  readonly labelText: string;
  /** labelText as bytes, encoded at the first text scrape. */
  textLabels: Buffer | undefined;
  /** The labels as protobuf LabelPair fields, encoded at the first protobuf scrape. */
  protoLabels: Buffer | undefined;
  value: number;
}

export class CounterFamily extends Family<CounterSeries> {
  readonly type = 'counter';

  protected create(labels: Readonly<Record<string, string>>, text: string): CounterSeries {
    return { labels, labelText: text, textLabels: undefined, protoLabels: undefined, value: 0 };
  }

  protected override header(openMetrics: boolean): { readonly family: string; readonly type: string } {
    if (!openMetrics) return { family: this.name, type: 'counter' };
    // OpenMetrics would rename `apiCount` to `apiCount_total`; typed `unknown`, the recipe's names survive.
    return this.name.endsWith('_total')
      ? { family: this.name.slice(0, -'_total'.length), type: 'counter' }
      : { family: this.name, type: 'unknown' };
  }

  private readonly opener = lineOpeners(this.name);

  protected writeSeries(child: CounterSeries, _openMetrics: boolean, w: TextWriter): void {
    openLine(w, this.opener, textLabelsOf(child));
    writeNumber(w, child.value);
  }

  protected valuesOf(child: CounterSeries): ValueJson[] {
    return [{ labels: { ...child.labels }, value: child.value }];
  }
}

export class GaugeFamily extends Family<CounterSeries> {
  readonly type = 'gauge';

  protected create(labels: Readonly<Record<string, string>>, text: string): CounterSeries {
    return { labels, labelText: text, textLabels: undefined, protoLabels: undefined, value: 0 };
  }

  private readonly opener = lineOpeners(this.name);

  protected writeSeries(child: CounterSeries, _openMetrics: boolean, w: TextWriter): void {
    openLine(w, this.opener, textLabelsOf(child));
    writeNumber(w, child.value);
  }

  protected valuesOf(child: CounterSeries): ValueJson[] {
    return [{ labels: { ...child.labels }, value: child.value }];
  }
}

export interface HistogramSeries {
  readonly labels: Readonly<Record<string, string>>;
  readonly labelText: string;
  /** labelText as bytes, encoded at the first text scrape. */
  textLabels: Buffer | undefined;
  /** The labels as protobuf LabelPair fields, encoded at the first protobuf scrape. */
  protoLabels: Buffer | undefined;
  /** Per bucket, not cumulative; the last slot is +Inf. */
  readonly counts: Float64Array;
  sum: number;
  count: number;
  /** The latest exemplar per bucket (last slot +Inf), allocated with the first one. */
  exemplars: Array<Exemplar | undefined> | undefined;
  /** The same observations in native buckets; undefined when native histograms are off. */
  readonly native: NativeBuckets | undefined;
}

export interface HistogramOptions extends FamilyOptions {
  readonly buckets: readonly number[];
  /** Native buckets beside the classic ones (--native-histogram-*); undefined: classic only. */
  readonly native?: NativeHistogramSettings | undefined;
}

export class HistogramFamily extends Family<HistogramSeries> {
  readonly type = 'histogram';
  readonly buckets: readonly number[];
  readonly native: NativeHistogramSettings | undefined;
  /** `le="…"} ` per bucket (+Inf last), as bytes, built once. */
  private readonly bucketLabels: readonly Buffer[];
  private readonly openers: { readonly bucket: Buffer; readonly sum: LineOpeners; readonly count: LineOpeners };

  constructor(options: HistogramOptions) {
    super(options);
    this.buckets = Object.freeze([...options.buckets]);
    this.native = options.native;
    this.bucketLabels = [...this.buckets.map(formatNumber), '+Inf'].map((le) => encoded(`le="${le}"} `));
    this.openers = { bucket: encoded(`\n${this.name}_bucket{`), sum: lineOpeners(`${this.name}_sum`), count: lineOpeners(`${this.name}_count`) };
  }

  protected create(labels: Readonly<Record<string, string>>, text: string): HistogramSeries {
    return {
      labels,
      labelText: text,
      textLabels: undefined,
      protoLabels: undefined,
      counts: new Float64Array(this.buckets.length + 1),
      sum: 0,
      count: 0,
      exemplars: undefined,
      native: this.native === undefined ? undefined : createNativeBuckets(this.native.schema),
    };
  }

  /** Counts `value` (non-finite and negative values count as 0: a metric must never break a request). */
  observe(series: HistogramSeries, value: number, exemplar?: ExemplarLabels): void {
    const v = Number.isFinite(value) && value > 0 ? value : 0;
    const { buckets } = this;
    let i = 0;
    while (i < buckets.length && v > (buckets[i] as number)) i++;
    series.counts[i] = (series.counts[i] as number) + 1;
    series.sum += v;
    series.count += 1;
    if (series.native !== undefined) observeNative(series.native, this.native as NativeHistogramSettings, v);
    if (exemplar !== undefined) {
      series.exemplars ??= new Array<Exemplar | undefined>(buckets.length + 1);
      series.exemplars[i] = exemplarOf(exemplar, v);
    }
  }

  protected writeSeries(child: HistogramSeries, openMetrics: boolean, w: TextWriter): void {
    const labels = textLabelsOf(child);
    const { counts, exemplars } = child;
    const { bucketLabels, openers } = this;
    let cumulative = 0;
    for (let i = 0; i < bucketLabels.length; i++) {
      cumulative += counts[i] as number;
      w.bytes(openers.bucket);
      if (labels !== undefined) {
        w.bytes(labels);
        w.byte(COMMA);
      }
      w.bytes(bucketLabels[i] as Buffer);
      w.integer(cumulative);
      const exemplar = openMetrics ? exemplars?.[i] : undefined;
      if (exemplar !== undefined) w.string(` # {${exemplar.labelText}} ${formatNumber(exemplar.value)} ${exemplar.timestamp}`);
    }
    openLine(w, openers.sum, labels);
    writeNumber(w, child.sum);
    openLine(w, openers.count, labels);
    w.integer(child.count);
  }

  protected valuesOf(child: HistogramSeries): ValueJson[] {
    const values: ValueJson[] = [];
    let cumulative = 0;
    for (let i = 0; i <= this.buckets.length; i++) {
      cumulative += child.counts[i] as number;
      const value: ValueJson = {
        labels: { ...child.labels, le: i < this.buckets.length ? (this.buckets[i] as number) : '+Inf' },
        value: cumulative,
        metricName: `${this.name}_bucket`,
      };
      const exemplar = child.exemplars?.[i];
      if (exemplar !== undefined) value.exemplar = { labelSet: { ...exemplar.labelSet }, value: exemplar.value, timestamp: exemplar.timestamp };
      values.push(value);
    }
    values.push(
      { labels: { ...child.labels }, value: child.sum, metricName: `${this.name}_sum` },
      { labels: { ...child.labels }, value: child.count, metricName: `${this.name}_count` },
    );
    return values;
  }
}
