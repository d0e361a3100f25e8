/**
 * Soak test of the built proxy: `npm run soak -- [--minutes N] [--concurrency C]`.
 *
 * Starts an upstream in-process, spawns the real bin against it, runs mixed
 * traffic (successes, upstream 500s, client aborts, WebSocket sessions) for N
 * minutes, and fails (exit 1) if the proxy's RSS, heap or open fds grew by
 * more than 10 % after warm-up, if its event-loop delay grew by more than
 * 10 % and 5 ms, if /metrics disagrees with the client's tallies, or if any
 * request went wrong in a way the client did not cause. Both resource samples
 * are taken in the same state: traffic stopped, client connections closed,
 * the fd count no longer dropping, a full GC just run (over the inspector the
 * proxy is started with). Event-loop delay is compared under load instead.
 * Results go to bench-results/soak-*.json.
 */
import { existsSync } from 'node:fs';
import { USAGE, UsageError, parseSoakOptions, type SoakOptions } from './options.js';
import { LAG_WINDOWS_COMPARED, LAG_WINDOW_MS, type Run, newAgent, phaseLag, quietSample, runPhase } from './phases.js';
import { scrape } from './probe.js';
import { type ProxyProcess, ROOT, distIsBuilt, spawnProxy } from './proxy-process.js';
import { countRows, countTable, resourceRows, resourceTable, trafficTable, writeSummary } from './report.js';
import { METHODS, createTallies, httpTotals } from './traffic.js';
import { type SoakUpstream, startSoakUpstream } from './upstream.js';

const WARM_UP_MAX_MS = 60_000;
const WARM_UP_SHARE = 0.2;

/** What has to be stopped on the way out, filled in as it starts. */
interface Started {
  proxy?: ProxyProcess;
  upstream?: SoakUpstream;
}

