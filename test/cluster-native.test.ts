/**
 * `--workers`: the cluster-wide sum in every exposition format, exact for native histograms.
 * End to end against the built bin (requests spread over both workers, each format scraped), then
 * the merge itself on synthetic workers: native buckets at different schemas, a retired worker,
 * exemplars, repeated scrapes, prom-client's own metrics.
 */
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { Counter, Gauge, Registry } from 'prom-client';
import { type Collection, createClusterSum, createSumRenderer } from '../src/admin/cluster-sum.js';
import { collectRegistry } from '../src/admin/cluster-snapshot.js';
import { CONTENT_TYPES, createRenderer } from '../src/admin/exposition.js';
import { CounterFamily, GaugeFamily, HistogramFamily } from '../src/metrics/families.js';
import { DEFAULT_ZERO_THRESHOLD, type NativeHistogramSettings, bucketKey } from '../src/metrics/native-histogram.js';
import { LOOPBACK, startListening } from './bin.js';
import { httpRequest, parseExposition, sampleValue, startUpstream, until } from './helpers.js';
import { type Histogram, type MetricFamily, decodeExposition, findMetric, nativeBuckets } from './proto-exposition.js';

const PROTOBUF_ACCEPT =
  'application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3';
const OPENMETRICS_ACCEPT = 'application/openmetrics-text;version=1.0.0';

/** The bin with `--workers 2` (and `extra`) in front of an upstream that answers `ok`, once both workers listen. */
async function startCluster(extra: readonly string[] = []): Promise<string> {
  const upstream = await startUpstream((_req, res) => res.end('ok'));
  onTestFinished(upstream.close);
  const { bin, url } = await startListening([...LOOPBACK, '--port', '0', '--upstream', upstream.url, '--workers', '2', ...extra]);
  onTestFinished(async () => {
    process.kill(bin.pid, 'SIGTERM');
    await bin.exited;
  });
  await until(() => (bin.stdout().match(/"msg":"listening"/g) ?? []).length === 2, 'both workers to listen', 10_000);
  return url;
}

/** `count` GETs, each on a connection of its own (the primary deals connections to the workers in turn), over `routes` routes. */
async function sendRequests(url: string, count: number, routes: number): Promise<void> {
  for (let i = 0; i < count; i++) expect((await httpRequest(`${url}/api/w${i % routes}`)).status).toBe(200);
}

/** The routes each worker answering /metrics/routes knows: one distinct set per worker reached. */
async function routeSetsByWorker(url: string, probes: number): Promise<Set<string>> {
  const sets = new Set<string>();
  for (let i = 0; i < probes; i++) {
    const { routes } = JSON.parse((await httpRequest(`${url}/metrics/routes`)).body.toString()) as { routes: Array<{ route: string }> };
    sets.add(JSON.stringify(routes.map((r) => r.route).sort()));
  }
  return sets;
}

async function scrape(url: string, accept?: string): Promise<{ contentType: string; body: Buffer }> {
  const res = await httpRequest(`${url}/metrics`, { headers: accept === undefined ? {} : { accept } });
  expect(res.status).toBe(200);
  return { contentType: String(res.headers['content-type']), body: res.body };
}

function histogramOf(families: readonly MetricFamily[], name: string, labels: Record<string, string>): Histogram {
  const histogram = findMetric(families, name, labels)?.histogram;
  if (histogram === undefined) throw new Error(`no histogram ${name} ${JSON.stringify(labels)}`);
  return histogram;
}

const total = (buckets: ReadonlyMap<number, number>): number => [...buckets.values()].reduce((a, b) => a + b, 0);

