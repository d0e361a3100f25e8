/**
 * One measurement ("cell"): a fresh target process, started, warmed up, measured, verified,
 * stopped; its cold start, CPU time, the two cores' use and peak RSS recorded with the result.
 * Also the scrape cell and the one-off resource checks, which follow the same pattern.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { CaddyBinary } from './caddy.js';
import type { H2loadRunner } from './h2load.js';
import type { NginxBinary } from './nginx.js';
import type { BenchOptions } from './options.js';
import type { Pinning } from './pinning.js';
import type { Spawned } from './processes.js';
import { idleConnections, streamBothWays } from './resources.js';
import type { LoadScenario } from './scenarios.js';
import { SCRAPE_ROUTES, scrapeScenario } from './scrape.js';
import type { CellRecord, ResourceResult } from './summary.js';
import { type Protocol, type RunningTarget, TARGET_LABELS, type TargetId, Unavailable, startTarget } from './targets.js';
import { startWatch } from './usage.js';
import type { WrkRunner } from './wrk.js';

// A full GC in the bench process before each measurement, so that the clients it runs do not
// collect the previous cell's garbage in the middle of this one.
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

const SCRAPES_TIMED = 20;

export interface Upstreams {
  /** Where the HTTP scenarios go: nginx or the Node upstream. */
  readonly http: URL;
  /** The Node upstream: WebSocket echo, the upload sink, the route-budget fill, streaming. */
  readonly node: URL;
  readonly httpKind: 'nginx' | 'node';
  /** The HTTP/2 (h2c) Node upstream, h2-upstream.mjs; started only when an HTTP/2 scenario runs. */
  readonly h2: URL | undefined;
  readonly processes: Spawned[];
}

export function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

export interface RunState {
  readonly options: BenchOptions;
  readonly upstreams: Upstreams;
  readonly nginx: NginxBinary | undefined;
  readonly caddy: CaddyBinary | undefined;
  readonly pinning: Pinning;
  readonly wrk: WrkRunner;
  /** Undefined when h2load is not installed. */
  readonly h2load: H2loadRunner | undefined;
  readonly unavailable: Map<TargetId, string>;
  readonly cells: CellRecord[];
  readonly coldStarts: Map<TargetId, number[]>;
}

interface Outcome<T> {
  value?: T;
  error?: string;
  peakRssBytes?: number;
  coldStartMs?: number;
}

async function withTarget<T>(
  state: RunState,
  target: TargetId,
  upstream: URL,
  body: (running: RunningTarget) => Promise<T>,
  load?: { readonly protocol: Protocol | undefined; readonly mpArgs: readonly string[] },
): Promise<Outcome<T> | 'unavailable'> {
  let running: RunningTarget;
  try {
    running = await startTarget(target, upstream, {
      nginx: state.nginx,
      caddy: state.caddy,
      wsUpstream: state.upstreams.node,
      prefix: state.pinning.prefix('proxy'),
      ...(load?.protocol === undefined ? {} : { protocol: load.protocol }),
      ...(load === undefined || load.mpArgs.length === 0 ? {} : { mpArgs: load.mpArgs }),
    });
  } catch (err) {
    if (err instanceof Unavailable) {
      state.unavailable.set(target, err.message);
      log(`  ${TARGET_LABELS[target]}: n/a (${err.message})`);
      return 'unavailable';
    }
    return { error: `start failed: ${(err as Error).message}` };
  }
  const cold = running.coldStartMs === undefined ? {} : { coldStartMs: running.coldStartMs };
  if (running.coldStartMs !== undefined) {
    const list = state.coldStarts.get(target) ?? [];
    list.push(running.coldStartMs);
    state.coldStarts.set(target, list);
  }
  try {
    const value = await body(running);
    const peak = running.memory()?.hwmBytes;
    if (!running.alive()) return { error: 'the target process died during the measurement', ...cold };
    const wrong = await running.verify();
    if (wrong !== undefined) return { error: wrong, ...cold };
    return { value, ...(peak === undefined ? {} : { peakRssBytes: peak }), ...cold };
  } catch (err) {
    return { error: (err as Error).message, ...cold };
  } finally {
    await running.stop();
  }
}

/** Where a scenario's load goes when `target` proxies it (or, for `direct`, answers it). */
export function scenarioUpstream(upstreams: Upstreams, scenario: LoadScenario, target: TargetId): URL {
  const kind = target === 'direct' ? (scenario.directUpstream ?? scenario.upstream) : scenario.upstream;
  if (kind === 'h2') {
    if (upstreams.h2 === undefined) throw new Error('the HTTP/2 upstream was not started');
    return upstreams.h2;
  }
  return kind === 'node' ? upstreams.node : upstreams.http;
}

