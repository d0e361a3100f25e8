/**
 * `npm run bench`: metrics-proxy side by side with the upstream alone (direct), a bare
 * http-proxy with the same agent (the floor), itself with --workers 2, and nginx (when
 * installed), in one interleaved run: for each round, for each scenario, every target in turn
 * (rotated each round), each on a fresh process that is started, warmed up, measured and
 * stopped. Figures are medians over rounds. Then the /metrics scrape with the route budget
 * full, and once per target the resource checks (1 000 open connections, 1 GiB each way).
 * Not part of `npm test`. Options: options.ts; layout of the output: report.ts.
 *
 * Load generator: autocannon 8 (npm) through its programmatic API rather than wrk (Debian):
 * it is already a devDependency, so the bench needs no OS package, and its per-response
 * event gives every latency with sub-millisecond precision in-process. Its limit: it is
 * single-threaded JavaScript, so `direct` against a fast upstream measures autocannon as much
 * as the upstream. Fixed-rate and WebSocket clients: load.ts. Everything shares the cores.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { METRICS_TARGETS, type RunState, type Upstreams, loadCell, log, resourceChecks, scrapeCell } from './cells.js';
import { type NginxBinary, findNginx, startNginx, upstreamConfig } from './nginx.js';
import { type BenchOptions, USAGE, UsageError, parseBenchOptions } from './options.js';
import { killEverything, spawnProcess } from './processes.js';
import { renderReport } from './report.js';
import { LOAD_SCENARIOS } from './scenarios.js';
import { max, median } from './stats.js';
import { type ColdStart, type ScrapeSummary, type Summary, evaluateTargets, summarise, summariseScrape } from './summary.js';
import { ROOT } from './targets.js';

async function startUpstreams(options: BenchOptions, nginx: NginxBinary | undefined): Promise<Upstreams> {
  const node = await spawnProcess(process.execPath, [join(ROOT, 'test', 'bench', 'upstream.mjs')], { cwd: ROOT, listeningLines: 1 });
  const nodeUrl = new URL(`http://127.0.0.1:${node.port}`);
  const wantNginx = options.upstream === 'nginx' || (options.upstream === 'auto' && nginx !== undefined);
  if (!wantNginx) return { http: nodeUrl, node: nodeUrl, httpKind: 'node', processes: [node] };
  if (nginx === undefined) throw new UsageError('--upstream nginx: nginx is not installed');
  const upstream = await startNginx(nginx, upstreamConfig, { '16k.bin': Buffer.alloc(16 * 1024, 0x61) });
  return { http: new URL(upstream.url), node: nodeUrl, httpKind: 'nginx', processes: [node, upstream] };
}

/** Targets in the order of this round: rotated by one each round so none always goes first. */
function rotated<T>(items: readonly T[], round: number): T[] {
  const k = round % Math.max(1, items.length);
  return [...items.slice(k), ...items.slice(0, k)];
}

function cpuModel(): string {
  const all = cpus();
  return `${all.length} × ${all[0]?.model.trim() ?? 'unknown CPU'}`;
}

function packageVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '?';
  }
}

