/**
 * What a scrape costs with the series budget full: 100 routes × 9 methods × 10 statuses in the
 * standard family. Prints render time (text, OpenMetrics, text+gzip) and body sizes.
 * Run: npx tsx test/bench/scrape-cost.ts [routes] [methods] [statuses]
 */
import { performance } from 'node:perf_hooks';
import { gzipSync } from 'node:zlib';
import { Registry } from 'prom-client';
import { createRenderer } from '../../src/admin/exposition.js';
import { createMetrics } from '../../src/metrics/recorder.js';
import { DEFAULTS } from '../../src/config/config.js';
import { STANDARD_METHODS } from '../../src/metrics/methods.js';

const [routes = 100, methods = STANDARD_METHODS.length, statuses = 10] = process.argv.slice(2).map(Number);
const registry = new Registry();
const metrics = createMetrics(registry, {
  families: ['seed', 'standard'],
  bucketsMs: DEFAULTS.bucketsMs,
  durationBucketsSeconds: DEFAULTS.durationBucketsSeconds,
  apiPrefix: '/api',
  routeTemplates: [],
  openapiTemplates: [],
  maxRoutes: routes,
});
const STATUSES = [200, 201, 204, 301, 304, 400, 401, 404, 500, 503];
for (let r = 0; r < routes; r++) {
  for (const method of STANDARD_METHODS.slice(0, methods)) {
    for (const status of STATUSES.slice(0, statuses)) {
      metrics.recordRequest({
        method,
        path: `/api/resource${r}/items`,
        status,
        errorType: status >= 500 ? String(status) : '',
        durationMs: 12,
        requestBytes: 100,
        responseBytes: 1000,
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
        protocolVersion: '1.1',
      });
    }
  }
}
const render = createRenderer(registry);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
async function time(label: string, fn: () => Promise<number>): Promise<void> {
  const times: number[] = [];
  let size = 0;
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    size = await fn();
    times.push(performance.now() - t0);
  }
  console.log(`${label.padEnd(22)} median ${median(times).toFixed(1).padStart(7)} ms   body ${(size / 1024).toFixed(0).padStart(6)} KiB`);
}
const series = routes * methods * statuses;
console.log(`standard family: ${routes} routes × ${methods} methods × ${statuses} statuses = ${series} label sets (${series * 17} histogram lines)`);
await time('text 0.0.4', async () => Buffer.byteLength(String((await render('text')).body)));
await time('OpenMetrics', async () => Buffer.byteLength(String((await render('openmetrics')).body)));
await time('text 0.0.4 + gzip', async () => gzipSync(String((await render('text')).body)).length);