async function soak(options: SoakOptions, signal: AbortSignal, started: Started): Promise<number> {
  const startedAtDate = new Date();
  const totalMs = Math.round(options.minutes * 60_000);
  const warmUpMs = Math.round(Math.min(WARM_UP_MAX_MS, WARM_UP_SHARE * totalMs));
  const upstream = await startSoakUpstream();
  started.upstream = upstream;
  const proxy = await spawnProxy(upstream.url);
  started.proxy = proxy;
  console.log(
    `metrics-proxy soak: ${options.minutes} min (warm-up ${(warmUpMs / 1000).toFixed(1)} s), concurrency ${options.concurrency}, ` +
      `node ${process.version}\n  proxy pid ${proxy.pid} at ${proxy.url} → upstream ${upstream.url}`,
  );
  const tallies = createTallies();
  const run: Run = {
    options,
    upstream,
    proxy,
    ctx: { proxyUrl: proxy.url, upstream, tallies, agent: newAgent(options.concurrency) },
    signal,
    lagWindows: [],
    startedAt: Date.now(),
    totalMs,
  };

  const warmUpTrafficMs = await runPhase(run, 'warm-up', warmUpMs);
  const baseline = await quietSample(run);
  console.log(`  after warm-up: traffic stopped, fds settled in ${(baseline.settle.waitedMs / 1000).toFixed(1)} s; baseline sampled`);
  const mainTrafficMs = await runPhase(run, 'main', totalMs - warmUpMs);
  const end = await quietSample(run);
  console.log(`  end: traffic stopped, fds settled in ${(end.settle.waitedMs / 1000).toFixed(1)} s; final sample taken`);
  const finalMetrics = await scrape(proxy.url);
  if (signal.aborted) return 130;

  const trafficMs = warmUpTrafficMs + mainTrafficMs;
  const http = httpTotals(tallies);
  const lag = { baseline: phaseLag(run.lagWindows, 'warm-up'), end: phaseLag(run.lagWindows, 'main') };
  const resources = resourceRows({ ...baseline, lagP99Ms: lag.baseline }, { ...end, lagP99Ms: lag.end });
  const counts = countRows(finalMetrics, tallies);
  const selfCheck = METHODS.filter((m) => {
    const t = tallies.http[m];
    return t.sent !== t.completed + t.aborted + t.failed;
  });
  const upstreamMismatch = METHODS.filter((m) => (upstream.counts.requests[m] ?? 0) !== tallies.http[m].sent);

  console.log(
    `\nTraffic: ${tallies.ops} operations in ${(trafficMs / 1000).toFixed(1)} s = ${(tallies.ops / (trafficMs / 1000)).toFixed(0)} ops/s ` +
      `(HTTP ${(http.sent / (trafficMs / 1000)).toFixed(0)} req/s; ${tallies.ws.attempted} websocket sessions, ${tallies.ws.messages} echoes)`,
  );
  console.log(trafficTable(tallies, upstream.counts));
  console.log(
    `  aborts: ${tallies.abortedMidResponse} mid-response, ${tallies.abortedBeforeHeaders} before headers ` +
      `(upstream saw ${upstream.counts.cancelled} cancelled); 5xx: ${tallies.fail500} from /api/fail, ${tallies.unexpected5xx} other; ` +
      `websocket sessions closed by the upstream: ${tallies.ws.closedByUpstream}`,
  );
  console.log(`\nProxy resources (pid ${proxy.pid}):`);
  console.log(resourceTable(resources));
  console.log(`  event-loop p99: median of the last ${LAG_WINDOWS_COMPARED} ${LAG_WINDOW_MS / 1000} s windows of each phase, under load; max over the run ${Math.max(...run.lagWindows.map((w) => w.p99Ms)).toFixed(1)} ms`);
  console.log(
    baseline.heapAfterGc && end.heapAfterGc
      ? '  heap: minimum of 3 samples, each right after a full GC requested over the inspector'
      : '  heap: NO inspector, so no forced GC: minimum of 5 plain samples, which swing by ~15 MiB; treat the heap row as noise',
  );
  if (!baseline.settle.settled || !end.settle.settled) console.log('  note: the fd count was still dropping when the settle bound ran out');
  console.log('\nMetrics vs client tallies:');
  console.log(countTable(counts));
  console.log(`\nProxy log lines after "listening": ${proxy.logs.count} (${proxy.logs.warnOrAbove} at warn or above)`);
  for (const line of proxy.logs.first.slice(0, 5)) console.log(`  ${line.line}`);
  if (tallies.unexpected.count > 0) {
    console.log(`Unexpected client-side outcomes: ${tallies.unexpected.count}`);
    for (const what of tallies.unexpected.first.slice(0, 10)) console.log(`  ${what}`);
  }

  const failures = [
    ...resources.filter((r) => !r.ok).map((r) => `${r.metric} grew ${r.growthPercent.toFixed(1)} %`),
    ...counts.filter((c) => !c.ok).map((c) => `${c.check}: expected ${c.expected}, /metrics ${c.actual}`),
    ...(tallies.unexpected.count > 0 ? [`${tallies.unexpected.count} unexpected client-side outcomes`] : []),
    ...selfCheck.map((m) => `soak script bug: ${m} tallies do not add up`),
    ...upstreamMismatch.map((m) => `${m}: upstream saw ${upstream.counts.requests[m] ?? 0}, client sent ${tallies.http[m].sent}`),
  ];
  const summary = {
    startedAt: startedAtDate.toISOString(),
    finishedAt: new Date().toISOString(),
    options,
    node: process.version,
    proxy: { pid: proxy.pid, args: proxy.args, logLines: proxy.logs.count, logLinesWarnOrAbove: proxy.logs.warnOrAbove, firstLogLines: proxy.logs.first },
    durations: { totalMs, warmUpMs, warmUpTrafficMs, mainTrafficMs, trafficMs },
    throughput: { ops: tallies.ops, opsPerSecond: tallies.ops / (trafficMs / 1000), httpRequestsPerSecond: http.sent / (trafficMs / 1000) },
    tallies,
    upstreamCounts: upstream.counts,
    samples: { baseline, end, lag },
    lagWindows: run.lagWindows,
    resources,
    counts,
    failures,
    pass: failures.length === 0,
  };
  const file = await writeSummary(ROOT, startedAtDate, summary);
  console.log(`\nSummary: ${file}`);
  if (failures.length === 0) {
    console.log('PASS');
    return 0;
  }
  console.log(`FAIL:\n${failures.map((f) => `  - ${f}`).join('\n')}`);
  return 1;
}

async function main(argv: readonly string[]): Promise<number> {
  let options: SoakOptions;
  try {
    const parsed = parseSoakOptions(argv);
    if (parsed === 'help') {
      console.log(USAGE);
      return 0;
    }
    options = parsed;
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`soak: ${err.message}\n\n${USAGE}`);
    return 2;
  }
  if (!distIsBuilt()) {
    console.error('soak: dist/cli/main.js is missing: run `npm run build` first');
    return 1;
  }
  if (!existsSync('/proc/self/status')) {
    console.error('soak: needs Linux /proc to read the proxy\'s RSS and open fds');
    return 1;
  }

  const started: Started = {};
  const abort = new AbortController();
  const cleanup = async (): Promise<void> => {
    await started.proxy?.stop();
    await started.upstream?.close();
  };
  process.once('exit', () => started.proxy?.killNow());
  const onSignal = (signal: NodeJS.Signals): void => {
    if (abort.signal.aborted) {
      started.proxy?.killNow();
      process.exit(130);
    }
    console.error(`\nsoak: ${signal}: stopping traffic, the proxy and the upstream`);
    abort.abort();
    void cleanup().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await soak(options, abort.signal, started);
  } catch (err) {
    if (abort.signal.aborted) return 130; // interrupted: whatever failed after that is a consequence
    throw err;
  } finally {
    await cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error('soak: failed:', err);
    process.exitCode = 1;
  },
);
