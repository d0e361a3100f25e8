/**
 * The `--workers` scrape: one exposition summing every worker's registry (prom-client's
 * AggregatorRegistry.aggregate, each metric by its own aggregator), in which counters never go
 * backwards when a worker dies. What a worker had counted by its last collection stays in the sum
 * after it exits: its counters and histograms (cumulative, so summed; gauges die with it) are folded
 * into one running total of every retired worker, whose size is bounded by the series ever seen, not
 * by the number of crashes. No node:cluster here: the primary (cli/cluster.ts) feeds it.
 */
import { AggregatorRegistry } from 'prom-client';

/** One sample of `registry.getMetricsAsJSON()`. */
export interface ValueJson {
  readonly value: number;
  readonly labels: Readonly<Record<string, string | number>>;
  readonly metricName?: string;
}

/** One metric of `registry.getMetricsAsJSON()`, as it crosses the IPC channel. */
export interface MetricJson {
  readonly name: string;
  readonly help: string;
  readonly type: string;
  readonly aggregator?: string;
  readonly values: readonly ValueJson[];
}

export interface ClusterSum {
  /** A live worker's latest collection: what stays in the sum if it exits. */
  seen(workerId: number, metrics: readonly MetricJson[]): void;
  /** The worker exited: fold its last collection's counters and histograms into the retired total. */
  retire(workerId: number): void;
  /** This scrape's collections from the live workers, plus the retired total, as Prometheus text. */
  render(collected: readonly (readonly MetricJson[])[]): Promise<string>;
  /** The retired total: one metric per name, one value per series, however many workers retired. */
  retired(): readonly MetricJson[];
}

const cumulative = (metric: MetricJson): boolean => metric.type === 'counter' || metric.type === 'histogram';

function seriesKey(value: ValueJson): string {
  const labels = Object.entries(value.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `${value.metricName ?? ''}\u0000${JSON.stringify(labels)}`;
}

interface Totals {
  readonly metric: Omit<MetricJson, 'values'>;
  readonly series: Map<string, ValueJson>;
}

/** Adds a metric's values into the running totals, series by series. */
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
  const lastSeen = new Map<number, readonly MetricJson[]>();
  const totals = new Map<string, Totals>();
  let retired: MetricJson[] = [];

  return {
    seen(workerId, metrics) {
      lastSeen.set(workerId, metrics);
    },
    retire(workerId) {
      const seen = lastSeen.get(workerId);
      lastSeen.delete(workerId);
      if (seen === undefined) return;
      for (const metric of seen) if (cumulative(metric)) addInto(totals, metric);
      retired = [...totals.values()].map(({ metric, series }) => ({ ...metric, values: [...series.values()] }));
    },
    render(collected) {
      return AggregatorRegistry.aggregate([...collected, retired]).metrics();
    },
    retired: () => retired,
  };
}
