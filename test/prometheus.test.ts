/**
 * The proxy against the real thing: promtool's linter over /metrics, and a real Prometheus scraping a
 * real proxy every second, checked with PromQL. Skipped (with a message) where Prometheus is not installed;
 * CI installs it (.ci/run).
 *
 * Each Prometheus test owns its upstream, proxy and Prometheus, so those tests run concurrently: a new Prometheus needs
 * about 5 s before its first scrape (its discovery manager sends targets on a 5 s tick), and running the
 * cases side by side keeps the file at that cost, not a multiple of it. Concurrent tests must use
 * `expect` and `onTestFinished` from their own context: the helpers take `onTestFinished` and throw.
 */
import { type IncomingMessage, type ServerResponse, createServer, request } from 'node:http';
import { WebSocketServer } from 'ws';
import { type TestContext, describe, it } from 'vitest';
import { DEFAULTS } from '../src/index.js';
import { type Proxy, echoHandler, httpRequest, startProxy, startServer, startUpstream, wsSession, deadUpstreamUrl } from './helpers.js';
import { type RunningPrometheus, prometheusTools, promtoolCheckMetrics, startPrometheus } from './prometheus.js';

const tools = prometheusTools();
if (tools === undefined) {
  console.warn("test/prometheus.test.ts skipped: no prometheus/promtool on PATH or in /usr/bin (Debian package `prometheus`; bash .ci/run installs it)");
}

/** The Go recipe's camelCase names, kept on purpose: promtool's naming complaints about them are expected. */
const LEGACY_NAMES = new Set(['apiCount', 'apiDuration', 'apiErrorCount']);
const JOB = 'metrics-proxy';
type Cleanup = TestContext['onTestFinished'];

/** 500 under /api/fail, an echo everywhere else. */
function upstreamHandler(req: IncomingMessage, res: ServerResponse): void {
  if (req.url?.startsWith('/api/fail') === true) {
    req.resume();
    res.writeHead(500, { 'content-type': 'application/json' }).end('{"ok":false}');
    return;
  }
  echoHandler(req, res);
}

async function setupProxy(onTestFinished: Cleanup): Promise<Proxy> {
  const upstream = await startUpstream(upstreamHandler);
  const wss = new WebSocketServer({ server: upstream.server });
  wss.on('connection', (ws) => ws.on('message', (data) => ws.send(data)));
  onTestFinished(async () => {
    wss.close();
    await upstream.close();
  });
  const proxy = await startProxy(upstream.url);
  onTestFinished(proxy.close);
  return proxy;
}

/** A proxy and a Prometheus scraping it every second as job JOB. */
async function setupScraped(onTestFinished: Cleanup): Promise<{ proxy: Proxy; prometheus: RunningPrometheus }> {
  const proxy = await setupProxy(onTestFinished);
  const prometheus = await startPrometheus({ scrapeIntervalSeconds: 1, targets: [{ job: JOB, address: `127.0.0.1:${proxy.port}` }] });
  onTestFinished(prometheus.close);
  return { proxy, prometheus };
}

/** Sends requests through the proxy and checks each answer, so the counts below are known exactly. */
async function send(proxy: Proxy, traffic: { gets?: number; posts?: number; failures?: number }): Promise<void> {
  const exchanges = [
    ...Array.from({ length: traffic.gets ?? 0 }, (_, i) => [`/api/items/${i}`, 'GET', 200] as const),
    ...Array.from({ length: traffic.posts ?? 0 }, (_, i) => [`/api/items/${i}`, 'POST', 200] as const),
    ...Array.from({ length: traffic.failures ?? 0 }, (_, i) => [`/api/fail/${i}`, 'GET', 500] as const),
  ];
  const statuses = await Promise.all(
    exchanges.map(async ([path, method]) => (await httpRequest(`${proxy.url}${path}`, { method, body: method === 'POST' ? 'payload' : undefined })).status),
  );
  const wrong = exchanges.filter(([, , status], i) => statuses[i] !== status);
  if (wrong.length > 0) throw new Error(`unexpected statuses: ${JSON.stringify(statuses)}`);
}

/** The value of a query that must return exactly one sample. */
async function single(prometheus: RunningPrometheus, promql: string): Promise<number> {
  const result = await prometheus.query(promql);
  const [only] = result;
  if (only === undefined || result.length !== 1) throw new Error(`${promql}: expected one sample, got ${JSON.stringify(result)}`);
  return only.value;
}