async function bench(options: BenchOptions): Promise<number> {
  if (!existsSync(join(ROOT, 'dist', 'cli.js'))) {
    log('metrics-proxy bench: dist/ is missing; run `npm run build` first');
    return 2;
  }
  const startedAt = new Date();
  const started = performance.now();
  const nginx = options.nginx ? findNginx() : undefined;
  const upstreams = await startUpstreams(options, nginx);
  const state: RunState = { options, upstreams, nginx, unavailable: new Map(), cells: [], coldStarts: new Map() };
  if (nginx === undefined && options.targets.includes('nginx')) {
    state.unavailable.set('nginx', options.nginx ? 'nginx is not installed (apt-get install nginx)' : 'left out (--no-nginx)');
  }
  const scenarios = LOAD_SCENARIOS.filter((s) => options.scenarios.includes(s.id));
  const scrapeTargets = options.targets.filter((t) => METRICS_TARGETS.includes(t));
  const header = [
    `# metrics-proxy bench, ${startedAt.toISOString()}`,
    '',
    `- machine: ${cpuModel()}, Linux ${release()}, node ${process.version}`,
    `- load generator: autocannon ${packageVersion('autocannon')} (npm, programmatic, in the bench process) for the saturation scenarios; ` +
      'an open-loop node:http client for the fixed rate; `ws` clients for WebSocket',
    `- upstream: ${upstreams.httpKind === 'nginx' ? `nginx (${nginx?.version ?? ''}) for the HTTP scenarios, ` : ''}a Node process (test/bench/upstream.mjs) for ${upstreams.httpKind === 'nginx' ? 'WebSocket, the scrape fill and streaming' : 'everything'}`,
    `- nginx as a proxy: ${nginx === undefined ? `${options.nginx ? 'not installed' : 'left out (--no-nginx)'}, column n/a` : `${nginx.version}, 1 worker, upstream keep-alive 256`}`,
    `- ${options.rounds} interleaved round(s); each cell: a fresh target process, ${options.warmUpS} s warm-up, ${options.durationS} s measured; figures are medians over rounds, peak RSS the highest`,
    `- **the load generator, the upstream and the proxy share these ${cpus().length} cores (nothing pinned)**: absolute figures are what this box gives with all three on it; read the ratios`,
  ].join('\n');
  const cellsPerRound = scenarios.length * options.targets.length + (options.scenarios.includes('scrape') ? scrapeTargets.length : 0);
  log(
    `metrics-proxy bench: ${options.rounds} round(s) of up to ${cellsPerRound} cells (${options.warmUpS} s warm-up + ${options.durationS} s each), ` +
      `HTTP upstream ${upstreams.httpKind}; progress here, the report on stdout at the end`,
  );

  for (let round = 0; round < options.rounds; round++) {
    log(`round ${round + 1}/${options.rounds}`);
    for (const scenario of scenarios) {
      for (const target of rotated(options.targets, round)) {
        if (state.unavailable.has(target)) continue;
        await loadCell(state, round, scenario, target);
      }
    }
    if (options.scenarios.includes('scrape')) {
      for (const target of rotated(scrapeTargets, round)) {
        if (state.unavailable.has(target)) continue;
        await scrapeCell(state, round, target);
      }
    }
  }
  const resources = options.resources ? (log('resources'), await resourceChecks(state)) : [];
  for (const upstream of upstreams.processes) await upstream.stop();

  const summaries: Summary[] = [];
  for (const scenario of scenarios) {
    for (const target of options.targets) {
      const s = summarise(state.cells, scenario.id, target);
      if (s !== undefined) summaries.push(s);
    }
  }
  const scrapes = scrapeTargets
    .flatMap((t) => [summariseScrape(state.cells, t, 'light'), summariseScrape(state.cells, t, 'full')])
    .filter((s): s is ScrapeSummary => s !== undefined);
  const coldStarts: ColdStart[] = [...state.coldStarts].map(([target, list]) => ({ target, medianMs: median(list), maxMs: max(list), samples: list.length }));
  const checks = evaluateTargets({
    summaries,
    scrapes,
    resources,
    coldStarts,
    rate: options.rate,
    streamBytes: options.streamBytes,
    idleConnections: options.idleConnections,
  });
  const report = renderReport({
    targets: options.targets,
    scenarios: scenarios.map((s) => s.id),
    unavailable: state.unavailable,
    summaries,
    scrapes,
    resources,
    coldStarts,
    checks,
    rate: options.rate,
  });
  const elapsedS = (performance.now() - started) / 1000;

  const dir = join(ROOT, 'bench-results');
  await mkdir(dir, { recursive: true });
  const file = join(dir, `bench-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  await writeFile(
    file,
    `${JSON.stringify(
      {
        kind: 'metrics-proxy bench',
        startedAt: startedAt.toISOString(),
        elapsedS,
        machine: { cpus: cpuModel(), cores: cpus().length, kernel: release(), node: process.version },
        loadGenerator: `autocannon ${packageVersion('autocannon')}`,
        upstream: { http: upstreams.httpKind, nginx: nginx?.version ?? null },
        options,
        unavailable: Object.fromEntries(state.unavailable),
        summaries,
        scrapes,
        resources,
        coldStarts,
        targets: checks,
        cells: state.cells,
      },
      null,
      2,
    )}\n`,
  );
  console.log(`${header}\n\n${report}\n\nRun time ${(elapsedS / 60).toFixed(1)} min. JSON: ${file.slice(ROOT.length)}`);
  return 0;
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
    return await bench(options);
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
