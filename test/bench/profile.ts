/**
 * `npm run bench -- --profile`: where the remaining microseconds go. Each Node target (default:
 * metrics-proxy) runs pinned on the proxy core with `node --cpu-prof`, under the load of each
 * scenario of --scenarios (default: get-50, the small-GET load of wrk with 50 connections; the
 * HTTP/2 ones, h2-get and grpc-unary, with h2load), warmed up first; then it is stopped with
 * SIGTERM so that Node writes the profile, and the samples of the measured window are broken
 * down by layer, by file/package and by function, in µs per request.
 */
import { copyFile, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { type Breakdown, type CpuProfile, type Entry, breakdown } from './cpuprofile.js';
import { type RunState, log, scenarioUpstream } from './cells.js';
import { registerTempDir } from './processes.js';
import type { LoadScenario } from './scenarios.js';
import { runnableScenarios } from './setup.js';
import { ROOT, TARGET_LABELS, type TargetId, startTarget } from './targets.js';

const TOP_FILES = 15;
const TOP_FUNCTIONS = 25;

export interface ProfileRun {
  readonly target: TargetId;
  readonly scenario: LoadScenario;
  readonly requests: number;
  readonly rate: number;
  /** From /proc/PID/stat over the same window (not sampled). */
  readonly cpuUsPerRequest: number | undefined;
  readonly file: string;
  readonly breakdown: Breakdown;
}

const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n);

async function profileOne(state: RunState, scenario: LoadScenario, target: TargetId, resultsDir: string, stamp: string): Promise<ProfileRun> {
  const { options } = state;
  const dir = await mkdtemp(join(tmpdir(), 'mp-bench-prof-'));
  const forget = registerTempDir(dir);
  try {
    const running = await startTarget(target, scenarioUpstream(state.upstreams, scenario, target), {
      nginx: state.nginx,
      caddy: state.caddy,
      wsUpstream: state.upstreams.node,
      prefix: state.pinning.prefix('proxy'),
      nodeOptions: ['--cpu-prof', `--cpu-prof-dir=${dir}`],
      ...(scenario.protocol === undefined ? {} : { protocol: scenario.protocol }),
      ...(options.mpArgs.length === 0 ? {} : { mpArgs: options.mpArgs }),
    });
    let window: { from: number; to: number; ops: number; rate: number; cpuS: number | undefined };
    try {
      const ctx = { rate: options.rate, wrk: state.wrk, h2load: state.h2load };
      if (scenario.probe !== undefined) await scenario.probe(running.url);
      await scenario.run(running.url, { ...ctx, durationS: options.warmUpS });
      const cpuBefore = running.cpuSeconds();
      const from = monotonicUs();
      const measured = await scenario.run(running.url, { ...ctx, durationS: options.durationS });
      const to = monotonicUs();
      const cpuAfter = running.cpuSeconds();
      window = { from, to, ops: measured.ops, rate: measured.rate, cpuS: cpuBefore === undefined || cpuAfter === undefined ? undefined : cpuAfter - cpuBefore };
    } finally {
      await running.stop(); // SIGTERM: the process exits and Node writes the profile
    }
    const written = (await readdir(dir)).find((f) => f.endsWith('.cpuprofile'));
    if (written === undefined) throw new Error(`${TARGET_LABELS[target]} wrote no .cpuprofile (killed before it could exit?)`);
    const file = join(resultsDir, `profile-${target}${scenario.id === 'get-50' ? '' : `-${scenario.id}`}-${stamp}.cpuprofile`);
    await copyFile(join(dir, written), file);
    const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
    return {
      target,
      scenario,
      requests: window.ops,
      rate: window.rate,
      cpuUsPerRequest: window.cpuS === undefined || window.ops === 0 ? undefined : (window.cpuS / window.ops) * 1e6,
      file,
      breakdown: breakdown(profile, ROOT, window.from, window.to),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
    forget();
  }
}

function entryTable(entries: readonly Entry[], requests: number, busyUs: number, withWhere: boolean): string {
  const header = withWhere ? '| function | where | self µs/req | % |\n|---|---|---:|---:|' : '| file or package | layer | self µs/req | % |\n|---|---|---:|---:|';
  const rows = entries.map((e) => `| ${e.name} | ${e.where} | ${(e.selfUs / requests).toFixed(2)} | ${((e.selfUs / busyUs) * 100).toFixed(1)} |`);
  return [header, ...rows].join('\n');
}

export function renderProfile(run: ProfileRun, durationS: number): string {
  const b = run.breakdown;
  const perReq = b.busyUs / run.requests;
  return [
    `### Where the microseconds go: ${TARGET_LABELS[run.target]}, ${run.scenario.id} (${run.scenario.generator}), ${durationS} s`,
    '',
    `${run.requests} requests (${run.rate.toFixed(0)} req/s, with the profiler on). Sampled CPU in the window: ${(b.busyUs / 1000).toFixed(0)} ms ` +
      `= **${perReq.toFixed(1)} µs per request**` +
      (run.cpuUsPerRequest === undefined ? '' : ` (/proc/PID/stat: ${run.cpuUsPerRequest.toFixed(1)} µs, which also counts the other threads — GC helpers, the profiler — ` +
          'and kernel work done while the main thread waits in epoll, sampled as idle)') +
      `; idle ${(b.idleUs / 1000).toFixed(0)} ms; ${b.samples} samples. Profile: ${run.file.slice(ROOT.length)} (open it in Chrome DevTools).`,
    '',
    `By layer: ${b.byLayer.map((e) => `${e.name} ${(e.selfUs / run.requests).toFixed(1)} µs (${((e.selfUs / b.busyUs) * 100).toFixed(0)} %)`).join(' · ')}`,
    '',
    entryTable(b.byFile.slice(0, TOP_FILES), run.requests, b.busyUs, false),
    '',
    entryTable(b.byFunction.slice(0, TOP_FUNCTIONS), run.requests, b.busyUs, true),
  ].join('\n');
}

/** Profiles every target of --targets in turn; returns the markdown. */
export async function profileTargets(state: RunState, resultsDir: string, stamp: string): Promise<{ text: string; runs: ProfileRun[] }> {
  const runs: ProfileRun[] = [];
  const parts: string[] = [];
  for (const scenario of runnableScenarios(state)) {
    for (const target of state.options.targets.filter((t) => scenario.targets.includes(t))) {
      log(`profiling ${TARGET_LABELS[target]} under ${scenario.id}: ${state.options.warmUpS} s warm-up, ${state.options.durationS} s measured`);
      const started = performance.now();
      const run = await profileOne(state, scenario, target, resultsDir, stamp);
      log(`  ${run.requests} requests, ${(run.breakdown.busyUs / run.requests).toFixed(1)} µs/req sampled (${((performance.now() - started) / 1000).toFixed(1)} s)`);
      runs.push(run);
      parts.push(renderProfile(run, state.options.durationS));
    }
  }
  return { text: parts.join('\n\n'), runs };
}
