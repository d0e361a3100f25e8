/**
 * `npm run bench`: metrics-proxy measured like a sidecar. The proxy under test runs alone on
 * one core (`taskset -c 1`); wrk, the upstreams and this process (the WebSocket and fixed-rate
 * clients) on the other (`taskset -c 0`). It is compared with the direct upstream, a Node server
 * answering by itself (the floor), bare http-proxy, Caddy with metrics and nginx, each when
 * installed, in interleaved rounds: for each round, for each scenario, every system in turn
 * (rotated each round), each on a fresh process that is started, warmed up, measured and
 * stopped. Then the /metrics scrape with the route budget full (the default budget, then
 * --max-routes 2000: scrape-budget.ts) and the resource checks (1 000
 * open connections, 1 GiB each way). `--profile` instead records where metrics-proxy's CPU
 * time goes. Not part of `npm test`. Method and targets: docs/performance.md.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { type RunState, loadCell, log, resourceChecks, scrapeCell } from './cells.js';
import type { LoadScenario } from './scenarios.js';
import { budgetCell } from './budget-cell.js';
import { evaluateTargets } from './checks.js';
import { type BenchOptions, USAGE, UsageError, parseBenchOptions } from './options.js';
import { killEverything } from './processes.js';
import { profileTargets } from './profile.js';
import { noise, waitForQuiet } from './quiet.js';
import { renderReport } from './report.js';
import { SetupError, type Tools, cellsPerRound, cpuModel, findTools, header, prepareRun, runnableScenarios, selectedScenarios } from './setup.js';
import { max, median } from './stats.js';
import { type ColdStart, type ScrapeSummary, type Summary, contention, summarise, summariseScrape } from './summary.js';
import { ROOT, type TargetId } from './targets.js';

const RESULTS = join(ROOT, 'bench-results');

/** Targets in the order of this round: rotated by one each round (A B C, B C A, …) so none always goes first. */
function rotated<T>(items: readonly T[], round: number): T[] {
  const k = round % Math.max(1, items.length);
  return [...items.slice(k), ...items.slice(0, k)];
}

/** Cells measured again because other processes competed (--retry-noisy), for the report. */
const retried: string[] = [];

/** One cell, measured again (after a quiet moment) while it came out noisy, up to --retry-noisy times. */
async function measureCell(state: RunState, round: number, scenario: LoadScenario, target: TargetId): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    await loadCell(state, round, scenario, target);
    const cell = state.cells.at(-1);
    const why = cell?.round === round && cell.scenario === scenario.id && cell.target === target ? noise(cell) : undefined;
    if (why === undefined || attempt > state.options.retryNoisy) return;
    state.cells.pop();
    retried.push(`round ${round + 1}, ${scenario.id}, ${target}: ${why}`);
    const waited = await waitForQuiet(120);
    log(`  (${why}: measured again after ${waited.toFixed(0)} s, attempt ${attempt + 1} of ${state.options.retryNoisy + 1})`);
  }
}

async function runRounds(state: RunState): Promise<void> {
  const { options } = state;
  const scenarios = runnableScenarios(state);
  const skipped = selectedScenarios(options).filter((s) => !scenarios.includes(s));
  if (skipped.length > 0) log(`skipping ${skipped.map((s) => s.id).join(', ')}: h2load is not installed (apt-get install nghttp2-client)`);
  for (let round = 0; round < options.rounds; round++) {
    log(`round ${round + 1}/${options.rounds}`);
    for (const scenario of scenarios) {
      for (const target of rotated(options.targets, round)) {
        if (!scenario.targets.includes(target) || state.unavailable.has(target)) continue;
        await measureCell(state, round, scenario, target);
      }
    }
  }
  // The scrape depends on metrics-proxy alone and its cell takes seconds: once per run.
  if (options.scenarios.includes('scrape') && options.targets.includes('mp')) {
    await scrapeCell(state, 0, 'mp');
    await budgetCell(state);
  }
}

