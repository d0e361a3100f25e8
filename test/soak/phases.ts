/**
 * The run's two phases of traffic and the quiet samples between them. During
 * traffic the proxy's /metrics is scraped every 5 s, counted back from the
 * phase's end: prom-client resets its event-loop histogram on every scrape,
 * so each scrape reports the p99 of the window since the previous one, and the
 * last windows of each phase are the ones compared.
 */
import { Agent } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { EVENT_LOOP_P99, type ResourceSample, requireSample, sampleResources, scrape } from './probe.js';
import type { ProxyProcess } from './proxy-process.js';
import type { SoakOptions } from './options.js';
import { type TrafficContext, httpTotals, runTraffic } from './traffic.js';
import type { SoakUpstream } from './upstream.js';

export const LAG_WINDOW_MS = 5_000;
/** Windows at the end of a phase whose p99s are compared (their median). */
export const LAG_WINDOWS_COMPARED = 3;
const PROGRESS_EVERY_MS = 30_000;

export type Phase = 'warm-up' | 'main';

export interface LagWindow {
  readonly phase: Phase;
  readonly endedAtMs: number;
  readonly lengthMs: number;
  readonly p99Ms: number;
}

export interface Run {
  readonly options: SoakOptions;
  readonly upstream: SoakUpstream;
  readonly proxy: ProxyProcess;
  readonly ctx: TrafficContext;
  /** Aborted on SIGINT/SIGTERM. */
  readonly signal: AbortSignal;
  readonly lagWindows: LagWindow[];
  readonly startedAt: number;
  readonly totalMs: number;
}

export function newAgent(concurrency: number): Agent {
  // Idle sockets closed after 2 s, well before the proxy's keep-alive timeout: no reuse-vs-close races.
  return new Agent({ keepAlive: true, maxSockets: concurrency, timeout: 2_000 });
}

/** Traffic for `durationMs`; resolves with the time it really took (the last operations finish after the deadline). */
export async function runPhase(run: Run, phase: Phase, durationMs: number): Promise<number> {
  const { options, proxy, ctx, lagWindows } = run;
  const start = Date.now();
  const deadline = start + durationMs;
  // Stops the workers early if watching the proxy fails (it died, say), so the error surfaces at once.
  const failed = new AbortController();
  const signal = AbortSignal.any([run.signal, failed.signal]);
  const traffic = runTraffic(ctx, options.concurrency, deadline, signal);
  try {
    let previous = Date.now();
    await scrape(proxy.url); // resets the histogram: the window before this was not under this phase's load
    let lastProgress = previous;
    for (let at = deadline - Math.floor((durationMs - 1) / LAG_WINDOW_MS) * LAG_WINDOW_MS; at <= deadline; at += LAG_WINDOW_MS) {
      await sleep(Math.max(0, at - Date.now()), undefined, { signal }).catch(() => {});
      if (signal.aborted) break;
      const now = Date.now();
      const p99Ms = requireSample(await scrape(proxy.url), EVENT_LOOP_P99) * 1000;
      lagWindows.push({ phase, endedAtMs: now - run.startedAt, lengthMs: now - previous, p99Ms });
      previous = now;
      if (now - lastProgress >= PROGRESS_EVERY_MS || at + LAG_WINDOW_MS > deadline) {
        lastProgress = now;
        printProgress(run, phase, p99Ms);
      }
    }
  } catch (err) {
    failed.abort();
    await traffic;
    throw proxy.isRunning() ? err : new Error(`the proxy exited during the ${phase} phase; stderr: ${proxy.stderr().trim()}`);
  }
  await traffic;
  if (!proxy.isRunning()) throw new Error(`the proxy exited during the ${phase} phase; stderr: ${proxy.stderr().trim()}`);
  return Date.now() - start;
}

function clock(ms: number): string {
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

function printProgress(run: Run, phase: Phase, p99Ms: number): void {
  const { tallies } = run.ctx;
  const http = httpTotals(tallies);
  console.log(
    `[${clock(Date.now() - run.startedAt)}/${clock(run.totalMs)} ${phase}] ${tallies.ops} ops (${http.sent} http, ${tallies.ws.attempted} ws), ` +
      `${http.status5xx} 5xx, ${http.aborted} aborted, ${tallies.unexpected.count} unexpected; event-loop p99 ${p99Ms.toFixed(1)} ms`,
  );
}

/** Stop-state sample: our connections closed, the upstream's idle ones too, the proxy's fds settled, a full GC. */
export async function quietSample(run: Run): Promise<ResourceSample> {
  run.ctx.agent.destroy();
  run.upstream.closeIdleConnections();
  const sample = await sampleResources(run.proxy.pid, run.proxy.url, run.proxy.inspectorUrl());
  run.ctx.agent = newAgent(run.options.concurrency);
  return sample;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** The median p99 of the phase's last windows, all under load. */
export function phaseLag(windows: readonly LagWindow[], phase: Phase): number {
  const last = windows.filter((w) => w.phase === phase).slice(-LAG_WINDOWS_COMPARED);
  return last.length === 0 ? NaN : median(last.map((w) => w.p99Ms));
}
