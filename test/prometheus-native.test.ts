/**
 * Native histograms against a real Prometheus: the built bin in front of a real upstream whose answers
 * take known times, scraped at once by two Prometheus servers. One has native histograms on
 * (2.40–3.7: --enable-feature=native-histograms; 3.8+: scrape_native_histograms), so it asks for the
 * protobuf exposition and stores the proxy's histograms as native ones; the other is left as it is and
 * keeps the classic _bucket/_count/_sum series. On both, histogram_quantile must land in the bucket
 * (schema 3 for native, the configured bounds for classic) that holds the true median, and the latency
 * rules of config/prometheus/rules-native.yml must record from either kind. promtool checks the text
 * exposition of the same bin, native histograms on.
 *
 * The true median is not known to the microsecond, but it is bounded: the proxy's duration of a request
 * is at least the upstream's delay, and at most what the client measured around it (plus SLACK_MS for
 * the proxy's clock stopping a moment after the client saw the end). Medians are monotonic, so the
 * median of the observations lies between the median of the lower bounds and that of the upper bounds.
 * Skipped (with a message) where Prometheus is missing or older than 2.40; CI installs Debian's (.ci/run).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS } from '../src/index.js';
import { LOOPBACK, spawnBin } from './bin.js';
import { type Upstream, httpRequest, settle, startUpstream } from './helpers.js';
import { type RunningPrometheus, nativeHistogramSwitch, prometheusTools, promtoolCheckMetrics, startPrometheus } from './prometheus.js';
import { decodeExposition, findMetric } from './proto-exposition.js';

const JOB = 'metrics-proxy';
const RULES = fileURLToPath(new URL('../config/prometheus/rules-native.yml', import.meta.url));
/** What Prometheus 2.42 sends with --enable-feature=native-histograms (seen on the wire). */
const ACCEPT_242_NATIVE =
  'application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1';
/** --native-histogram-bucket-factor 1.1 */
const SCHEMA = 3;
const SLACK_MS = 5;
/** Upstream delay per path: a quarter fast, half at the median, a quarter slow, so the median sits inside one group. */
const DELAY_MS: Readonly<Record<string, number>> = { '/api/fast': 20, '/api/median': 84, '/api/slow': 300 };
/** One round; 84 ms is just above a schema-3 bound in ms (82.99) and in s (0.08105), inside the classic (50, 100] and (0.075, 0.1]. */
const ROUND = [...Array<string>(8).fill('/api/fast'), ...Array<string>(16).fill('/api/median'), ...Array<string>(8).fill('/api/slow')];
/** Legacy camelCase names of the Go recipe, whose naming complaints promtool is expected to make. */
const LEGACY_NAMES = new Set(['apiCount', 'apiDuration', 'apiErrorCount']);

const tools = prometheusTools();
const nativeBy = tools === undefined ? undefined : nativeHistogramSwitch(tools.prometheus);
if (nativeBy === undefined) {
  console.warn('test/prometheus-native.test.ts skipped: no prometheus/promtool 2.40 or later (Debian package `prometheus`; bash .ci/run installs it)');
}

/** One request's duration as the proxy saw it, bounded: [upstream delay, client-measured time + slack], in ms. */
interface Bounds {
  readonly path: string;
  readonly lo: number;
  readonly hi: number;
}

function delayed(req: IncomingMessage, res: ServerResponse): void {
  req.resume();
  const ms = DELAY_MS[req.url ?? ''] ?? 0;
  const start = performance.now();
  // A timer may fire a little early; the delay is a lower bound only if it is waited out in full.
  const answer = (): void => {
    const left = ms - (performance.now() - start);
    if (left > 0) setTimeout(answer, Math.ceil(left));
    else res.end('ok');
  };
  setTimeout(answer, ms);
}

/** Sends ROUND through the proxy, 8 at a time (each batch mixes the groups), and bounds each duration. */
async function sendRound(proxyUrl: string): Promise<Bounds[]> {
  const bounds: Bounds[] = [];
  const order = ROUND.map((path, i) => ({ path, i })).sort((a, b) => (a.i % 4) - (b.i % 4) || a.i - b.i);
  for (let at = 0; at < order.length; at += 8) {
    await Promise.all(
      order.slice(at, at + 8).map(async ({ path }) => {
        const start = performance.now();
        const { status } = await httpRequest(`${proxyUrl}${path}`);
        const elapsed = performance.now() - start;
        if (status !== 200) throw new Error(`${path}: ${status}`);
        bounds.push({ path, lo: DELAY_MS[path] ?? 0, hi: elapsed + SLACK_MS });
      }),
    );
  }
  return bounds;
}

