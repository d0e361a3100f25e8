/**
 * Native histograms against a real Prometheus: the built bin in front of a real upstream whose answers
 * take known times (test/native-traffic.ts), scraped at once by two Prometheus servers. One has native
 * histograms on (2.40–3.7: --enable-feature=native-histograms; 3.8+: scrape_native_histograms), so it asks
 * for the protobuf exposition and stores the proxy's histograms as native ones only (no _bucket, _count or
 * _sum); the other is left as it is and keeps the classic series. On both, histogram_quantile must land in
 * the bucket (schema 3 for native, the configured bounds for classic) that holds the true quantile, and
 * config/prometheus/rules.yml, loaded by both, must record its rates, error ratios, quantiles and upstream
 * p99 split from either kind, and fire the burn-rate alerts. promtool checks the text exposition of the
 * same bin, native histograms on.
 * Skipped (with a message) where Prometheus is missing or older than 2.40; CI installs Debian's (.ci/run).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS } from '../src/index.js';
import { LOOPBACK, spawnBin } from './bin.js';
import { type Upstream, httpRequest, settle, startUpstream } from './helpers.js';
import {
  type Bounds,
  FAILING,
  ROUND,
  SCHEMA,
  WARM_UP,
  classicRange,
  delayed,
  expectWithin,
  medianBounds,
  nativeRange,
  quantileBounds,
  sendRound,
} from './native-traffic.js';
import { type RunningPrometheus, nativeHistogramSwitch, prometheusTools, promtoolCheckMetrics, startPrometheus } from './prometheus.js';
import { decodeExposition, findMetric } from './proto-exposition.js';

const JOB = 'metrics-proxy';
const RULES = fileURLToPath(new URL('../config/prometheus/rules.yml', import.meta.url));
/** What Prometheus 2.42 sends with --enable-feature=native-histograms (seen on the wire). */
const ACCEPT_242_NATIVE =
  'application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1';
/** Every request sent: the warm-up and the measured round. */
const SENT = WARM_UP.length + ROUND.length;
/** The histograms rules.yml reads. */
const RULE_HISTOGRAMS = ['http_server_request_duration_seconds', 'http_client_request_duration_seconds', 'http_client_request_time_in_queue_seconds', 'metrics_proxy_upstream_connect_duration_seconds'];
/** Legacy camelCase names of the Go recipe, whose naming complaints promtool is expected to make. */
const LEGACY_NAMES = new Set(['apiCount', 'apiDuration', 'apiErrorCount']);

const tools = prometheusTools();
const nativeBy = tools === undefined ? undefined : nativeHistogramSwitch(tools.prometheus);
if (nativeBy === undefined) {
  console.warn('test/prometheus-native.test.ts skipped: no prometheus/promtool 2.40 or later (Debian package `prometheus`; bash .ci/run installs it)');
}

/** The value of a query that must return exactly one float sample. */
async function single(prometheus: RunningPrometheus, promql: string): Promise<number> {
  const result = await prometheus.query(promql);
  if (result.length !== 1) throw new Error(`${promql}: expected one sample, got ${JSON.stringify(result)}`);
  return result[0]?.value ?? NaN;
}

/** An instant query's raw result: native histogram samples come as `histogram`, float samples as `value`. */
async function raw(prometheus: RunningPrometheus, promql: string): Promise<Array<{ metric: Record<string, string>; value?: unknown; histogram?: [number, { count: string; buckets?: unknown[] }] }>> {
  const data = (await prometheus.api('/api/v1/query', { query: promql })) as { result: Awaited<ReturnType<typeof raw>> };
  return data.result;
}

interface Setup {
  readonly proxyUrl: string;
  readonly native: RunningPrometheus;
  readonly classic: RunningPrometheus;
  /** The measured round: the only requests rate() sees (the warm-up round is in the first sample of every series). */
  readonly measured: readonly Bounds[];
}

const cleanups: Array<() => Promise<void> | void> = [];
let setup: Setup | undefined;

function ready(): Setup {
  if (setup === undefined) throw new Error('setup failed (see beforeAll)');
  return setup;
}

