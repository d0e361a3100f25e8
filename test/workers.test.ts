/**
 * `--workers`: workers share the port, and any worker's /metrics is the exact sum over all of them;
 * a scrape the cluster cannot answer in time is a 503, whichever side is stuck.
 */
import { execFileSync } from 'node:child_process';
import { Agent, request } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { type Collection, type MetricJson, createClusterSum, createSumRenderer } from '../src/admin/cluster-sum.js';
import { collectRegistry } from '../src/admin/cluster-snapshot.js';
import { LOOPBACK, type Listening, expectOneCleanLine, runToExit, startListening } from './bin.js';
import { httpRequest, sampleValue, settle, startUpstream, until } from './helpers.js';

function children(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** A GET over `agent` (so over a connection it keeps), with the time it took; rejects after `timeoutMs`. */
function timedGet(url: string, agent: Agent | false, timeoutMs: number): Promise<{ status: number; ms: number }> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(url, { agent, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - start }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer to ${url} within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** `--workers 2` in front of an upstream that answers `ok`; the test ends with SIGCONT to every process, then SIGTERM. */
async function startCluster(): Promise<Listening & { workers: number[] }> {
  const upstream = await startUpstream((_req, res) => res.end('ok'));
  onTestFinished(upstream.close);
  const started = await startListening([...LOOPBACK, '--port', '0', '--upstream', upstream.url, '--workers', '2']);
  const { bin } = started;
  onTestFinished(async () => {
    for (const pid of [bin.pid, ...children(bin.pid)]) process.kill(pid, 'SIGCONT');
    process.kill(bin.pid, 'SIGTERM');
    await bin.exited;
  });
  await until(() => (bin.stdout().match(/"msg":"listening"/g) ?? []).length === 2, 'both workers to listen', 10_000);
  const workers = children(bin.pid);
  expect(workers).toHaveLength(2);
  return { ...started, workers };
}

describe('--workers', () => {
  it('sums every worker exactly, keeps counters across a worker restart, and drains as one', { timeout: 60_000 }, async () => {
    const seenBy = new Set<number>();
    const upstream = await startUpstream((req, res) => {
      seenBy.add(req.socket.remotePort ?? 0);
      res.end('ok');
    });
    onTestFinished(upstream.close);
    const { bin, url } = await startListening([...LOOPBACK, '--port', '0', '--upstream', upstream.url, '--workers', '2']);
    // the first line may be the primary's; wait for both workers
    await until(() => (bin.stdout().match(/"msg":"listening"/g) ?? []).length === 2, 'both workers to listen', 10_000);
    const workers = children(bin.pid);
    expect(workers).toHaveLength(2);

    const send = async (n: number) => {
      for (let i = 0; i < n; i++) expect((await httpRequest(`${url}/api/item/${i}`)).status).toBe(200);
    };
    const count = async () => sampleValue((await httpRequest(`${url}/metrics`)).body.toString(), 'apiCount', { method: 'GET' });
    await send(200);
    // fresh connections are spread over both workers, each with its own upstream connection pool
    expect(seenBy.size).toBeGreaterThanOrEqual(2);
    for (let i = 0; i < 5; i++) expect(await count()).toBe(200); // whichever worker answers the scrape

    // a worker dies: the primary restarts it and its counts so far stay in the sum
    process.kill(workers[0] as number, 'SIGKILL');
    await until(() => children(bin.pid).filter((pid) => pid !== workers[0]).length === 2, 'the worker to be replaced', 15_000);
    await until(() => (bin.stdout().match(/"msg":"listening"/g) ?? []).length === 3, 'the new worker to listen', 15_000);
    expect(await settle(count, (n) => n === 200)).toBe(200);
    await send(50);
    for (let i = 0; i < 5; i++) expect(await count()).toBe(250);

    // and again, the other original worker this time: both dead workers' counts stay in, once each
    process.kill(workers[1] as number, 'SIGKILL');
    await until(() => (bin.stdout().match(/"msg":"listening"/g) ?? []).length === 4, 'the second new worker to listen', 15_000);
    expect(children(bin.pid).filter((pid) => workers.includes(pid))).toEqual([]);
    expect(await settle(count, (n) => n === 250)).toBe(250);
    await send(10);
    for (let i = 0; i < 5; i++) expect(await count()).toBe(260);

    process.kill(bin.pid, 'SIGTERM');
    expect((await bin.exited).code).toBe(0);
    expect(children(bin.pid)).toEqual([]);
  });

  it('answers 503 when a worker does not hand over its metrics in time: a partial sum would look like a counter reset', { timeout: 30_000 }, async () => {
    const { url, workers } = await startCluster();
    process.kill(workers[0] as number, 'SIGSTOP');
    // The primary hands a stopped worker at most one connection (it never takes it): one of two scrapes reaches the other.
    const scrapes = [timedGet(`${url}/metrics`, false, 15_000), timedGet(`${url}/metrics`, false, 15_000)];
    for (const scrape of scrapes) scrape.catch(() => {}); // both are awaited below
    const first = await Promise.race(scrapes);
    expect(first.status).toBe(503);
    process.kill(workers[0] as number, 'SIGCONT');
    await Promise.allSettled(scrapes);
  });

  it('answers 503 when the primary does not answer a worker\'s scrape in time, instead of holding it open', { timeout: 30_000 }, async () => {
    const { bin, url } = await startCluster();
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    onTestFinished(() => agent.destroy());
    // A connection a worker already holds: the primary, which hands out new ones, is not needed to reach it.
    expect((await timedGet(`${url}/healthz`, agent, 5_000)).status).toBe(200);
    process.kill(bin.pid, 'SIGSTOP');
    const scrape = await timedGet(`${url}/metrics`, agent, 15_000);
    expect(scrape.status).toBe(503);
    expect(scrape.ms).toBeLessThan(10_000);
  });

  it.each([['0'], ['65'], ['many']])('refuses --workers %s with one clean line', async (value) => {
    const result = await runToExit([...LOOPBACK, '--port', '0', '--upstream', 'http://127.0.0.1:9', '--workers', value], {}, onTestFinished);
    expect(result.code).toBe(2);
    expect(expectOneCleanLine(result.stderr)).toContain('--workers');
  });

  it('stops with an error when the workers cannot listen', async () => {
    const holder = createNetServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    onTestFinished(() => new Promise<void>((resolve) => holder.close(() => resolve())));
    const port = (holder.address() as AddressInfo).port;
    const result = await runToExit(
      [...LOOPBACK, '--port', String(port), '--upstream', 'http://127.0.0.1:9', '--workers', '2', '--log-level', 'silent'],
      {},
      onTestFinished,
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('address already in use');
  });
});

describe('the retired workers\' total (prom-client\'s own metrics)', () => {
  /** What one worker hands the primary: a counter, a histogram and a gauge of prom-client's, from a real registry. */
  async function workerMetrics(requests: number): Promise<Collection> {
    const registry = new Registry();
    const counter = new Counter({ name: 'requests_total', help: 'r', labelNames: ['route'], registers: [registry] });
    const histogram = new Histogram({ name: 'duration_seconds', help: 'd', buckets: [0.1, 1], registers: [registry] });
    new Gauge({ name: 'in_flight', help: 'g', registers: [registry] }).set(3);
    counter.inc({ route: '/a' }, requests);
    if (requests % 2 === 0) counter.inc({ route: '/b' });
    for (let i = 0; i < requests; i++) histogram.observe(0.5);
    return collectRegistry(registry);
  }
  const seriesOf = (collection: Collection): number => collection.metrics.reduce((n, m) => n + (m as MetricJson).values.length, 0);
  const text = async (sum: ReturnType<typeof createClusterSum>, collected: Collection[]): Promise<string> =>
    String((await createSumRenderer()(sum.sum(collected), 'text')).body);

  it('is one running total however many workers crash: exact, and no bigger after 300 crashes than after 2', async () => {
    const sum = createClusterSum();
    let expected = 0;
    let seriesAfterTwo = 0;
    for (let id = 1; id <= 300; id++) {
      sum.seen(id, await workerMetrics(id));
      sum.retire(id);
      expected += id;
      if (id === 2) seriesAfterTwo = seriesOf(sum.retired());
    }
    expect(sum.retired().metrics.map((m) => m.name).sort()).toEqual(['duration_seconds', 'requests_total']); // gauges die with their worker
    expect(seriesOf(sum.retired())).toBe(seriesAfterTwo);
    const body = await text(sum, [await workerMetrics(1)]);
    expect(sampleValue(body, 'requests_total', { route: '/a' })).toBe(expected + 1);
    expect(sampleValue(body, 'requests_total', { route: '/b' })).toBe(150);
    expect(sampleValue(body, 'duration_seconds_count', {})).toBe(expected + 1);
    expect(sampleValue(body, 'duration_seconds_bucket', { le: '1' })).toBe(expected + 1);
    expect(sampleValue(body, 'in_flight', {})).toBe(3);
  });

  it('forgets a worker that never handed over anything, and counts each retired worker once', async () => {
    const sum = createClusterSum();
    sum.retire(7);
    expect(sum.retired().metrics).toEqual([]);
    sum.seen(1, await workerMetrics(5));
    sum.retire(1);
    sum.retire(1);
    expect(sampleValue(await text(sum, []), 'requests_total', { route: '/a' })).toBe(5);
  });
});
