/**
 * The protobuf exposition over real sockets: negotiated as Prometheus asks
 * for it, decoded with a real protobuf decoder, every family present, the
 * native buckets agreeing with the classic ones and with the observations
 * sent, exemplars, gzip, and the options that shape it.
 */
import { gunzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { negotiateFormat } from '../src/admin/exposition.js';
import { type Proxy, type Upstream, httpRequest, startProxy, startUpstream } from './helpers.js';
import { type Histogram, type MetricFamily, bucketBounds, decodeExposition, findMetric, labelsOf, nativeBuckets } from './proto-exposition.js';

/** What Prometheus 2.42 sends with --enable-feature=native-histograms (scrape/scrape.go). */
const PROMETHEUS_2_ACCEPT =
  'application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,' +
  'application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1';
/** Prometheus 3's order with scrape_native_histograms (PrometheusProto first). */
const PROMETHEUS_3_ACCEPT =
  'application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5,' +
  'application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.4,application/openmetrics-text;version=0.0.1;q=0.3,' +
  'text/plain;version=1.0.0;escaping=allow-utf-8;q=0.2,text/plain;version=0.0.4;q=0.1,*/*;q=0.05';
/** Prometheus 3's default, native histograms off. */
const PROMETHEUS_3_DEFAULT_ACCEPT =
  'application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,' +
  'text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1';
const PROTOBUF_TYPE = 'application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited';

describe('negotiateFormat', () => {
  it.each([
    [PROMETHEUS_2_ACCEPT, 'protobuf'],
    [PROMETHEUS_3_ACCEPT, 'protobuf'],
    [PROMETHEUS_3_DEFAULT_ACCEPT, 'openmetrics'],
    ['application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1', 'openmetrics'],
    [undefined, 'text'],
    ['*/*', 'text'],
    ['text/plain', 'text'],
    ['application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited', 'protobuf'],
    ['application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited', 'protobuf'],
    // Other protobuf encodings (text, compact-text) or messages are not ours to answer with protobuf.
    ['application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text,text/plain;q=0.5', 'text'],
    ['application/vnd.google.protobuf;proto=other.Message;encoding=delimited', 'text'],
    // Ranked below text by the client: text wins.
    ['application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.2,text/plain;q=0.9', 'text'],
    ['application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0', 'text'],
  ])('Accept %s → %s', (accept, format) => {
    expect(negotiateFormat(accept)).toBe(format);
  });
});

/** The upstream answers /api/wait/<ms> after that many milliseconds, with a body of ?size bytes. */
function delayedUpstream(): Promise<Upstream> {
  return startUpstream((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const ms = Number(url.pathname.split('/')[3] ?? 0);
    const size = Number(url.searchParams.get('size') ?? 10);
    req.resume();
    setTimeout(() => res.end(Buffer.alloc(size, 'x')), ms);
  });
}

async function scrape(proxy: Proxy, accept: string, extra: Record<string, string> = {}) {
  const res = await httpRequest(`${proxy.url}/metrics`, { headers: { accept, ...extra } });
  expect(res.status).toBe(200);
  return res;
}

async function decoded(proxy: Proxy, accept = PROMETHEUS_2_ACCEPT): Promise<MetricFamily[]> {
  const res = await scrape(proxy, accept);
  expect(res.headers['content-type']).toBe(PROTOBUF_TYPE);
  return decodeExposition(res.body);
}

function nativeTotal(h: Histogram): number {
  let sum = h.zeroCount ?? 0;
  for (const count of nativeBuckets(h).values()) sum += count;
  return sum;
}

describe('protobuf exposition through the proxy', () => {
  let upstream: Upstream;
  let proxy: Proxy | undefined;
  beforeAll(async () => {
    upstream = await delayedUpstream();
  });
  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
  });
  afterAll(() => upstream.close());

  it('Prometheus 2.42 and 3 with native histograms get protobuf: every family, ours and the process metrics', async () => {
    proxy = await startProxy(upstream.url);
    await httpRequest(`${proxy.url}/api/wait/0`);
    for (const accept of [PROMETHEUS_2_ACCEPT, PROMETHEUS_3_ACCEPT]) {
      const families = await decoded(proxy, accept);
      const names = families.map((f) => f.name);
      for (const name of ['apiCount', 'apiDuration', 'apiErrorCount', 'http_server_request_duration_seconds', 'process_cpu_user_seconds_total', 'nodejs_heap_space_size_used_bytes']) {
        expect(names, name).toContain(name);
      }
      expect(families.find((f) => f.name === 'apiCount')?.type).toBe('COUNTER');
      expect(families.find((f) => f.name === 'apiDuration')?.type).toBe('HISTOGRAM');
      expect(families.find((f) => f.name === 'http_server_active_requests')?.type).toBe('GAUGE');
      expect(findMetric(families, 'apiCount', { method: 'GET' })?.counter?.value).toBe(1);
      expect(findMetric(families, 'apiErrorCount', { type: 'api' })?.counter?.value).toBe(0);
    }
    // The text formats are unchanged for everyone else.
    const text = await scrape(proxy, 'text/plain;version=0.0.4');
    expect(text.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(text.body.toString()).toContain('apiCount{method="GET"} 1');
  });

  it('native buckets hold exactly the observations: count and sum equal the classic ones, each in its bucket', async () => {
    proxy = await startProxy(upstream.url);
    const delays = [0, 0, 30, 30, 30, 120, 120, 250];
    await Promise.all(delays.map((ms) => httpRequest(`${proxy?.url}/api/wait/${ms}?size=${ms * 10 + 1}`)));
    const families = await decoded(proxy);
    const h = findMetric(families, 'apiDuration', { method: 'GET' })?.histogram as Histogram;
    expect(h.sampleCount).toBe(delays.length);
    expect(h.schema).toBe(3);
    expect(h.zeroThreshold).toBe(2 ** -128);
    expect(nativeTotal(h)).toBe(delays.length);
    // Classic buckets: cumulative, the last one (10 000 ms) holding everything.
    expect(h.bucket.at(-1)?.cumulativeCount).toBe(delays.length);
    // Each delayed request's duration is at least its delay: the native buckets above 100 ms hold the three slow ones.
    const slow = [...nativeBuckets(h)].filter(([key]) => bucketBounds(key, 3)[1] > 100).reduce((n, [, c]) => n + c, 0);
    expect(slow).toBe(3);

    const sizes = findMetric(families, 'http_server_response_body_size_bytes', { http_request_method: 'GET' })?.histogram as Histogram;
    expect(sizes.sampleCount).toBe(delays.length);
    expect(sizes.sampleSum).toBe(delays.reduce((n, ms) => n + ms * 10 + 1, 0));
    // Sizes are whole numbers: each lies in its bucket exactly, so the buckets are predictable.
    const expected = new Map<number, number>();
    for (const ms of delays) {
      const size = ms * 10 + 1;
      const key = Math.ceil(Math.log2(size) * 8 - 1e-9);
      expected.set(key, (expected.get(key) ?? 0) + 1);
    }
    expect(nativeBuckets(sizes)).toEqual(expected);
  });

  it('the text formats carry the same classic buckets as protobuf', async () => {
    proxy = await startProxy(upstream.url);
    await Promise.all([5, 15, 60].map((ms) => httpRequest(`${proxy?.url}/api/wait/${ms}`)));
    const families = await decoded(proxy);
    const h = findMetric(families, 'apiDuration', { method: 'GET' })?.histogram as Histogram;
    const text = (await scrape(proxy, 'text/plain')).body.toString();
    for (const bucket of h.bucket) {
      const le = bucket.upperBound === Infinity ? '+Inf' : String(bucket.upperBound);
      expect(text).toContain(`apiDuration_bucket{method="GET",le="${le}"} ${bucket.cumulativeCount}\n`);
    }
    expect(text).toContain(`apiDuration_count{method="GET"} ${h.sampleCount}\n`);
  });

  it('exemplars from a traceparent ride on the classic bucket and in the native exemplars', async () => {
    proxy = await startProxy(upstream.url);
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    await httpRequest(`${proxy.url}/api/wait/0`, { headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } });
    const families = await decoded(proxy);
    const h = findMetric(families, 'http_server_request_duration_seconds', { http_request_method: 'GET' })?.histogram as Histogram;
    const withExemplar = h.bucket.filter((b) => b.exemplar !== undefined);
    expect(withExemplar).toHaveLength(1);
    expect(labelsOf({ label: withExemplar[0]?.exemplar?.label ?? [] })).toEqual({ trace_id: traceId, span_id: '00f067aa0ba902b7' });
    expect(h.exemplars).toHaveLength(1);
    expect(h.exemplars[0]?.timestamp?.seconds).toBeGreaterThan(1_600_000_000);
    expect(h.exemplars[0]?.value).toBe(withExemplar[0]?.exemplar?.value);
  });

  it('gzip when asked, and HEAD answers the headers only', async () => {
    proxy = await startProxy(upstream.url);
    const plain = await scrape(proxy, PROMETHEUS_2_ACCEPT);
    const zipped = await scrape(proxy, PROMETHEUS_2_ACCEPT, { 'accept-encoding': 'gzip' });
    expect(zipped.headers['content-encoding']).toBe('gzip');
    const families = decodeExposition(gunzipSync(zipped.body));
    expect(families.map((f) => f.name)).toEqual(decodeExposition(plain.body).map((f) => f.name));
    const head = await httpRequest(`${proxy.url}/metrics`, { method: 'HEAD', headers: { accept: PROMETHEUS_2_ACCEPT } });
    expect(head.headers['content-type']).toBe(PROTOBUF_TYPE);
    expect(head.body).toHaveLength(0);
  });

  it('--no-protobuf-classic-buckets leaves classic buckets out of protobuf only', async () => {
    proxy = await startProxy(upstream.url, { protobufClassicBuckets: false });
    await httpRequest(`${proxy.url}/api/wait/10`);
    const families = await decoded(proxy);
    const h = findMetric(families, 'apiDuration', { method: 'GET' })?.histogram as Histogram;
    expect(h.bucket).toHaveLength(0);
    expect(nativeTotal(h)).toBe(1);
    expect(h.sampleCount).toBe(1);
    // prom-client's histograms have no native buckets: they keep their classic ones.
    const gc = families.find((f) => f.name === 'nodejs_gc_duration_seconds');
    for (const m of gc?.metric ?? []) expect(m.histogram?.bucket.length).toBeGreaterThan(0);
    expect((await scrape(proxy, 'text/plain')).body.toString()).toContain('apiDuration_bucket{method="GET",le="1"}');
  });

  it('--native-histogram-bucket-factor 0: classic histograms only, no native fields', async () => {
    proxy = await startProxy(upstream.url, { nativeHistogramBucketFactor: 0 });
    await httpRequest(`${proxy.url}/api/wait/10`);
    const h = findMetric(await decoded(proxy), 'apiDuration', { method: 'GET' })?.histogram as Histogram;
    expect(h.schema).toBeUndefined();
    expect(h.zeroThreshold).toBeUndefined();
    expect(h.positiveSpan).toHaveLength(0);
    expect(h.bucket.length).toBeGreaterThan(0);
  });

  it('a coarser factor and a small bucket limit: schema from the factor, reduced past the limit', async () => {
    proxy = await startProxy(upstream.url, { nativeHistogramBucketFactor: 2, nativeHistogramMaxBuckets: 2 });
    // Factor 2 is schema 0: keys 10, 11 and 17 (1 000, 2 000, 100 000 bytes); two buckets fit at schema -2 (3, 3, 5).
    await Promise.all([1_000, 2_000, 100_000].map((size) => httpRequest(`${proxy?.url}/api/wait/0?size=${size}`)));
    const families = await decoded(proxy);
    const sizes = findMetric(families, 'http_server_response_body_size_bytes', { http_request_method: 'GET' })?.histogram as Histogram;
    expect(sizes.schema).toBe(-2);
    expect(nativeBuckets(sizes)).toEqual(new Map([[3, 2], [5, 1]]));
  });
});
