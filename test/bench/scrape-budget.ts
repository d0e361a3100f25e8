/**
 * The scrape at the full route budget (issue 16, point 4): metrics-proxy started as users start
 * it with `--max-routes 2000` (both families, native histograms at factor 1.1: the defaults),
 * the budget filled through it with the traffic of budget-fill.ts, then /metrics timed over HTTP
 * in every format a scraper may ask for, and the memory read from /proc.
 *
 * Three processes, filled at once with the same requests (so with the same observations, up to
 * the proxy's own microseconds): `main` (the defaults), `nativeOnly` (--no-protobuf-classic-buckets:
 * what a Prometheus that reads native histograms gets), and `control` (--metrics none: the same
 * traffic without metrics, so that main − control is what the metrics cost in memory).
 *
 * Scrapes go one at a time on a keep-alive connection per proxy, like a scraper's, in rounds over
 * the formats (so that a burst of noise from other processes spreads over all of them); the first
 * two rounds warm up and are not counted.
 */
import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';
import { type FillRequest, MAX_BODY_BYTES } from './budget-fill.js';
import type { Memory } from './proc.js';
import { max, median, percentile, sortNumbers } from './stats.js';

export const PROTOBUF_ACCEPT =
  'application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3';
/** What Prometheus 2.x asks without native histograms (scrape_protocols' default). */
export const OPENMETRICS_ACCEPT =
  'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1';
const TEXT_ACCEPT = 'text/plain;version=0.0.4';

export type BudgetProxy = 'main' | 'nativeOnly' | 'control';
export const BUDGET_PROXIES: readonly BudgetProxy[] = ['main', 'nativeOnly', 'control'];

export const VARIANT_IDS = ['text', 'text-gzip', 'openmetrics', 'openmetrics-gzip', 'protobuf', 'protobuf-gzip', 'native', 'native-gzip'] as const;
export type VariantId = (typeof VARIANT_IDS)[number];

interface Variant {
  readonly title: string;
  readonly proxy: BudgetProxy;
  readonly accept: string;
  readonly gzip: boolean;
}

export const VARIANTS: Readonly<Record<VariantId, Variant>> = {
  text: { title: 'text 0.0.4', proxy: 'main', accept: TEXT_ACCEPT, gzip: false },
  'text-gzip': { title: 'text 0.0.4 + gzip', proxy: 'main', accept: TEXT_ACCEPT, gzip: true },
  openmetrics: { title: 'OpenMetrics', proxy: 'main', accept: OPENMETRICS_ACCEPT, gzip: false },
  'openmetrics-gzip': { title: 'OpenMetrics + gzip (Prometheus, native histograms off)', proxy: 'main', accept: OPENMETRICS_ACCEPT, gzip: true },
  protobuf: { title: 'protobuf (classic + native buckets)', proxy: 'main', accept: PROTOBUF_ACCEPT, gzip: false },
  'protobuf-gzip': { title: 'protobuf + gzip (Prometheus, native histograms on)', proxy: 'main', accept: PROTOBUF_ACCEPT, gzip: true },
  native: { title: 'protobuf, --no-protobuf-classic-buckets', proxy: 'nativeOnly', accept: PROTOBUF_ACCEPT, gzip: false },
  'native-gzip': { title: 'protobuf + gzip, --no-protobuf-classic-buckets', proxy: 'nativeOnly', accept: PROTOBUF_ACCEPT, gzip: true },
};

/** Memory of a proxy read right after a full garbage collection in it (memory-probe.mjs). */
export interface MemoryReading extends Memory {
  /** V8 heap in use plus memory outside it (Buffers): what the process keeps alive. */
  readonly liveBytes: number;
}

/** What the scenario needs of each running proxy. */
export interface BudgetTarget {
  readonly url: string;
  /** A full GC in the process, then its memory. */
  readonly probe: () => Promise<MemoryReading>;
  readonly cpuSeconds: () => number | undefined;
}

export interface VariantTiming {
  readonly medianMs: number;
  readonly p90Ms: number;
  readonly maxMs: number;
  readonly samples: number;
  /** CPU time of the proxy per scrape (utime + stime over all its timed scrapes ÷ their number). */
  readonly cpuMs: number;
  /** On the wire. */
  readonly bytes: number;
  /** After gunzip (equal to `bytes` when not compressed). */
  readonly decodedBytes: number;
}