/** Where the true median lies: between the median of the lower bounds and that of the upper bounds (both middle elements). */
function medianBounds(bounds: readonly Bounds[], scale = 1): [lo: number, hi: number] {
  const los = bounds.map((b) => b.lo).sort((a, b) => a - b);
  const his = bounds.map((b) => b.hi).sort((a, b) => a - b);
  const n = bounds.length;
  return [(los[Math.ceil(n / 2) - 1] ?? NaN) * scale, (his[Math.floor(n / 2)] ?? NaN) * scale];
}

/** From the lower bound of the native bucket holding `lo` to the upper bound of the one holding `hi`: bucket k is (2^((k-1)/8), 2^(k/8)]. */
function nativeRange([lo, hi]: [number, number]): [number, number] {
  const perOctave = 2 ** SCHEMA;
  const key = (v: number): number => Math.ceil(perOctave * Math.log2(v));
  return [2 ** ((key(lo) - 1) / perOctave), 2 ** (key(hi) / perOctave)];
}

/** The same with classic bucket bounds (le). */
function classicRange([lo, hi]: [number, number], les: readonly number[]): [number, number] {
  return [Math.max(0, ...les.filter((le) => le < lo)), Math.min(Infinity, ...les.filter((le) => le >= hi))];
}

/** Checks that `value` lies in [lower, upper], and logs both: CI's log then shows how close PromQL came. */
function expectWithin(value: number | undefined, [lower, upper]: [number, number], what: string): void {
  const text = `${what}: ${value} in [${lower}, ${upper}]`;
  console.info(text);
  expect(value, text).toBeGreaterThanOrEqual(lower);
  expect(value, text).toBeLessThanOrEqual(upper);
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

  // A scrape before any traffic, then a warm-up round that every series' first sample holds whole, then the
  // measured round, then a scrape after it: rate() over any window that reaches back to the start sees exactly the measured round.
  const scraped = () => Promise.all([native.waitForScrapes(JOB, 1), classic.waitForScrapes(JOB, 1)]);
  await scraped();
  await sendRound(proxyUrl);
  await scraped();
  const measured = await sendRound(proxyUrl);
  await scraped();
  return { proxyUrl, native, classic, measured };
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
    expect(apiDuration?.histogram?.[1].count, JSON.stringify(apiDuration)).toBe(String(2 * ROUND.length));
    expect(await single(native, 'histogram_count(sum(http_server_request_duration_seconds))')).toBe(2 * ROUND.length);
    expect(await single(native, 'sum(apiCount)')).toBe(2 * ROUND.length);
    // With native histograms on, a histogram that has native buckets is stored only as such (unless
    // scrape_classic_histograms / always_scrape_classic_histograms says otherwise; 2.40–2.44 have neither).
    expect(await raw(native, 'apiDuration_bucket')).toEqual([]);
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
    expect(await single(classic, 'sum(apiCount)')).toBe(2 * ROUND.length);
    expect(await single(classic, 'sum(apiDuration_count)')).toBe(2 * ROUND.length);
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

  it('the rules of rules-native.yml record latency quantiles from native and from classic histograms', async () => {
    const { native, classic, measured } = ready();
    const median = measured.filter((b) => b.path === '/api/median');
    const expectations: Array<[RunningPrometheus, string, [number, number]]> = [
      [native, '/api/median', nativeRange(medianBounds(median, 1 / 1000))],
      [classic, '/api/median', classicRange(medianBounds(median, 1 / 1000), DEFAULTS.durationBucketsSeconds)],
    ];
    for (const [prometheus, route, range] of expectations) {
      const which = prometheus === native ? 'native' : 'classic';
      const promql = `job_route:http_server_request_duration_seconds:histogram_quantile_rate5m{job="${JOB}",http_route="${route}",quantile="0.5"}`;
      const series = await settle(() => prometheus.query(promql), (r) => r.length === 1 && (r[0]?.value ?? 0) > 0, 10_000);
      expectWithin(series[0]?.value, range, `${which}: ${promql}`);
      const job = await settle(
        () => prometheus.query(`job:http_server_request_duration_seconds:histogram_quantile_rate5m{job="${JOB}",quantile="0.5"}`),
        (r) => r.length === 1 && (r[0]?.value ?? 0) > 0,
        10_000,
      );
      const all = medianBounds(measured, 1 / 1000);
      expectWithin(job[0]?.value, which === 'native' ? nativeRange(all) : classicRange(all, DEFAULTS.durationBucketsSeconds), `${which}: job median`);
      const rules = ((await prometheus.api('/api/v1/rules')) as { groups: Array<{ rules: Array<{ name: string; health: string; lastError?: string }> }> }).groups.flatMap((g) => g.rules);
      expect(rules.length).toBeGreaterThan(0);
      for (const rule of rules) expect({ which, rule: rule.name, health: rule.health, lastError: rule.lastError ?? '' }).toEqual({ which, rule: rule.name, health: 'ok', lastError: '' });
    }
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
    expect(histogram?.sampleCount).toBe(2 * ROUND.length);
    expect(histogram?.bucket.length).toBe(DEFAULTS.bucketsMs.length);
  });
});
