/**
 * The scrape scenario: fill the route budget through the proxy, then time GET /metrics as curl
 * asks for it (text) and as Prometheus does (OpenMetrics preferred, gzip), on one keep-alive
 * connection like a scraper's. Two levels on the same process: every route once (GET 200:
 * `routes` label sets), then every route with several methods and statuses (routes × methods ×
 * statuses label sets in the standard family's duration histogram).
 */
import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { gunzipSync } from 'node:zlib';
import { max, median, percentile, sortNumbers } from './stats.js';

/** The route budget's default (--max-routes 100). */
export const SCRAPE_ROUTES = 100;
export const SCRAPE_METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH'] as const;
export const SCRAPE_STATUSES = [200, 201, 404, 500] as const;
/** The Accept header Prometheus 2.x sends (scrape_protocols defaults). */
const PROMETHEUS_ACCEPT =
  'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1';

interface Answer {
  readonly status: number;
  readonly body: Buffer;
  readonly ms: number;
  readonly gzip: boolean;
}

function fetchOnce(agent: Agent, url: URL, method: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = request({ host: url.hostname, port: url.port, path: url.pathname + url.search, method, agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          body: Buffer.concat(chunks),
          ms: performance.now() - started,
          gzip: res.headers['content-encoding'] === 'gzip',
        }),
      );
      res.on('error', reject);
    });
    req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${url.pathname} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

export interface Populated {
  readonly requests: number;
  /** Requests that did not get the status asked for. */
  readonly unexpected: number;
}

/** routes × methods × statuses requests to /api/r<i>/items?s=<status>, 16 at a time. */
export async function populateRoutes(
  baseUrl: string,
  routes: number,
  methods: readonly string[],
  statuses: readonly number[],
): Promise<Populated> {
  const agent = new Agent({ keepAlive: true, maxSockets: 16 });
  const jobs: Array<{ path: string; method: string; status: number }> = [];
  for (let r = 0; r < routes; r++) {
    for (const method of methods) for (const status of statuses) jobs.push({ path: `/api/r${r}/items?s=${status}`, method, status });
  }
  let unexpected = 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const job = jobs[next++];
      if (job === undefined) return;
      const answer = await fetchOnce(agent, new URL(job.path, baseUrl), job.method);
      if (answer.status !== job.status) unexpected += 1;
    }
  };
  try {
    await Promise.all(Array.from({ length: 16 }, worker));
  } finally {
    agent.destroy();
  }
  return { requests: jobs.length, unexpected };
}

export interface ScrapeTiming {
  readonly medianMs: number;
  readonly p90Ms: number;
  readonly maxMs: number;
  /** On the wire. */
  readonly bytes: number;
  /** After gunzip (equal to `bytes` when not compressed). */
  readonly decodedBytes: number;
}

export interface ScrapeLevel {
  /** Label sets of http_server_request_duration_seconds the fill created. */
  readonly labelSets: number;
  readonly populated: Populated;
  /** Distinct http_route values in the scrape, `other` not counted (it is always there). */
  readonly routes: number;
  readonly text: ScrapeTiming;
  readonly prometheus: ScrapeTiming;
}

export interface ScrapeResult {
  /** Every route once (GET, 200). */
  readonly light: ScrapeLevel;
  /** Every route × SCRAPE_METHODS × SCRAPE_STATUSES. */
  readonly full: ScrapeLevel;
}

async function timeScrapes(agent: Agent, url: URL, count: number, headers: Record<string, string>): Promise<{ timing: ScrapeTiming; body: string }> {
  const times: number[] = [];
  let last: Answer | undefined;
  for (let i = 0; i < count + 2; i++) {
    const answer = await fetchOnce(agent, url, 'GET', headers);
    if (answer.status !== 200) throw new Error(`${url.pathname} answered ${answer.status}`);
    if (i >= 2) times.push(answer.ms); // the first two warm the connection and the renderer
    last = answer;
  }
  if (last === undefined) throw new Error('no scrape');
  const decoded = last.gzip ? gunzipSync(last.body) : last.body;
  return {
    timing: {
      medianMs: median(times),
      p90Ms: percentile(sortNumbers(times), 90),
      maxMs: max(times),
      bytes: last.body.length,
      decodedBytes: decoded.length,
    },
    body: decoded.toString('utf8'),
  };
}

async function level(agent: Agent, baseUrl: string, populated: Populated, labelSets: number, scrapes: number): Promise<ScrapeLevel> {
  const url = new URL('/metrics', baseUrl);
  const text = await timeScrapes(agent, url, scrapes, {});
  const prometheus = await timeScrapes(agent, url, scrapes, { accept: PROMETHEUS_ACCEPT, 'accept-encoding': 'gzip' });
  const seen = new Set<string>();
  for (const match of text.body.matchAll(/http_route="([^"]*)"/g)) if (match[1] !== 'other') seen.add(match[1] ?? '');
  return { labelSets, populated, routes: seen.size, text: text.timing, prometheus: prometheus.timing };
}

export async function scrapeScenario(baseUrl: string, routes: number, scrapes: number): Promise<ScrapeResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const first = await populateRoutes(baseUrl, routes, ['GET'], [200]);
    const light = await level(agent, baseUrl, first, routes, scrapes);
    const rest = await populateRoutes(baseUrl, routes, SCRAPE_METHODS, SCRAPE_STATUSES);
    const full = await level(agent, baseUrl, rest, routes * SCRAPE_METHODS.length * SCRAPE_STATUSES.length, scrapes);
    return { light, full };
  } finally {
    agent.destroy();
  }
}