export async function loadCell(state: RunState, round: number, scenario: LoadScenario, target: TargetId): Promise<void> {
  const { options } = state;
  const upstream = scenarioUpstream(state.upstreams, scenario, target);
  const ctx = { rate: options.rate, wrk: state.wrk, h2load: state.h2load };
  const outcome = await withTarget(state, target, upstream, async (running) => {
    if (scenario.probe !== undefined) await scenario.probe(running.url);
    await scenario.run(running.url, { ...ctx, durationS: options.warmUpS });
    collectGarbage();
    const watch = startWatch(state.pinning, running);
    const measured = await scenario.run(running.url, { ...ctx, durationS: options.durationS });
    return { ...measured, ...watch.stop(measured.ops) };
  }, { protocol: scenario.protocol, mpArgs: options.mpArgs });
  if (outcome === 'unavailable') return;
  const { value, error, ...rest } = outcome;
  state.cells.push({ round, scenario: scenario.id, target, ...rest, ...(value === undefined ? {} : { measured: value }), ...(error === undefined ? {} : { error }) });
  const m = value;
  const p = (label: string, v: number | undefined): string => (v === undefined ? '' : `  ${label} ${v.toFixed(0)} %`);
  log(
    `  ${scenario.id.padEnd(10)} ${TARGET_LABELS[target].padEnd(28)} ` +
      (m === undefined
        ? `FAILED: ${error ?? '?'}`
        : `${m.rate.toFixed(0).padStart(7)} ${scenario.unit}  p50 ${m.p50Ms.toFixed(2)}  p99 ${m.p99Ms.toFixed(2)} ms` +
          `${m.cpuUsPerOp === undefined ? '' : `  cpu ${m.cpuUsPerOp.toFixed(1)} µs/op`}` +
          `${m.faultsPerOp === undefined ? '' : `  faults ${m.faultsPerOp.toFixed(m.faultsPerOp < 10 ? 2 : 0)}/op`}` +
          p('target', m.targetCpuPct) +
          p('others on proxy core', m.proxyCoreOthersPct) +
          p('load core', m.loadCoreBusyPct) +
          `${m.errors > 0 ? `  errors ${m.errors}` : ''}` +
          `${m.othersTop === undefined ? '' : `\n${' '.repeat(13)}others: ${m.othersTop}`}`),
  );
}

export async function scrapeCell(state: RunState, round: number, target: TargetId): Promise<void> {
  const outcome = await withTarget(state, target, state.upstreams.node, (running) => scrapeScenario(running.url, SCRAPE_ROUTES, SCRAPES_TIMED));
  if (outcome === 'unavailable') return;
  const { value, error, ...rest } = outcome;
  state.cells.push({ round, scenario: 'scrape', target, ...rest, ...(value === undefined ? {} : { scrape: value }), ...(error === undefined ? {} : { error }) });
  log(
    `  scrape     ${TARGET_LABELS[target].padEnd(28)} ` +
      (value === undefined
        ? `FAILED: ${error ?? '?'}`
        : [value.light, value.full]
            .map(
              (l) =>
                `${l.routes} routes/${l.labelSets} sets: text ${l.text.medianMs.toFixed(1)} ms (${(l.text.decodedBytes / 1024).toFixed(0)} KiB), ` +
                `OM+gzip ${l.prometheus.medianMs.toFixed(1)} ms (${(l.prometheus.bytes / 1024).toFixed(0)} KiB)`,
            )
            .join('; ')),
  );
}

/** Idle connections: every proxy (and the Node floor, for Node's own share). Streaming: metrics-proxy and bare. */
const IDLE_TARGETS: readonly TargetId[] = ['node-floor', 'bare', 'mp', 'caddy', 'nginx', 'mp-nometrics'];
const STREAM_TARGETS: readonly TargetId[] = ['bare', 'mp'];

export async function resourceChecks(state: RunState): Promise<ResourceResult[]> {
  const results: ResourceResult[] = [];
  const targets = state.options.targets.filter((t) => IDLE_TARGETS.includes(t) && !state.unavailable.has(t));
  for (const target of targets) {
    const idle = await withTarget(state, target, state.upstreams.node, (running) => idleConnections(running.url, state.options.idleConnections, running.memory));
    const stream = STREAM_TARGETS.includes(target)
      ? await withTarget(state, target, state.upstreams.node, (running) => streamBothWays(running.url, state.options.streamBytes, running.memory))
      : undefined;
    if (idle === 'unavailable' || stream === 'unavailable') continue;
    const result: ResourceResult = {
      target,
      ...(idle.value === undefined ? { idleError: idle.error ?? '?' } : { idle: idle.value }),
      ...(stream === undefined ? {} : stream.value === undefined ? { streamError: stream.error ?? '?' } : { stream: stream.value }),
    };
    results.push(result);
    const i = result.idle;
    const s = result.stream;
    log(
      `  resources  ${TARGET_LABELS[target].padEnd(28)} ` +
        (i === undefined ? `idle FAILED: ${result.idleError ?? ''}` : `idle RSS ${(i.startRssBytes / 2 ** 20).toFixed(1)} MiB; ${i.connections} conns: RSS ${(i.rssBytes / 2 ** 20).toFixed(1)} MiB (peak ${(i.hwmBytes / 2 ** 20).toFixed(1)})`) +
        (stream === undefined
          ? ''
          : s === undefined
            ? `; stream FAILED: ${result.streamError ?? ''}`
            : `; stream: ${(s.baselineRssBytes / 2 ** 20).toFixed(1)} → peak ${(s.hwmBytes / 2 ** 20).toFixed(1)} MiB, ` +
              `${s.uploadMiBps.toFixed(0)} MiB/s up, ${s.downloadMiBps.toFixed(0)} MiB/s down`),
    );
  }
  return results;
}