describe('--workers scrape formats', () => {
  it('answers protobuf with every worker summed, native buckets included, and text and OpenMetrics too', { timeout: 60_000 }, async () => {
    const url = await startCluster();
    await sendRequests(url, 200, 40);
    // Both workers served some of them: two different sets of learned routes.
    expect((await routeSetsByWorker(url, 6)).size).toBe(2);

    for (let round = 0; round < 2; round++) {
      // Whichever worker answers (fresh connections alternate), and again: the sum is not counted twice.
      const protobuf = await scrape(url, PROTOBUF_ACCEPT);
      expect(protobuf.contentType).toBe(CONTENT_TYPES.protobuf);
      const families = decodeExposition(protobuf.body);
      const apiCount = families.find((f) => f.name === 'apiCount');
      expect(apiCount?.metric.reduce((n, m) => n + (m.counter?.value ?? 0), 0)).toBe(200);
      const duration = histogramOf(families, 'apiDuration', { method: 'GET' });
      expect(duration.sampleCount).toBe(200);
      expect(duration.schema).toBeTypeOf('number');
      expect(total(nativeBuckets(duration)) + (duration.zeroCount ?? 0)).toBe(200);
      expect(duration.bucket.length).toBeGreaterThan(0); // classic buckets beside the native ones (the default)
      const standard = families.find((f) => f.name === 'http_server_request_duration_seconds');
      const routes = standard?.metric.filter((m) => m.label.some((l) => l.name === 'http_route' && l.value.startsWith('/api/w')));
      expect(routes).toHaveLength(40);
      for (const metric of routes ?? []) {
        const h = metric.histogram as Histogram;
        expect(h.sampleCount).toBe(5);
        expect(total(nativeBuckets(h)) + (h.zeroCount ?? 0)).toBe(5);
      }
    }

    const text = await scrape(url);
    expect(text.contentType).toBe(CONTENT_TYPES.text);
    const body = text.body.toString();
    expect(sampleValue(body, 'apiCount', { method: 'GET' })).toBe(200);
    expect(sampleValue(body, 'apiDuration_count', { method: 'GET' })).toBe(200);
    expect(sampleValue(body, 'apiDuration_bucket', { method: 'GET', le: '+Inf' })).toBe(200);
    expect(body).toMatch(/^process_cpu_user_seconds_total \d/m);

    const openMetrics = await scrape(url, OPENMETRICS_ACCEPT);
    expect(openMetrics.contentType).toBe(CONTENT_TYPES.openmetrics);
    const om = openMetrics.body.toString();
    expect(om.endsWith('\n# EOF\n')).toBe(true);
    expect(om.match(/^# EOF$/gm)).toHaveLength(1);
    expect(sampleValue(om, 'apiCount', { method: 'GET' })).toBe(200);
    expect(sampleValue(om, 'apiDuration_count', { method: 'GET' })).toBe(200);
    // prom-client's counters in OpenMetrics: family `x`, sample `x_total`, never `x_total_total`.
    expect(om).toMatch(/^# TYPE process_cpu_user_seconds counter$/m);
    expect(om).toMatch(/^process_cpu_user_seconds_total \d/m);
  });

  it('sends native buckets alone over protobuf with --no-protobuf-classic-buckets', { timeout: 30_000 }, async () => {
    const url = await startCluster(['--no-protobuf-classic-buckets']);
    await sendRequests(url, 10, 2);
    const duration = histogramOf(decodeExposition((await scrape(url, PROTOBUF_ACCEPT)).body), 'apiDuration', { method: 'GET' });
    expect(duration.sampleCount).toBe(10);
    expect(duration.bucket).toEqual([]);
    expect(total(nativeBuckets(duration)) + (duration.zeroCount ?? 0)).toBe(10);
  });
});

// ---------------------------------------------------------------------------------------------------
// The merge, on synthetic workers.

const NATIVE: NativeHistogramSettings = { schema: 3, maxBuckets: 12, zeroThreshold: DEFAULT_ZERO_THRESHOLD };

interface SyntheticWorker {
  readonly registry: Registry;
  readonly requests: CounterFamily;
  readonly inFlight: GaugeFamily;
  readonly latency: HistogramFamily;
  /** Every value observed on latency{route="/a"}. */
  readonly observed: number[];
  observe(value: number, exemplar?: Record<string, string>): void;
}

function syntheticWorker(): SyntheticWorker {
  const registry = new Registry();
  const latency = new HistogramFamily({ name: 'latency', help: 'L.', labelNames: ['route'], buckets: [1, 10, 100], native: NATIVE, registry });
  const observed: number[] = [];
  return {
    registry,
    requests: new CounterFamily({ name: 'requests_total', help: 'R.', labelNames: ['route'], registry }),
    inFlight: new GaugeFamily({ name: 'in_flight', help: 'G.', labelNames: ['route'], registry }),
    latency,
    observed,
    observe(value, exemplar) {
      observed.push(value);
      latency.observe(latency.series('/a'), value, exemplar);
    },
  };
}

/** Dyadic values (k/64): every sum is exact, whatever the order of addition. */
function fill(worker: SyntheticWorker, values: Iterable<number>): void {
  for (const value of values) worker.observe(value);
}

const range = (from: number, to: number, step: number): number[] => Array.from({ length: Math.floor((to - from) / step) + 1 }, (_, i) => from + i * step);

async function render(collection: Collection, format: 'text' | 'openmetrics' | 'protobuf'): Promise<string | Buffer> {
  return (await createSumRenderer()(collection, format)).body;
}

async function decoded(collection: Collection): Promise<MetricFamily[]> {
  return decodeExposition((await render(collection, 'protobuf')) as Buffer);
}

/** What the merged native histogram must hold: every observation's bucket at the merged schema. */
function expectedBuckets(values: readonly number[], schema: number): { buckets: Map<number, number>; zero: number } {
  const buckets = new Map<number, number>();
  let zero = 0;
  for (const value of values) {
    if (value <= DEFAULT_ZERO_THRESHOLD) zero++;
    else buckets.set(bucketKey(value, schema), (buckets.get(bucketKey(value, schema)) ?? 0) + 1);
  }
  return { buckets: new Map([...buckets].sort(([a], [b]) => a - b)), zero };
}

function expectExactNative(h: Histogram, values: readonly number[]): void {
  const { buckets, zero } = expectedBuckets(values, h.schema as number);
  expect(new Map([...nativeBuckets(h)].sort(([a], [b]) => a - b))).toEqual(buckets);
  expect(h.zeroCount ?? 0).toBe(zero);
  expect(h.sampleCount).toBe(values.length);
  expect(h.sampleSum).toBe(values.reduce((a, b) => a + b, 0));
}

describe('the cluster merge', () => {
  it('merges two workers\' native buckets at different schemas exactly, at the lower one', async () => {
    const [narrow, wide] = [syntheticWorker(), syntheticWorker()];
    fill(narrow, [0, ...range(1, 1.5, 1 / 64)]); // a few neighbouring buckets: schema 3 holds
    fill(wide, [0, 0, ...range(1 / 64, 900, 3 + 1 / 64)]); // many decades: reduced below schema 3
    const [a, b] = [narrow.latency.series('/a').native, wide.latency.series('/a').native];
    expect(a?.schema).toBe(3);
    expect(b?.schema).toBeLessThan(3);
    const sum = createClusterSum();
    const families = await decoded(sum.sum(await Promise.all([narrow.registry, wide.registry].map(collectRegistry))));
    const merged = histogramOf(families, 'latency', { route: '/a' });
    expect(merged.schema).toBeLessThanOrEqual(b?.schema as number);
    expectExactNative(merged, [...narrow.observed, ...wide.observed]);
    // The classic half agrees: the same count and sum, in the protobuf and in the text.
    const text = String(await render(sum.sum(await Promise.all([narrow.registry, wide.registry].map(collectRegistry))), 'text'));
    expect(sampleValue(text, 'latency_count', { route: '/a' })).toBe(merged.sampleCount);
    expect(sampleValue(text, 'latency_sum', { route: '/a' })).toBe(merged.sampleSum);
  });

  it('sums exactly what one registry holding every observation shows, in text', async () => {
    const [one, two, both] = [syntheticWorker(), syntheticWorker(), syntheticWorker()];
    for (let i = 0; i < 300; i++) {
      const worker = i % 3 === 0 ? one : two;
      const route = ['/a', '/b', worker === one ? '/one' : '/two'][i % 3] as string;
      const value = (i % 50) / 4;
      for (const w of [worker, both]) {
        w.requests.series(route).value += 1;
        w.inFlight.series(route).value += i % 2 === 0 ? 1 : -1;
        w.latency.observe(w.latency.series(route), value);
      }
    }
    const text = String(await render(createClusterSum().sum(await Promise.all([one.registry, two.registry].map(collectRegistry))), 'text'));
    const expected = String((await createRenderer(both.registry)('text')).body);
    const key = (s: { name: string; labels: Readonly<Record<string, string>>; value: number }) => `${s.name}${JSON.stringify(s.labels)} ${s.value}`;
    expect(parseExposition(text).map(key).sort()).toEqual(parseExposition(expected).map(key).sort());
  });

  it('keeps a retired worker\'s counters and histograms, native buckets included; its gauges go with it', async () => {
    const [stays, retires] = [syntheticWorker(), syntheticWorker()];
    fill(stays, range(1, 2, 1 / 8));
    fill(retires, range(1 / 64, 500, 7 + 1 / 64));
    stays.requests.series('/a').value = 3;
    retires.requests.series('/a').value = 4;
    retires.requests.series('/gone').value = 5;
    stays.inFlight.series('/a').value = 1;
    retires.inFlight.series('/a').value = 2;
    retires.inFlight.series('/gone').value = 6;
    const sum = createClusterSum();
    const collected = await Promise.all([stays.registry, retires.registry].map(collectRegistry));
    sum.seen(1, collected[0] as Collection);
    sum.seen(2, collected[1] as Collection);
    const before = await decoded(sum.sum(collected));
    expect(findMetric(before, 'in_flight', { route: '/gone' })?.gauge?.value).toBe(6);

    sum.retire(2);
    fill(stays, [3, 4]);
    const after = await decoded(sum.sum([await collectRegistry(stays.registry)]));
    expectExactNative(histogramOf(after, 'latency', { route: '/a' }), [...stays.observed, ...retires.observed]);
    expect(findMetric(after, 'requests_total', { route: '/a' })?.counter?.value).toBe(7);
    expect(findMetric(after, 'requests_total', { route: '/gone' })?.counter?.value).toBe(5);
    expect(findMetric(after, 'in_flight', { route: '/a' })?.gauge?.value).toBe(1);
    expect(findMetric(after, 'in_flight', { route: '/gone' })).toBeUndefined();
    expect(sum.retired().metrics.map((m) => m.name).sort()).toEqual(['latency', 'requests_total']);
  });

  it('sums the same scrape after scrape: nothing counted twice, nothing left from the scrape before', async () => {
    const [one, two] = [syntheticWorker(), syntheticWorker()];
    fill(one, range(1, 3, 1 / 4));
    fill(two, range(2, 40, 1 / 2));
    two.inFlight.series('/two-only').value = 1;
    const sum = createClusterSum();
    const both = await Promise.all([one.registry, two.registry].map(collectRegistry));
    const first = await render(sum.sum(both), 'protobuf');
    expect(await render(sum.sum(both), 'protobuf')).toEqual(first);
    const alone = await decoded(sum.sum([both[0] as Collection]));
    expectExactNative(histogramOf(alone, 'latency', { route: '/a' }), one.observed);
    expect(findMetric(alone, 'in_flight', { route: '/two-only' })).toBeUndefined();
    expectExactNative(histogramOf(await decoded(sum.sum(both)), 'latency', { route: '/a' }), [...one.observed, ...two.observed]);
  });

  it('keeps the newest exemplar of each bucket, whichever worker has it', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    onTestFinished(() => {
      vi.useRealTimers();
    });
    const [one, two] = [syntheticWorker(), syntheticWorker()];
    vi.setSystemTime(1_000_000);
    one.observe(0.5, { trace_id: 'old-low' });
    two.observe(50, { trace_id: 'old-high' });
    vi.setSystemTime(2_000_000);
    two.observe(0.25, { trace_id: 'new-low' });
    one.observe(60, { trace_id: 'new-high' });
    const text = String(await render(createClusterSum().sum(await Promise.all([one.registry, two.registry].map(collectRegistry))), 'openmetrics'));
    expect(text).toMatch(/^latency_bucket\{route="\/a",le="1"\} 2 # \{trace_id="new-low"\} 0\.25 2000$/m);
    expect(text).toMatch(/^latency_bucket\{route="\/a",le="100"\} 4 # \{trace_id="new-high"\} 60 2000$/m);
    expect(text).not.toContain('old-');
  });

  it('aggregates prom-client\'s own metrics by their own aggregators, beside ours', async () => {
    const workers = [syntheticWorker(), syntheticWorker()];
    workers.forEach(({ registry }, i) => {
      new Counter({ name: 'prom_requests_total', help: 'P.', registers: [registry] }).inc(i + 1);
      new Gauge({ name: 'prom_objective_ratio', help: 'O.', aggregator: 'first', registers: [registry] }).set(0.99);
      new Gauge({ name: 'prom_omitted', help: 'X.', aggregator: 'omit', registers: [registry] }).set(1);
    });
    const sum = createClusterSum().sum(await Promise.all(workers.map((w) => collectRegistry(w.registry))));
    const text = String(await render(sum, 'text'));
    expect(sampleValue(text, 'prom_requests_total')).toBe(3);
    expect(sampleValue(text, 'prom_objective_ratio')).toBe(0.99);
    expect(text).not.toContain('prom_omitted');
    expect(String(await render(sum, 'openmetrics'))).toMatch(/^# TYPE prom_requests counter\nprom_requests_total 3$/m);
    expect(findMetric(await decoded(sum), 'prom_requests_total')?.counter?.value).toBe(3);
  });
});