export interface BudgetMemory {
  readonly start: MemoryReading;
  readonly filled: MemoryReading;
  readonly scraped: MemoryReading;
}

/** Series Prometheus would store for the route-labelled histograms (from the text scrape). */
export interface SeriesCount {
  readonly family: string;
  readonly labelSets: number;
  /** One per bucket (with +Inf), plus _sum and _count, per label set. */
  readonly classic: number;
}

export interface BudgetResult {
  readonly routes: number;
  readonly requests: number;
  /** Fill requests that did not get the status asked for, summed over the three proxies. */
  readonly unexpected: number;
  readonly fillS: number;
  /** Distinct http_route values in main's text scrape, `other` not counted. */
  readonly routesSeen: number;
  /** metrics_proxy_routes_overflow_total in main's text scrape. */
  readonly overflow: number;
  readonly series: readonly SeriesCount[];
  readonly timings: Readonly<Record<VariantId, VariantTiming>>;
  readonly memory: Readonly<Record<BudgetProxy, BudgetMemory>>;
}

interface Answer {
  readonly status: number;
  readonly body: Buffer;
  readonly ms: number;
  readonly gzip: boolean;
}

const SIZED_BODY = Buffer.alloc(MAX_BODY_BYTES, 0x64);

function send(agent: Agent, base: URL, path: string, method: string, headers: Record<string, string>, body?: Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = request({ host: base.hostname, port: base.port, path, method, agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), ms: performance.now() - started, gzip: res.headers['content-encoding'] === 'gzip' }),
      );
      res.on('error', reject);
    });
    req.setTimeout(60_000, () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

const FILL_CONCURRENCY = 128;

/** Every request of the fill to every proxy at once, FILL_CONCURRENCY requests in flight; returns the unexpected answers. */
export async function fill(urls: readonly string[], requests: readonly FillRequest[]): Promise<number> {
  const targets = urls.map((url) => ({ base: new URL(url), agent: new Agent({ keepAlive: true, maxSockets: FILL_CONCURRENCY }) }));
  let unexpected = 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let job = requests[next++]; job !== undefined; job = requests[next++]) {
      const r = job;
      const body = r.requestBytes > 0 ? SIZED_BODY.subarray(0, r.requestBytes) : undefined;
      const headers: Record<string, string> = body === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(body.length) };
      const answers = await Promise.all(targets.map((t) => send(t.agent, t.base, r.path, r.method, headers, body)));
      for (const a of answers) if (a.status !== r.status) unexpected += 1;
    }
  };
  try {
    await Promise.all(Array.from({ length: FILL_CONCURRENCY }, worker));
  } finally {
    for (const t of targets) t.agent.destroy();
  }
  return unexpected;
}

interface Collected {
  readonly times: number[];
  cpuSeconds: number;
  last: Answer | undefined;
}

/** `rounds` rounds over the variants (the first `warmUp` not counted), one scrape at a time. */
async function scrapeRounds(targets: Readonly<Record<BudgetProxy, BudgetTarget>>, rounds: number, warmUp: number): Promise<Record<VariantId, Collected>> {
  const agents = { main: new Agent({ keepAlive: true, maxSockets: 1 }), nativeOnly: new Agent({ keepAlive: true, maxSockets: 1 }) };
  const collected = Object.fromEntries(VARIANT_IDS.map((id) => [id, { times: [], cpuSeconds: 0, last: undefined }])) as unknown as Record<VariantId, Collected>;
  try {
    for (let round = 0; round < warmUp + rounds; round++) {
      for (const id of VARIANT_IDS) {
        const v = VARIANTS[id];
        if (v.proxy === 'control') continue;
        const target = targets[v.proxy];
        const headers: Record<string, string> = { accept: v.accept, ...(v.gzip ? { 'accept-encoding': 'gzip' } : {}) };
        const cpuBefore = target.cpuSeconds() ?? 0;
        const answer = await send(agents[v.proxy], new URL(target.url), '/metrics', 'GET', headers);
        const cpu = (target.cpuSeconds() ?? 0) - cpuBefore;
        if (answer.status !== 200) throw new Error(`/metrics (${v.title}) answered ${answer.status}`);
        if (answer.gzip !== v.gzip) throw new Error(`/metrics (${v.title}) came ${answer.gzip ? '' : 'un'}compressed`);
        const c = collected[id];
        c.last = answer;
        if (round < warmUp) continue;
        c.times.push(answer.ms);
        c.cpuSeconds += cpu;
      }
    }
  } finally {
    agents.main.destroy();
    agents.nativeOnly.destroy();
  }
  return collected;
}