describe.skipIf(tools === undefined)('promtool check metrics', () => {
  it('finds nothing wrong with /metrics after traffic, but the legacy camelCase names', async ({ expect, onTestFinished }) => {
    const proxy = await setupProxy(onTestFinished);
    await send(proxy, { gets: 3, posts: 2, failures: 1 });
    await wsSession(proxy, 2, '/api/chat/room-1');
    expect((await httpRequest(`${proxy.url}/api/x`, { method: 'HEAD' })).status).toBe(200);

    const { problems } = await promtoolCheckMetrics(await proxy.metrics());
    // A complaint starts with the metric's name: "apiCount counter metrics should have "_total" suffix".
    const legacy = problems.filter((p) => LEGACY_NAMES.has(p.split(' ')[0] ?? ''));
    const rest = problems.filter((p) => !legacy.includes(p));
    console.info(`promtool complaints about the legacy names, expected:\n    ${legacy.join('\n    ')}`);
    expect(legacy.length).toBeGreaterThan(0); // the filter above really filters something
    expect(rest).toEqual([]);
  });
});

describe.skipIf(tools === undefined)('a real Prometheus scraping the proxy', { concurrent: true }, () => {
  it('counts requests, methods and errors, and computes a median latency, as PromQL sees them', async ({ expect, onTestFinished }) => {
    const { proxy, prometheus } = await setupScraped(onTestFinished);
    await send(proxy, { gets: 7, posts: 3, failures: 2 });
    await prometheus.waitForScrapes(JOB, 1);

    const expected: Array<[promql: string, value: number]> = [
      ['sum(apiCount)', 12],
      ['sum(apiDuration_count)', 12],
      ['apiCount{method="POST"}', 3],
      ['apiCount{method="GET"}', 9],
      ['apiErrorCount{type="api"}', 2],
      ['apiErrorCount{type="ws"}', 0],
    ];
    for (const [promql, value] of expected) expect(await single(prometheus, promql), promql).toBe(value);

    const median = await single(prometheus, 'histogram_quantile(0.5, sum by (le) (apiDuration_bucket))');
    expect(Number.isFinite(median), `median ${median}`).toBe(true);
    expect(median).toBeGreaterThanOrEqual(0);
    expect(median).toBeLessThanOrEqual(Math.max(...DEFAULTS.bucketsMs));
  });
});


