import { describe, expect, it, onTestFinished } from 'vitest';
import { performance } from 'node:perf_hooks';
import { DEFAULTS } from '../src/index.js';
import { type Proxy, echoHandler, httpRequest, parseExposition, sampleValue, startProxy, startUpstream } from './helpers.js';

async function setup(handler = echoHandler, overrides = {}): Promise<Proxy> {
  const upstream = await startUpstream(handler);
  onTestFinished(upstream.close);
  const proxy = await startProxy(upstream.url, overrides);
  onTestFinished(proxy.close);
  return proxy;
}

describe('/metrics', () => {
  it('serves the text format 0.0.4 with the seed metrics typed and zeroed error series', async () => {
    const proxy = await setup();
    const res = await httpRequest(`${proxy.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    const text = res.body.toString();
    expect(text).toContain('# TYPE apiCount counter');
    expect(text).toContain('# TYPE apiDuration histogram');
    expect(text).toContain('# TYPE apiErrorCount counter');
    expect(sampleValue(text, 'apiErrorCount', { type: 'api' })).toBe(0);
    expect(sampleValue(text, 'apiErrorCount', { type: 'ws' })).toBe(0);
    expect(parseExposition(text).filter((s) => s.name === 'apiCount')).toEqual([]);
    // prom-client's default process metrics are there too
    expect(sampleValue(text, 'process_cpu_user_seconds_total')).toBeGreaterThanOrEqual(0);
    expect(sampleValue(text, 'nodejs_heap_size_total_bytes')).toBeGreaterThan(0);
  });

  it('counts each forwarded request once, by method, with apiCount equal to apiDuration_count', async () => {
    const proxy = await setup();
    const sent = { GET: 7, POST: 4, PUT: 2, DELETE: 3, HEAD: 2, OPTIONS: 1, PATCH: 1 } as const;
    await Promise.all(
      Object.entries(sent).flatMap(([method, n]) =>
        Array.from({ length: n }, (_, i) => httpRequest(`${proxy.url}/api/item/${i}`, { method, body: method === 'POST' ? 'x' : undefined })),
      ),
    );
    // neither 404s, nor escapes, nor scrapes are api traffic
    await httpRequest(`${proxy.url}/elsewhere`);
    await httpRequest(`${proxy.url}/api/../admin`);
    await httpRequest(`${proxy.url}/metrics`);

    const text = await proxy.metrics();
    for (const [method, n] of Object.entries(sent)) {
      expect(sampleValue(text, 'apiCount', { method }), method).toBe(n);
      expect(sampleValue(text, 'apiDuration_count', { method }), method).toBe(n);
      expect(sampleValue(text, 'apiDuration_bucket', { method, le: '+Inf' }), method).toBe(n);
      expect(sampleValue(text, 'apiDuration_sum', { method })).toBeGreaterThan(0);
    }
    const total = parseExposition(text).filter((s) => s.name === 'apiCount').reduce((sum, s) => sum + s.value, 0);
    expect(total).toBe(Object.values(sent).reduce((a, b) => a + b, 0));
    expect(sampleValue(text, 'apiErrorCount', { type: 'api' })).toBe(0);
  });

  it('keeps the Go recipe names in the text format (no _total suffix)', async () => {
    const proxy = await setup();
    await httpRequest(`${proxy.url}/api/x`);
    const names = new Set(parseExposition(await proxy.metrics()).map((s) => s.name));
    expect(names.has('apiCount')).toBe(true);
    expect(names.has('apiErrorCount')).toBe(true);
    expect(names.has('apiCount_total')).toBe(false);
    expect(names.has('apiErrorCount_total')).toBe(false);
  });

  it('records apiDuration in milliseconds with the default buckets', async () => {
    const proxy = await setup((_req, res) => {
      setTimeout(() => res.end('late'), 120);
    });
    const started = performance.now();
    await httpRequest(`${proxy.url}/api/slow`);
    const elapsed = performance.now() - started;
    const samples = parseExposition(await proxy.metrics());
    // Milliseconds: at least the upstream's 120 ms delay, at most what the client waited.
    const sum = samples.find((s) => s.name === 'apiDuration_sum')?.value ?? NaN;
    expect(sum).toBeGreaterThanOrEqual(115);
    expect(sum).toBeLessThanOrEqual(elapsed);
    // The one observation sits in every bucket from the first one whose bound holds it, whatever it was.
    const buckets = samples.filter((s) => s.name === 'apiDuration_bucket');
    expect(buckets.map((s) => s.labels.le)).toEqual([...DEFAULTS.bucketsMs.map(String), '+Inf']);
    for (const { labels, value } of buckets) {
      const bound = labels.le === '+Inf' ? Infinity : Number(labels.le);
      expect(value, `le=${labels.le}`).toBe(sum <= bound ? 1 : 0);
    }
  });

  it('uses the configured buckets', async () => {
    const proxy = await setup(echoHandler, { bucketsMs: [3, 30000] });
    await httpRequest(`${proxy.url}/api/x`);
    const les = parseExposition(await proxy.metrics())
      .filter((s) => s.name === 'apiDuration_bucket')
      .map((s) => s.labels.le);
    expect(les).toEqual(['3', '30000', '+Inf']);
  });

  it('bounds the method label: non-standard methods count as OTHER', async () => {
    const proxy = await setup();
    for (const method of ['PROPFIND', 'PURGE', 'MKCOL', 'LOCK']) {
      expect((await httpRequest(`${proxy.url}/api/dav`, { method })).headers['x-echo-method']).toBe(method);
    }
    const text = await proxy.metrics();
    expect(sampleValue(text, 'apiCount', { method: 'OTHER' })).toBe(4);
    expect(sampleValue(text, 'apiDuration_count', { method: 'OTHER' })).toBe(4);
    const methods = new Set(parseExposition(text).filter((s) => s.name === 'apiCount').map((s) => s.labels.method));
    expect([...methods]).toEqual(['OTHER']);
  });

  it('counts scrapes in promhttp_metric_handler_requests_total by code, as Go does', async () => {
    const proxy = await setup();
    const first = await proxy.metrics();
    expect(sampleValue(first, 'promhttp_metric_handler_requests_total', { code: '200' })).toBe(0);
    expect(sampleValue(first, 'promhttp_metric_handler_requests_total', { code: '500' })).toBe(0);
    expect(sampleValue(first, 'promhttp_metric_handler_requests_total', { code: '503' })).toBe(0);
    await proxy.metrics();
    await proxy.metrics();
    expect(sampleValue(await proxy.metrics(), 'promhttp_metric_handler_requests_total', { code: '200' })).toBe(3);
  });

  it('answers HEAD without a body and refuses other methods with 405', async () => {
    const proxy = await setup();
    const head = await httpRequest(`${proxy.url}/metrics`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.body.length).toBe(0);
    const post = await httpRequest(`${proxy.url}/metrics`, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD');
    expect(sampleValue(await proxy.metrics(), 'promhttp_metric_handler_requests_total', { code: '405' })).toBe(1);
  });

  it('serves a custom metrics path and forwards nothing for it', async () => {
    const upstream = await startUpstream(echoHandler);
    onTestFinished(upstream.close);
    const proxy = await startProxy(upstream.url, { apiPrefix: '/', metricsPath: '/internal/metrics' });
    onTestFinished(proxy.close);
    const text = (await httpRequest(`${proxy.url}/internal/metrics`)).body.toString();
    expect(text).toContain('# TYPE apiCount counter');
    // with prefix "/", the old metrics path is just another upstream path
    expect((await httpRequest(`${proxy.url}/metrics`)).headers['x-echo-url']).toBe('/metrics');
    expect(upstream.seen.map((r) => r.url)).toEqual(['/metrics']);
  });

  it('keeps two proxies in one process apart (a registry per instance)', async () => {
    const a = await setup();
    const b = await setup();
    await httpRequest(`${a.url}/api/x`);
    await httpRequest(`${a.url}/api/x`);
    await httpRequest(`${b.url}/api/x`);
    expect(sampleValue(await a.metrics(), 'apiCount', { method: 'GET' })).toBe(2);
    expect(sampleValue(await b.metrics(), 'apiCount', { method: 'GET' })).toBe(1);
  });
});
