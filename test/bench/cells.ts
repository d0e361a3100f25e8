/**
 * One measurement ("cell"): a fresh target process, started, warmed up, measured, stopped;
 * its cold start, CPU time and peak RSS recorded with the result. Also the scrape cell and the
 * one-off resource checks, which follow the same start-measure-stop pattern.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { NginxBinary } from './nginx.js';
import type { BenchOptions } from './options.js';
import type { Spawned } from './processes.js';
import { idleConnections, streamBothWays } from './resources.js';
import type { LoadScenario } from './scenarios.js';
import { SCRAPE_ROUTES, scrapeScenario } from './scrape.js';
import type { CellRecord, ResourceResult } from './summary.js';
import { type RunningTarget, TARGET_LABELS, type TargetId, Unavailable, startTarget } from './targets.js';

// A full GC in the bench process before each measurement, so that the load generator does not
// collect the previous cell's garbage in the middle of this one.
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

const SCRAPES_TIMED = 20;
/** The targets that serve /metrics, i.e. where the scrape cell applies. */
export const METRICS_TARGETS: readonly TargetId[] = ['mp', 'mp-w2', 'mp-nometrics'];

export interface Upstreams {
  /** Where the HTTP scenarios go: nginx or the Node upstream. */
  readonly http: URL;
  /** The Node upstream: WebSocket echo, the route-budget fill, streaming. */
  readonly node: URL;
  readonly httpKind: 'nginx' | 'node';
  readonly processes: Spawned[];
}

export function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

export interface RunState {
  readonly options: BenchOptions;
  readonly upstreams: Upstreams;
  readonly nginx: NginxBinary | undefined;
  readonly unavailable: Map<TargetId, string>;
  readonly cells: CellRecord[];
  readonly coldStarts: Map<TargetId, number[]>;
}

async function withTarget<T>(
  state: RunState,
  target: TargetId,
  upstream: URL,
  body: (running: RunningTarget) => Promise<T>,
): Promise<{ value?: T; error?: string; peakRssBytes?: number; coldStartMs?: number } | 'unavailable'> {
  let running: RunningTarget;
  try {
    running = await startTarget(target, upstream, { nginx: state.nginx, wsUpstream: state.upstreams.node });
  } catch (err) {
    if (err instanceof Unavailable) {
      state.unavailable.set(target, err.message);
      log(`  ${TARGET_LABELS[target]}: n/a (${err.message})`);
      return 'unavailable';
    }
    return { error: `start failed: ${(err as Error).message}` };
  }
  if (running.coldStartMs !== undefined) {
    const list = state.coldStarts.get(target) ?? [];
    list.push(running.coldStartMs);
    state.coldStarts.set(target, list);
  }
  try {
    const value = await body(running);
    const peak = running.memory()?.hwmBytes;
    if (!running.alive()) return { error: 'the target process died during the measurement', coldStartMs: running.coldStartMs };
    return { value, ...(peak === undefined ? {} : { peakRssBytes: peak }), ...(running.coldStartMs === undefined ? {} : { coldStartMs: running.coldStartMs }) };
  } catch (err) {
    return { error: (err as Error).message, ...(running.coldStartMs === undefined ? {} : { coldStartMs: running.coldStartMs }) };
  } finally {
    await running.stop();
  }
}

export async function loadCell(state: RunState, round: number, scenario: LoadScenario, target: TargetId): Promise<void> {
  const { options, upstreams } = state;
  const upstream = scenario.upstream === 'node' ? upstreams.node : upstreams.http;
  const outcome = await withTarget(state, target, upstream, async (running) => {
    await scenario.run(running.url, { durationS: options.warmUpS, rate: options.rate });
    collectGarbage();
    const cpuBefore = running.cpuSeconds();
    const measured = await scenario.run(running.url, { durationS: options.durationS, rate: options.rate });
    const cpuAfter = running.cpuSeconds();
    const cpuUsPerOp = cpuBefore === undefined || cpuAfter === undefined || measured.ops === 0 ? undefined : ((cpuAfter - cpuBefore) / measured.ops) * 1e6;
    return { ...measured, ...(cpuUsPerOp === undefined ? {} : { cpuUsPerOp }) };
  });
  if (outcome === 'unavailable') return;
  const { value, error, ...rest } = outcome;
  state.cells.push({ round, scenario: scenario.id, target, ...rest, ...(value === undefined ? {} : { measured: value }), ...(error === undefined ? {} : { error }) });
  const m = value;
  log(
    `  ${scenario.id.padEnd(10)} ${TARGET_LABELS[target].padEnd(28)} ` +
      (m === undefined
        ? `FAILED: ${error ?? '?'}`
        : `${m.rate.toFixed(0).padStart(7)} ${scenario.unit}  p50 ${m.p50Ms.toFixed(2)}  p99 ${m.p99Ms.toFixed(2)}  p99.9 ${m.p999Ms.toFixed(2)} ms` +
          `${m.cpuUsPerOp === undefined ? '' : `  cpu ${m.cpuUsPerOp.toFixed(0)} µs/op`}` +
          `${m.errors > 0 ? `  errors ${m.errors}` : ''}`),
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

export async function resourceChecks(state: RunState): Promise<ResourceResult[]> {
  const results: ResourceResult[] = [];
  const targets = state.options.targets.filter((t) => t !== 'direct' && t !== 'mp-w2' && !state.unavailable.has(t));
  for (const target of targets) {
    const idle = await withTarget(state, target, state.upstreams.node, (running) =>
      idleConnections(running.url, state.options.idleConnections, running.memory),
    );
    const stream = await withTarget(state, target, state.upstreams.node, (running) =>
      streamBothWays(running.url, state.options.streamBytes, running.memory),
    );
    if (idle === 'unavailable' || stream === 'unavailable') continue;
    const result: ResourceResult = {
      target,
      ...(idle.value === undefined ? { idleError: idle.error ?? '?' } : { idle: idle.value }),
      ...(stream.value === undefined ? { streamError: stream.error ?? '?' } : { stream: stream.value }),
    };
    results.push(result);
    const i = result.idle;
    const s = result.stream;
    log(
      `  resources  ${TARGET_LABELS[target].padEnd(28)} ` +
        (i === undefined ? `idle FAILED: ${result.idleError ?? ''}` : `${i.connections} conns: RSS ${(i.rssBytes / 2 ** 20).toFixed(1)} MiB (peak ${(i.hwmBytes / 2 ** 20).toFixed(1)})`) +
        '; ' +
        (s === undefined
          ? `stream FAILED: ${result.streamError ?? ''}`
          : `stream: ${(s.baselineRssBytes / 2 ** 20).toFixed(1)} → peak ${(s.hwmBytes / 2 ** 20).toFixed(1)} MiB, ` +
            `${s.uploadMiBps.toFixed(0)} MiB/s up, ${s.downloadMiBps.toFixed(0)} MiB/s down`),
    );
  }
  return results;
}
