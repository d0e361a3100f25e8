/**
 * What a scrape costs to render, in-process (no HTTP, no other process): the registry of a proxy
 * with the route budget full (budget-fill.ts: 2 000 routes by default, both families, native
 * histograms at factor 1.1), rendered in each format, median of 20. The same fill as the `scrape`
 * scenario of `npm run bench`, which measures over HTTP on the real bin; this one is for
 * profiling the renderers:
 *
 *   npx tsx test/bench/scrape-cost.ts [routes] [requests per route]
 *   node --cpu-prof --import tsx test/bench/scrape-cost.ts 2000 100 text
 *
 * A third argument renders only that format (text, openmetrics, protobuf, protobuf-native), a
 * fourth sets how many renders are timed (20; more makes a profile of the render alone).
 */
import { performance } from 'node:perf_hooks';
import { gzipSync } from 'node:zlib';
import { Registry } from 'prom-client';
import { createRenderer } from '../../src/admin/exposition.js';
import { DEFAULTS } from '../../src/config/config.js';
import { HistogramFamily } from '../../src/metrics/families.js';
import { nativeHistogramSettings } from '../../src/metrics/native-histogram.js';
import { createMetrics } from '../../src/metrics/recorder.js';
import { BUDGET_ROUTES, REQUESTS_PER_ROUTE, budgetFill } from './budget-fill.js';
import { median, percentile, sortNumbers } from './stats.js';

const [routesArg, perRouteArg, only, scrapesArg] = process.argv.slice(2);
const routes = Number(routesArg ?? BUDGET_ROUTES);
const perRoute = Number(perRouteArg ?? REQUESTS_PER_ROUTE);
const SCRAPES = Number(scrapesArg ?? 20);

const registry = new Registry();
const native = nativeHistogramSettings(DEFAULTS.nativeHistogramBucketFactor, DEFAULTS.nativeHistogramMaxBuckets);
const metrics = createMetrics(registry, {
  families: ['seed', 'standard'],
  bucketsMs: DEFAULTS.bucketsMs,
  durationBucketsSeconds: DEFAULTS.durationBucketsSeconds,
  apiPrefix: '/api',
  routeTemplates: [],
  openapiTemplates: [],
  maxRoutes: routes,
  ...(native === undefined ? {} : { nativeHistograms: native }),
});
const rssBefore = process.memoryUsage().rss;
for (const r of budgetFill(routes, perRoute)) {
  metrics.recordRequest({
    method: r.method,
    path: r.path.slice(0, r.path.indexOf('?')),
    status: r.status,
    errorType: r.status >= 500 ? String(r.status) : '',
    // What the proxy would add to the upstream's wait.
    durationMs: r.delayMs + 0.3,
    requestBytes: r.requestBytes,
    responseBytes: r.responseBytes,
    traceparent: undefined,
    protocolVersion: '1.1',
  });
}
globalThis.gc?.();
const rssAfter = process.memoryUsage().rss;

/** Label sets and populated native buckets of the route-labelled histograms. */
function describe(): string {
  const lines: string[] = [];
  for (const metric of registry.getMetricsAsArray() as unknown[]) {
    if (!(metric instanceof HistogramFamily) || !metric.labelNames.includes('http_route')) continue;
    const populated = [...metric.seriesList()].map((s) => s.native?.populated ?? 0);
    const sorted = sortNumbers(populated);
    lines.push(
      `  ${metric.name}: ${populated.length} label sets, populated native buckets median ${median(populated)}, p90 ${percentile(sorted, 90)}, max ${percentile(sorted, 100)}`,
    );
  }
  return lines.join('\n');
}

const render = createRenderer(registry);
const renderNativeOnly = createRenderer(registry, { classicBuckets: false });

async function time(label: string, fn: () => Promise<Buffer>): Promise<void> {
  if (only !== undefined && only !== label.split(' ')[0]) return;
  const times: number[] = [];
  let body: Buffer = Buffer.alloc(0);
  for (let i = 0; i < SCRAPES + 2; i++) {
    const t0 = performance.now();
    body = await fn();
    if (i >= 2) times.push(performance.now() - t0);
  }
  const gzipped = gzipSync(body).length;
  const p90 = percentile(sortNumbers(times), 90);
  console.log(
    `${label.padEnd(16)} median ${median(times).toFixed(1).padStart(6)} ms  p90 ${p90.toFixed(1).padStart(6)} ms  ` +
      `${(body.length / 2 ** 20).toFixed(2).padStart(6)} MiB  gzipped ${(gzipped / 2 ** 20).toFixed(2).padStart(5)} MiB`,
  );
}

const bytes = (rendered: { body: string | Buffer }): Buffer => (typeof rendered.body === 'string' ? Buffer.from(rendered.body) : rendered.body);

console.log(`${routes} routes × ${perRoute} requests; RSS ${(rssBefore / 2 ** 20).toFixed(0)} → ${(rssAfter / 2 ** 20).toFixed(0)} MiB after the fill`);
console.log(describe());
await time('text', async () => bytes(await render('text')));
await time('openmetrics', async () => bytes(await render('openmetrics')));
await time('protobuf', async () => bytes(await render('protobuf')));
await time('protobuf-native', async () => bytes(await renderNativeOnly('protobuf')));