function timing(c: Collected): VariantTiming {
  if (c.last === undefined) throw new Error('no scrape');
  const decoded = c.last.gzip ? gunzipSync(c.last.body) : c.last.body;
  return {
    medianMs: median(c.times),
    p90Ms: percentile(sortNumbers(c.times), 90),
    maxMs: max(c.times),
    samples: c.times.length,
    cpuMs: (c.cpuSeconds * 1000) / Math.max(1, c.times.length),
    bytes: c.last.body.length,
    decodedBytes: decoded.length,
  };
}

/** The route-labelled histogram families of a text scrape: label sets (_count lines) and classic series (all lines). */
export function countSeries(text: string): { series: SeriesCount[]; routes: number; overflow: number } {
  const histograms = new Set<string>();
  for (const m of text.matchAll(/^# TYPE (\S+) histogram$/gm)) histograms.add(m[1] as string);
  const counts = new Map<string, { labelSets: number; classic: number }>();
  const routes = new Set<string>();
  let overflow = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.includes('http_route="')) {
      if (line.startsWith('metrics_proxy_routes_overflow_total ')) overflow = Number(line.split(' ')[1]);
      continue;
    }
    const route = /http_route="([^"]*)"/.exec(line)?.[1];
    if (route !== undefined && route !== 'other') routes.add(route);
    const name = line.slice(0, line.indexOf('{'));
    const family = name.replace(/_(bucket|sum|count)$/, '');
    if (!histograms.has(family)) continue;
    const entry = counts.get(family) ?? { labelSets: 0, classic: 0 };
    entry.classic += 1;
    if (name.endsWith('_count')) entry.labelSets += 1;
    counts.set(family, entry);
  }
  return { series: [...counts].map(([family, c]) => ({ family, ...c })), routes: routes.size, overflow };
}

/** Lets the processes settle a moment (sockets closing, timers), then reads every proxy's memory after a full GC. */
async function readAll(targets: Readonly<Record<BudgetProxy, BudgetTarget>>): Promise<Record<BudgetProxy, MemoryReading>> {
  await sleep(1_000);
  return { main: await targets.main.probe(), nativeOnly: await targets.nativeOnly.probe(), control: await targets.control.probe() };
}

export interface BudgetOptions {
  readonly routes: number;
  readonly requests: readonly FillRequest[];
  /** Timed scrapes per format (after two warm-up rounds). */
  readonly scrapes: number;
  /** Progress lines. */
  readonly log: (line: string) => void;
}

export async function scrapeBudget(targets: Readonly<Record<BudgetProxy, BudgetTarget>>, options: BudgetOptions): Promise<BudgetResult> {
  const start = await readAll(targets);
  const t0 = performance.now();
  const unexpected = await fill(BUDGET_PROXIES.map((p) => targets[p].url), options.requests);
  const fillS = (performance.now() - t0) / 1000;
  options.log(`  scrape     full budget: ${options.requests.length} requests to each of 3 proxies in ${fillS.toFixed(0)} s, ${unexpected} unexpected`);
  const filled = await readAll(targets);
  const collected = await scrapeRounds(targets, options.scrapes, 2);
  const scraped = await readAll(targets);
  const text = collected.text.last?.body.toString('utf8') ?? '';
  const { series, routes, overflow } = countSeries(text);
  const timings = Object.fromEntries(VARIANT_IDS.map((id) => [id, timing(collected[id])])) as Record<VariantId, VariantTiming>;
  const memory = Object.fromEntries(BUDGET_PROXIES.map((p) => [p, { start: start[p], filled: filled[p], scraped: scraped[p] }])) as Record<BudgetProxy, BudgetMemory>;
  return { routes: options.routes, requests: options.requests.length, unexpected, fillS, routesSeen: routes, overflow, series, timings, memory };
}
