/**
 * Looking at the proxy from outside: RSS and open fds from /proc/<pid>, heap
 * and event-loop delay from its own /metrics (prom-client's default metrics).
 *
 * Heap: an idle proxy's heap-used swings by ~15 MiB between scavenges (every
 * /metrics scrape allocates ~0.4 MiB), and old-generation garbage lingers
 * until the next major GC, so the minimum of a few plain samples is noise
 * well beyond a 10 % limit. Instead a full GC is requested over the proxy's
 * inspector (HeapProfiler.collectGarbage) before each heap sample. Without an
 * inspector it falls back to the minimum of plain samples, and says so.
 */
import { request } from 'node:http';
import { readFile, readdir } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import { sampleValue, wsText } from '../helpers.js';

export const HEAP_USED = 'nodejs_heap_size_used_bytes';
/** prom-client 15: percentiles of perf_hooks.monitorEventLoopDelay since the previous scrape (it resets on collect). */
export const EVENT_LOOP_P99 = 'nodejs_eventloop_lag_p99_seconds';

export interface ProcSample {
  readonly rssBytes: number;
  readonly fds: number;
}

export async function readProc(pid: number): Promise<ProcSample> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const rss = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (rss === null) throw new Error(`no VmRSS in /proc/${pid}/status`);
  const fds = (await readdir(`/proc/${pid}/fd`)).length;
  return { rssBytes: Number(rss[1]) * 1024, fds };
}

/** GET `<proxy>/metrics` on a fresh connection that closes afterwards. */
export function scrape(proxyUrl: string, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(`${proxyUrl}/metrics`, { agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`/metrics answered ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`/metrics did not answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

export function requireSample(text: string, name: string, labels: Record<string, string> = {}): number {
  const value = sampleValue(text, name, labels);
  if (value === undefined) throw new Error(`/metrics has no ${name} ${JSON.stringify(labels)}`);
  return value;
}

export interface Settled {
  readonly fds: number;
  readonly waitedMs: number;
  /** False when the bound ran out while the count was still dropping. */
  readonly settled: boolean;
}

/** Waits until the proxy's fd count has not dropped for `quietMs` (connections closing), at most `maxMs`. */
export async function settleFds(pid: number, quietMs = 2_000, maxMs = 20_000): Promise<Settled> {
  const start = Date.now();
  let lowest = (await readProc(pid)).fds;
  let lastDrop = start;
  for (;;) {
    await sleep(200);
    const { fds } = await readProc(pid);
    const now = Date.now();
    if (fds < lowest) {
      lowest = fds;
      lastDrop = now;
    }
    if (now - lastDrop >= quietMs) return { fds, waitedMs: now - start, settled: true };
    if (now - start >= maxMs) return { fds, waitedMs: now - start, settled: false };
  }
}

/** Runs a full GC in the inspected process (Chrome DevTools Protocol over the inspector's WebSocket). */
export function collectGarbage(inspectorUrl: string, timeoutMs = 10_000): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const ws = new WebSocket(inspectorUrl);
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`the inspector did not collect garbage within ${timeoutMs} ms`));
    }, timeoutMs);
    const done = (err?: Error): void => {
      clearTimeout(timer);
      ws.close();
      if (err === undefined) resolve();
      else reject(err);
    };
    ws.on('open', () => ws.send(JSON.stringify({ id: 1, method: 'HeapProfiler.collectGarbage' })));
    ws.on('message', (data: WebSocket.RawData) => {
      const reply = JSON.parse(wsText(data)) as { id?: number; error?: { message?: string } };
      if (reply.id !== 1) return;
      done(reply.error === undefined ? undefined : new Error(`HeapProfiler.collectGarbage: ${reply.error.message ?? 'failed'}`));
    });
    ws.on('error', (err) => done(err));
  });
}

export interface ResourceSample {
  readonly rssBytes: number;
  readonly heapUsedBytes: number;
  /** True when each heap sample followed a full GC; false for the minimum of plain samples. */
  readonly heapAfterGc: boolean;
  readonly fds: number;
  readonly settle: Settled;
}

/**
 * For a quiet proxy: settle the fds and count them (before the inspector adds
 * a connection of its own), then the minimum RSS and heap over `samples`
 * readings, each after a full GC when `inspectorUrl` is given.
 */
export async function sampleResources(
  pid: number,
  proxyUrl: string,
  inspectorUrl: string | undefined,
  samples = 3,
  intervalMs = 500,
): Promise<ResourceSample> {
  const settle = await settleFds(pid);
  const heapAfterGc = inspectorUrl !== undefined;
  const count = heapAfterGc ? samples : 5;
  let rssBytes = Infinity;
  let heapUsedBytes = Infinity;
  for (let i = 0; i < count; i += 1) {
    if (i > 0) await sleep(intervalMs);
    if (inspectorUrl !== undefined) await collectGarbage(inspectorUrl);
    heapUsedBytes = Math.min(heapUsedBytes, requireSample(await scrape(proxyUrl), HEAP_USED));
    rssBytes = Math.min(rssBytes, (await readProc(pid)).rssBytes);
  }
  return { rssBytes, heapUsedBytes, heapAfterGc, fds: settle.fds, settle };
}