async function startAll(): Promise<Setup> {
  const dir = await mkdtemp(join(tmpdir(), 'metrics-proxy-native-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const upstream: Upstream = await startUpstream(delayed);
  cleanups.push(upstream.close);
  const bin = spawnBin(['--upstream', upstream.url, '--port', '0', ...LOOPBACK, '--native-histogram-bucket-factor', '1.1'], {}, (fn) => cleanups.push(fn));
  const listening = JSON.parse(await bin.nextLine()) as { msg?: string; port?: number };
  if (listening.msg !== 'listening' || typeof listening.port !== 'number') throw new Error(`not a listening line: ${JSON.stringify(listening)}`);
  const proxyUrl = `http://127.0.0.1:${listening.port}`;
  const address = `127.0.0.1:${listening.port}`;

  // Both settle before anything is thrown, so that afterAll stops whichever did start.
  const started = await Promise.allSettled([
    startPrometheus({ targets: [{ job: JOB, address }], ruleFiles: [RULES], nativeHistograms: true }),
    startPrometheus({ targets: [{ job: JOB, address }], ruleFiles: [RULES] }),
  ]);
  for (const outcome of started) if (outcome.status === 'fulfilled') cleanups.push(outcome.value.close);
  const [native, classic] = started.map((outcome) => {
    if (outcome.status === 'rejected') throw outcome.reason;
    return outcome.value;
  });
  if (native === undefined || classic === undefined) throw new Error('two Prometheus servers expected');

  // A scrape before any traffic, then a warm-up that every series' first sample holds (see WARM_UP), then the
  // measured round, then a scrape after it: rate() over any window that reaches back to the start sees the measured round.
  const scraped = () => Promise.all([native.waitForScrapes(JOB, 1), classic.waitForScrapes(JOB, 1)]);
  await scraped();
  await sendRound(proxyUrl, WARM_UP);
  await scraped();
  const measured = await sendRound(proxyUrl);
  await scraped();
  return { proxyUrl, native, classic, measured };
}

type Kind = 'native' | 'classic';
const KINDS: readonly Kind[] = ['native', 'classic'];
const MS = 1 / 1000;

/** The samples for JOB of the series whose name matches `names` (a regex), by the value of `label`, once there is one per `expected` value. */
async function recordedBy(prometheus: RunningPrometheus, names: string, label: string, expected: readonly string[]): Promise<Record<string, number>> {
  const selector = `{__name__=~${JSON.stringify(names)},job="${JOB}"}`;
  const read = async () => Object.fromEntries((await prometheus.query(selector)).map((s) => [s.metric[label] ?? '', s.value]));
  return settle(read, (values) => expected.every((key) => values[key] !== undefined && !Number.isNaN(values[key])), 10_000);
}

/** The value of each rule (recorded for JOB, without other labels), read in one query so that they come from one evaluation. */
async function recordedJob<const N extends string>(prometheus: RunningPrometheus, rules: readonly N[]): Promise<Record<N, number>> {
  const values: Record<string, number> = await recordedBy(prometheus, rules.join('|'), '__name__', rules);
  for (const rule of rules) if (values[rule] === undefined) throw new Error(`${rule}{job="${JOB}"}: not recorded (${JSON.stringify(values)})`);
  return values;
}

function bucketRange(kind: Kind, bounds: [number, number]): [number, number] {
  return kind === 'native' ? nativeRange(bounds) : classicRange(bounds, DEFAULTS.durationBucketsSeconds);
}

async function expectRatesAndRatios(kind: Kind): Promise<void> {
  const prometheus = ready()[kind];
  const routes = [...new Set(ROUND)];
  const requests = await recordedBy(prometheus, 'job_route:http_server_requests:rate5m', 'http_route', routes);
  // 4 failing requests to 12 at the median a round: 1/3, give or take the warm-up's one each (should a
  // scrape fall inside it) and rate()'s extrapolation, which classic counters of few requests shorten.
  expect((requests[FAILING] ?? NaN) / (requests['/api/median'] ?? NaN), JSON.stringify(requests)).toBeGreaterThan(0.25);
  expect((requests[FAILING] ?? NaN) / (requests['/api/median'] ?? NaN), JSON.stringify(requests)).toBeLessThan(0.45);
  const ratios = await recordedBy(prometheus, 'job_route:http_server_request_errors:ratio_rate5m', 'http_route', routes);
  expect(ratios).toEqual({ '/api/fast': 0, '/api/median': 0, [FAILING]: 1, '/api/slow': 0 });

  const windows = ['5m', '30m', '1h', '2h', '6h', '1d', '3d'] as const;
  const slo = await recordedJob(prometheus, ['job:metrics_proxy_slo_error_budget:ratio', ...windows.map((w) => `job:http_server_request_errors:ratio_rate${w}` as const)]);
  console.info(`${kind}: ${JSON.stringify(slo)}`);
  expect(slo['job:metrics_proxy_slo_error_budget:ratio']).toBeCloseTo(1 - 0.999, 12);
  // 4 of 32 requests failed; every window holds the whole test, so they all agree.
  const ratio = slo['job:http_server_request_errors:ratio_rate5m'];
  expect(ratio).toBeGreaterThan(0.09);
  expect(ratio).toBeLessThan(0.17);
  for (const w of windows) expect(slo[`job:http_server_request_errors:ratio_rate${w}`], w).toBeCloseTo(ratio, 9);
}

async function expectLatencyQuantiles(kind: Kind): Promise<void> {
  const prometheus = ready()[kind];
  const { measured } = ready();
  const of = (path: string) => measured.filter((b) => b.path === path);
  const routes = [...new Set(ROUND)];
  const p50 = await recordedBy(prometheus, 'job_route:http_server_request_duration_seconds:p50_rate5m', 'http_route', routes);
  expectWithin(p50['/api/median'], bucketRange(kind, medianBounds(of('/api/median'), MS)), `${kind}: p50 of /api/median`);
  const p90 = await recordedBy(prometheus, 'job_route:http_server_request_duration_seconds:p90_rate5m', 'http_route', routes);
  expectWithin(p90['/api/fast'], bucketRange(kind, quantileBounds(of('/api/fast'), 0.9, MS)), `${kind}: p90 of /api/fast`);
  const p99 = await recordedBy(prometheus, 'job_route:http_server_request_duration_seconds:p99_rate5m', 'http_route', routes);
  expectWithin(p99['/api/slow'], bucketRange(kind, quantileBounds(of('/api/slow'), 0.99, MS)), `${kind}: p99 of /api/slow`);
  // Bucket rates are recorded from classic buckets only: recording native histograms is not reliable in 2.42.
  const buckets = await prometheus.query(`job_route_le:http_server_request_duration_seconds_bucket:rate5m{job="${JOB}"}`);
  if (kind === 'native') expect(buckets).toEqual([]);
  else expect(buckets.length).toBeGreaterThan(0);
}

async function expectUpstreamSplit(kind: Kind): Promise<void> {
  const prometheus = ready()[kind];
  const { measured } = ready();
  const r = await recordedJob(prometheus, [
    'job:http_client_requests:rate5m',
    'job:metrics_proxy_upstream_connects:rate5m',
    'job:http_client_request_duration_seconds:p99_rate5m',
    'job:http_client_request_time_in_queue_seconds:p99_rate5m',
    'job:metrics_proxy_upstream_connect_duration_seconds:p99_rate5m',
    'job:http_client_request_connect_seconds:p99_connects_quantile_rate5m',
    'job:http_client_request_connect_seconds:p99_rate5m',
    'job:http_client_request_duration_seconds:p99_connecting_rate5m',
    'job:http_client_request_duration_seconds:p99_queueing_rate5m',
    'job:http_client_request_duration_seconds:p99_upstream_rate5m',
  ]);
  console.info(`${kind}: ${JSON.stringify(r)}`);
  const requests = r['job:http_client_requests:rate5m'];
  const connects = r['job:metrics_proxy_upstream_connects:rate5m'];
  // The upstream closes the connection after each slow answer, so the proxy opens new ones in the measured round.
  expect(requests).toBeGreaterThan(0);
  expect(connects).toBeGreaterThan(0);
  const q = r['job:http_client_request_connect_seconds:p99_connects_quantile_rate5m'];
  expect(q).toBeCloseTo(Math.min(0.99, Math.max(0, 1 - (0.01 * requests) / connects)), 2);
  expect(q).toBeGreaterThan(0);

  const leg = r['job:http_client_request_duration_seconds:p99_rate5m'];
  const queue = r['job:http_client_request_time_in_queue_seconds:p99_rate5m'];
  const perConnection = r['job:metrics_proxy_upstream_connect_duration_seconds:p99_rate5m'];
  const perRequest = r['job:http_client_request_connect_seconds:p99_rate5m'];
  // The leg's p99 is the slowest request's: an upstream leg lasts at least the upstream's delay.
  expectWithin(leg, bucketRange(kind, quantileBounds(measured, 0.99, MS)), `${kind}: p99 of the upstream leg`);
  expect(queue).toBeGreaterThanOrEqual(0);
  // Two quantiles that are equal in exact arithmetic may come out of PromQL's interpolation an ulp apart.
  const roundingSlack = 1 + 1e-12;
  expect(queue).toBeLessThanOrEqual(leg * roundingSlack);
  expect(perConnection).toBeGreaterThan(0);
  // Counting the requests that opened no connection as 0 s can only lower the quantile.
  expect(perRequest).toBeGreaterThanOrEqual(0);
  expect(perRequest).toBeLessThanOrEqual(perConnection * roundingSlack);
  if (kind === 'native') await expectOnTheLadder(prometheus, q, perRequest);

  const [connecting, queueing, upstream] = [
    r['job:http_client_request_duration_seconds:p99_connecting_rate5m'],
    r['job:http_client_request_duration_seconds:p99_queueing_rate5m'],
    r['job:http_client_request_duration_seconds:p99_upstream_rate5m'],
  ];
  expect(connecting).toBeCloseTo(Math.min(queue, perRequest), 9);
  expect(queueing).toBeCloseTo(queue - connecting, 9);
  expect(upstream).toBeCloseTo(Math.max(leg - queue, 0), 9);
  expect(connecting + queueing + upstream).toBeCloseTo(leg, 9);
}

/** The rungs of rules.yml's ladder for the native p99 of the connect time over requests. */
const RUNGS = [0, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99];

/** The native rule lies between the connect time's quantiles at the rungs around q (the exact answer, here with one job, is logged beside it). */
async function expectOnTheLadder(prometheus: RunningPrometheus, q: number, value: number): Promise<void> {
  const connects = `sum by (job) (rate(metrics_proxy_upstream_connect_duration_seconds{job="${JOB}"}[5m]))`;
  const upper = RUNGS.find((rung) => rung >= q) ?? 0.99;
  const lower = RUNGS.filter((rung) => rung < upper).pop() ?? 0;
  const [at, below, above] = await Promise.all([q, lower, upper].map((x) => single(prometheus, `histogram_quantile(${x}, ${connects})`)));
  console.info(`native: p99 of the connect time over requests ${value} for quantile ${q} of the connections (exactly ${at}), between rungs ${lower} and ${upper}`);
  // Relative slack for float rounding: at a rung the interpolation gives that rung's quantile, give or take an ulp.
  const slack = 1e-9;
  expectWithin(value, [(below ?? NaN) * (1 - slack), (above ?? NaN) * (1 + slack)], `native: p99 of the connect time over requests, between the quantiles ${lower} and ${upper}`);
}

async function expectAlertsAndHealth(kind: Kind): Promise<void> {
  const prometheus = ready()[kind];
  type Alert = { labels: Record<string, string>; state: string };
  const burning = async () =>
    ((await prometheus.api('/api/v1/alerts')) as { alerts: Alert[] }).alerts
      .filter((a) => a.labels.alertname === 'MetricsProxyErrorBudgetBurn' && a.state === 'firing')
      .map((a) => a.labels.long_window)
      .sort();
  // 1 request in 8 failed: far over every burn-rate threshold (at most 14.4 × 0.001).
  expect(await settle(burning, (windows) => windows.length === 4, 10_000)).toEqual(['1d', '1h', '3d', '6h']);
  type Rule = { name: string; health: string; lastError?: string };
  const rules = ((await prometheus.api('/api/v1/rules')) as { groups: Array<{ rules: Rule[] }> }).groups.flatMap((g) => g.rules);
  expect(rules.length).toBeGreaterThan(30);
  for (const rule of rules) expect({ kind, rule: rule.name, health: rule.health, lastError: rule.lastError ?? '' }).toEqual({ kind, rule: rule.name, health: 'ok', lastError: '' });
}

describe.skipIf(nativeBy === undefined)('native histograms in a real Prometheus, scraping the bin', () => {
  beforeAll(async () => {
    setup = await startAll();
  }, 50_000);

  afterAll(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await Promise.resolve(cleanup()).catch((err: unknown) => console.error(err));
  }, 20_000);

  it('Prometheus with native histograms on asks for protobuf and stores the histograms as native ones, with exact counts', async () => {
    const { native } = ready();
    if (nativeBy === 'flag') {
      const flags = (await native.api('/api/v1/status/flags')) as Record<string, string>;
      expect(flags['enable-feature']).toContain('native-histograms');
    }
    // Only the protobuf exposition carries native histograms: a histogram sample proves the proxy answered in protobuf.
    const [apiDuration, ...others] = await raw(native, `apiDuration{job="${JOB}"}`);
    expect(others).toEqual([]);
    expect(apiDuration?.histogram?.[1].count, JSON.stringify(apiDuration)).toBe(String(SENT));
    expect(await single(native, 'histogram_count(sum(http_server_request_duration_seconds))')).toBe(SENT);
    expect(await single(native, 'sum(apiCount)')).toBe(SENT);
    // With native histograms on, a histogram that has native buckets is stored only as such (unless
    // scrape_classic_histograms / always_scrape_classic_histograms says otherwise; 2.40–2.44 have neither).
    expect(await raw(native, 'apiDuration_bucket')).toEqual([]);
    const classicSeries = `{__name__=~"(${RULE_HISTOGRAMS.join('|')})_(bucket|count|sum)"}`;
    expect(await raw(native, classicSeries)).toEqual([]);
    expect((await raw(native, `{__name__=~"${RULE_HISTOGRAMS.join('|')}"}`)).length).toBeGreaterThanOrEqual(RULE_HISTOGRAMS.length);
  });

  it('histogram_quantile over native apiDuration lands in the schema-3 bucket of the true median (ms)', async () => {
    const { native, measured } = ready();
    expect(await single(native, 'histogram_count(sum(rate(apiDuration[1m])))')).toBeGreaterThan(0);
    console.info(`the true median lies in [${medianBounds(measured).map((v) => v.toFixed(2)).join(', ')}] ms`);
    expectWithin(await single(native, 'histogram_quantile(0.5, sum(rate(apiDuration[1m])))'), nativeRange(medianBounds(measured)), 'native apiDuration median');
  });

  it('histogram_quantile over native http_server_request_duration_seconds lands in the schema-3 bucket of the true median (s)', async () => {
    const { native, measured } = ready();
    const D = 'http_server_request_duration_seconds';
    expect(await single(native, `histogram_count(sum(rate(${D}[1m])))`)).toBeGreaterThan(0);
    expectWithin(await single(native, `histogram_quantile(0.5, sum(rate(${D}[1m])))`), nativeRange(medianBounds(measured, 1 / 1000)), `native ${D} median`);
  });

  it('Prometheus without native histograms keeps the classic series, and their quantiles and counts', async () => {
    const { classic, measured } = ready();
    expect(await raw(classic, 'apiDuration')).toEqual([]);
    expect(await single(classic, 'sum(apiCount)')).toBe(SENT);
    expect(await single(classic, 'sum(apiDuration_count)')).toBe(SENT);
    expectWithin(
      await single(classic, 'histogram_quantile(0.5, sum by (le) (rate(apiDuration_bucket[1m])))'),
      classicRange(medianBounds(measured), DEFAULTS.bucketsMs),
      'classic apiDuration median',
    );
    expectWithin(
      await single(classic, 'histogram_quantile(0.5, sum by (le) (rate(http_server_request_duration_seconds_bucket[1m])))'),
      classicRange(medianBounds(measured, 1 / 1000), DEFAULTS.durationBucketsSeconds),
      'classic http_server_request_duration_seconds median',
    );
  });

  it('promtool finds nothing wrong with the text exposition, native histograms on, but the legacy names', async () => {
    const { proxyUrl } = ready();
    const text = await httpRequest(`${proxyUrl}/metrics`, { headers: { accept: 'text/plain;version=0.0.4' } });
    expect(text.headers['content-type']).toMatch(/^text\/plain/);
    const { problems } = await promtoolCheckMetrics(text.body.toString('utf8'));
    const rest = problems.filter((p) => !LEGACY_NAMES.has(p.split(' ')[0] ?? ''));
    expect(rest).toEqual([]);

    // and what Prometheus 2.42 asks for, byte for byte, gets the protobuf exposition with schema-3 native buckets
    const proto = await httpRequest(`${proxyUrl}/metrics`, { headers: { accept: ACCEPT_242_NATIVE } });
    expect(proto.headers['content-type']).toBe('application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited');
    const histogram = findMetric(decodeExposition(proto.body), 'apiDuration', { method: 'GET' })?.histogram;
    expect(histogram?.schema).toBe(SCHEMA);
    expect(histogram?.sampleCount).toBe(SENT);
    expect(histogram?.bucket.length).toBe(DEFAULTS.bucketsMs.length);
  });

  describe.each(KINDS)('config/prometheus/rules.yml in the Prometheus that stores %s histograms', (kind) => {
    it('records request rates and error ratios per route and per service, and the error budget', async () => {
      await expectRatesAndRatios(kind);
    });
    it('records latency quantiles within the buckets of the true ones; bucket rates only from classic buckets', async () => {
      await expectLatencyQuantiles(kind);
    });
    it("splits the upstream leg's p99 into connecting, queueing and the upstream's own, which add up to it", async () => {
      await expectUpstreamSplit(kind);
    });
    it('fires the burn-rate alerts, and every rule evaluates cleanly', async () => {
      await expectAlertsAndHealth(kind);
    });
  });
});