async function bench(state: RunState, tools: Tools, startedAt: Date): Promise<void> {
  const { options } = state;
  const started = performance.now();
  const perRound = cellsPerRound(state);
  const estimateMin = (options.rounds * perRound * (options.warmUpS + options.durationS + 0.5)) / 60;
  log(
    `metrics-proxy bench: ${options.rounds} round(s) of ${perRound} cells (${options.warmUpS} s warm-up + ${options.durationS} s each, ` +
      `about ${estimateMin.toFixed(0)} min plus the scrape and resources), HTTP upstream ${state.upstreams.httpKind}; ` +
      `pinning ${tools.pinning.enabled ? `on (proxy core ${tools.pinning.proxyCore}, load core ${tools.pinning.loadCore})` : `off: ${tools.pinning.reason ?? ''}`}; ` +
      'progress here, the report on stdout at the end',
  );
  await runRounds(state);
  const resources = options.resources ? (log('resources'), await resourceChecks(state)) : [];

  const scenarios = runnableScenarios(state);
  const summaries = scenarios.flatMap((s) => options.targets.map((t) => summarise(state.cells, s.id, t))).filter((s): s is Summary => s !== undefined);
  const scrapes = [summariseScrape(state.cells, 'mp', 'light'), summariseScrape(state.cells, 'mp', 'full')].filter((s): s is ScrapeSummary => s !== undefined);
  const coldStarts: ColdStart[] = [...state.coldStarts].map(([target, list]) => ({ target, medianMs: median(list), maxMs: max(list), samples: list.length }));
  const budget = state.cells.find((c) => c.scenario === 'scrape-budget');
  const input = { cells: state.cells, summaries, scrapes, budget: budget?.budget, resources, coldStarts, rate: options.rate, streamBytes: options.streamBytes, idleConnections: options.idleConnections };
  // A comparison whose scenario was not selected is left out rather than printed n/a.
  const checks = evaluateTargets(input).filter((c) => c.scenario === undefined || options.scenarios.includes(c.scenario));
  const noisy = contention(state.cells);
  const report = renderReport({
    targets: options.targets,
    scenarios: scenarios.map((s) => s.id),
    unavailable: state.unavailable,
    cells: state.cells,
    summaries,
    scrapes,
    budget,
    resources,
    coldStarts,
    checks,
    contention: noisy,
    rate: options.rate,
  });
  const elapsedS = (performance.now() - started) / 1000;
  const file = join(RESULTS, `bench-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  const json = {
    kind: 'metrics-proxy bench',
    startedAt: startedAt.toISOString(),
    elapsedS,
    machine: { cpus: cpuModel(), cores: cpus().length, kernel: release(), node: process.version },
    pinning: { enabled: tools.pinning.enabled, proxyCore: tools.pinning.proxyCore, loadCore: tools.pinning.loadCore, reason: tools.pinning.reason ?? null },
    loadGenerator: tools.wrk.version,
    h2LoadGenerator: tools.h2load?.version ?? null,
    upstream: { http: state.upstreams.httpKind, nginx: tools.nginx?.version ?? null },
    caddy: tools.caddy?.version ?? null,
    options,
    unavailable: Object.fromEntries(state.unavailable),
    summaries,
    scrapes,
    resources,
    coldStarts,
    contention: noisy ?? null,
    retried,
    targets: checks,
    cells: state.cells,
  };
  await writeFile(file, `${JSON.stringify(json, null, 2)}\n`);
  const retries = retried.length === 0 ? '' : `\n\n${retried.length} cell(s) measured again because other processes competed (--retry-noisy): ${retried.join('; ')}.`;
  console.log(`${header(state, tools, startedAt)}\n\n${report}${retries}\n\nRun time ${(elapsedS / 60).toFixed(1)} min. JSON: ${file.slice(ROOT.length)}`);
}

async function run(options: BenchOptions): Promise<number> {
  const startedAt = new Date();
  const tools = findTools(options);
  await mkdir(RESULTS, { recursive: true });
  const state = await prepareRun(options, tools);
  try {
    if (options.profile) {
      const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
      const { text } = await profileTargets(state, RESULTS, stamp);
      console.log(`${header(state, tools, startedAt)}\n\n${text}`);
    } else {
      await bench(state, tools, startedAt);
    }
    return 0;
  } finally {
    for (const upstream of state.upstreams.processes) await upstream.stop();
  }
}

async function main(): Promise<number> {
  let options: BenchOptions | 'help';
  try {
    options = parseBenchOptions(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    log(`metrics-proxy bench: ${err.message}\n\n${USAGE}`);
    return 2;
  }
  if (options === 'help') {
    console.log(USAGE);
    return 0;
  }
  const stop = (signal: NodeJS.Signals): void => {
    log(`\n${signal}: stopping every process the bench started`);
    killEverything();
    process.exit(130);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  process.once('exit', killEverything);
  try {
    return await run(options);
  } catch (err) {
    if (!(err instanceof SetupError || err instanceof UsageError)) throw err;
    log(`metrics-proxy bench: ${err.message}`);
    return 2;
  } finally {
    killEverything();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    killEverything();
    log(`metrics-proxy bench failed: ${(err as Error).stack ?? String(err)}`);
    process.exitCode = 1;
  },
);