describe.skipIf(tools === undefined)('the standard family in a real Prometheus', { concurrent: true }, () => {
  it('separates proxy failures from upstream 5xx, keeps routes under budget, and carries exemplars', async ({ expect, onTestFinished }) => {
    // An upstream that succeeds, fails with 500, drops the connection, never answers, or echoes WebSockets.
    const server = createServer((req, res) => {
      const path = req.url ?? '';
      if (path.startsWith('/api/fail')) res.writeHead(500).end();
      else if (path.startsWith('/api/drop')) req.socket.destroy();
      else if (path.startsWith('/api/hang')) return;
      else if (path.startsWith('/api/slowish')) setTimeout(() => res.end('late'), 120);
      else echoHandler(req, res);
    });
    const wss = new WebSocketServer({ server });
    wss.on('connection', (ws) => ws.on('message', (data) => ws.send(data)));
    const upstream = await startServer(server);
    onTestFinished(async () => {
      wss.close();
      await upstream.close();
    });
    const proxy = await startProxy(upstream.url, { upstreamTimeoutMs: 300, maxRoutes: 20, routes: ['/api/items/:id'] });
    onTestFinished(proxy.close);
    // and a second proxy whose service is down
    const goneUrl = await deadUpstreamUrl();
    const orphan = await startProxy(goneUrl);
    onTestFinished(orphan.close);
    const prometheus = await startPrometheus({
      scrapeIntervalSeconds: 1,
      targets: [
        { job: JOB, address: `127.0.0.1:${proxy.port}` },
        { job: 'orphan', address: `127.0.0.1:${orphan.port}` },
      ],
    });
    onTestFinished(prometheus.close);
    for (let i = 0; i < 3; i++) expect((await httpRequest(`${orphan.url}/api/items/${i}`)).status).toBe(502);

    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const get = (path: string, headers: Record<string, string> = {}) => httpRequest(`${proxy.url}${path}`, { headers });
    for (let i = 0; i < 6; i++) expect((await get(`/api/items/${i}`, { traceparent: `00-${traceId}-b7ad6b716920333${i}-01` })).status).toBe(200);
    for (let i = 0; i < 4; i++) expect((await get('/api/fail')).status).toBe(500);
    for (let i = 0; i < 3; i++) expect((await get('/api/drop')).status).toBe(502);
    for (let i = 0; i < 2; i++) expect((await get('/api/hang')).status).toBe(504);
    for (let i = 0; i < 5; i++) expect((await get('/api/slowish')).status).toBe(200);
    // two clients that give up
    for (let i = 0; i < 2; i++) {
      const req = request(`${proxy.url}/api/hang/abandoned`, { agent: false });
      req.on('error', () => {});
      req.end();
      await new Promise((r) => setTimeout(r, 50));
      req.destroy();
    }
    await wsSession(proxy, 3, '/api/chat/room-1');
    await wsSession(proxy, 2, '/api/chat/room-1');
    // a scanner
    for (let i = 0; i < 200; i++) await get(`/api/scan-${Math.random().toString(36).slice(2, 8)}/x`);
    await new Promise((r) => setTimeout(r, 100)); // let the abandoned requests close
    await prometheus.waitForScrapes(JOB, 1);
    await prometheus.waitForScrapes('orphan', 1);

    const D = 'http_server_request_duration_seconds_count';
    const expected: Array<[promql: string, value: number]> = [
      [`sum(${D}{job="metrics-proxy",http_route="/api/items/:id",http_response_status_code="200",error_type=""})`, 6],
      // "the service answered 5xx" vs "the proxy could not reach the service": one label apart
      [`sum(${D}{job="metrics-proxy",error_type=~"[0-9]+"})`, 4],
      [`sum(${D}{job="metrics-proxy",error_type!="",error_type!~"[0-9]+"})`, 5],
      [`sum(${D}{job="metrics-proxy",http_response_status_code="502",error_type="reset"})`, 3],
      [`sum(${D}{job="metrics-proxy",http_response_status_code="504",error_type="response_timeout"})`, 2],
      ['metrics_proxy_upstream_errors_total{job="metrics-proxy",error_type="reset"}', 3],
      ['metrics_proxy_upstream_errors_total{job="metrics-proxy",error_type="response_timeout"}', 2],
      [`sum(${D}{job="metrics-proxy",http_response_status_code="499"})`, 2],
      ['apiErrorCount{job="metrics-proxy",type="api"}', 4 + 3 + 2],
      [`sum(${D}{job="metrics-proxy",http_response_status_code="101"})`, 2],
      ['sum(metrics_proxy_websocket_sessions_active)', 0],
      ['sum(metrics_proxy_websocket_session_duration_seconds_count{close_code="1000"})', 2],
      ['sum(metrics_proxy_websocket_messages_total{direction="upstream"})', 5],
      ['sum(metrics_proxy_websocket_messages_total{direction="downstream"})', 5],
      ['sum(http_server_active_requests{job="metrics-proxy"})', 0],
      // the service that is down: every request answered by the proxy, none by the service
      ['metrics_proxy_upstream_errors_total{job="orphan",error_type="connect_refused"}', 3],
      [`sum(${D}{job="orphan",http_response_status_code="502",error_type="connect_refused"})`, 3],
      [`sum(${D}{job="orphan",error_type=~"[0-9]+"}) or vector(0)`, 0],
    ];
    for (const [promql, value] of expected) expect(await single(prometheus, promql), promql).toBe(value);

    // the route series stay under budget (20 inferred + the template + other), whatever the scanner sent
    const routes = await single(prometheus, `count(count by (http_route) (${D}{job="metrics-proxy"}))`);
    expect(routes).toBeLessThanOrEqual(22);
    expect(await single(prometheus, 'metrics_proxy_routes_overflow_total{job="metrics-proxy"}')).toBeGreaterThan(0);

    // 120 ms answers: the median falls in the (0.1, 0.25] bucket
    const median = await single(
      prometheus,
      'histogram_quantile(0.5, sum by (le) (http_server_request_duration_seconds_bucket{http_route="/api/slowish"}))',
    );
    expect(median).toBeGreaterThan(0.1);
    expect(median).toBeLessThanOrEqual(0.25);

    // exemplars travel through OpenMetrics into Prometheus's exemplar storage
    const now = Date.now() / 1000;
    const exemplars = JSON.stringify(
      await prometheus.queryExemplars('http_server_request_duration_seconds_bucket{http_route="/api/items/:id"}', now - 300, now + 60),
    );
    expect(exemplars).toContain(traceId);
  });
});
