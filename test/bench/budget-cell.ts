/**
 * The full-budget scrape cell (scrape-budget.ts): three fresh metrics-proxy processes on the
 * proxy core, all in front of the Node upstream, filled and scraped, then stopped.
 */
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { BUDGET_ROUTES, QUICK_REQUESTS_PER_ROUTE, REQUESTS_PER_ROUTE, budgetFill } from './budget-fill.js';
import { type RunState, log } from './cells.js';
import { ms } from './format.js';
import { type BudgetProxy, type BudgetResult, type BudgetTarget, type MemoryReading, VARIANTS, VARIANT_IDS, scrapeBudget } from './scrape-budget.js';
import { ROOT, type RunningTarget, type TargetId, startTarget } from './targets.js';

const SCRAPES_TIMED = 20;
const BUDGET_ARGS = ['--max-routes', String(BUDGET_ROUTES)];

const PROCESSES: Readonly<Record<BudgetProxy, { readonly target: TargetId; readonly args: readonly string[] }>> = {
  main: { target: 'mp', args: BUDGET_ARGS },
  nativeOnly: { target: 'mp', args: [...BUDGET_ARGS, '--no-protobuf-classic-buckets'] },
  control: { target: 'mp-nometrics', args: BUDGET_ARGS },
};

/** Makes a process under test collect its garbage and say how much memory it keeps (memory-probe.mjs). */
const PROBE = ['--expose-gc', '--import', pathToFileURL(join(ROOT, 'test', 'bench', 'memory-probe.mjs')).href];
const PROBE_TIMEOUT_MS = 10_000;

/** The last `{"msg":"memory"}` line of the target's stderr, and how many there were. */
function probeLines(running: RunningTarget): { readonly count: number; readonly last: string | undefined } {
  const lines = running.stderr().split('\n').filter((l) => l.startsWith('{"msg":"memory"'));
  return { count: lines.length, last: lines.at(-1) };
}

async function probe(running: RunningTarget): Promise<MemoryReading> {
  if (running.pid === undefined) throw new Error('no process to probe');
  const before = probeLines(running).count;
  process.kill(running.pid, 'SIGUSR2');
  const deadline = performance.now() + PROBE_TIMEOUT_MS;
  for (;;) {
    const { count, last } = probeLines(running);
    if (count > before && last !== undefined) {
      const usage = JSON.parse(last) as { heapUsed: number; external: number };
      const memory = running.memory();
      if (memory === undefined) throw new Error('the probed process is gone');
      return { ...memory, liveBytes: usage.heapUsed + usage.external };
    }
    if (performance.now() > deadline) throw new Error('the memory probe did not answer');
    await sleep(10);
  }
}

function asBudgetTarget(running: RunningTarget): BudgetTarget {
  return { url: running.url, probe: () => probe(running), cpuSeconds: running.cpuSeconds };
}

export async function budgetCell(state: RunState): Promise<void> {
  const started: RunningTarget[] = [];
  let result: BudgetResult | undefined;
  let error: string | undefined;
  try {
    const targets = {} as Record<BudgetProxy, BudgetTarget>;
    for (const [proxy, spec] of Object.entries(PROCESSES) as Array<[BudgetProxy, (typeof PROCESSES)[BudgetProxy]]>) {
      const running = await startTarget(spec.target, state.upstreams.node, {
        nginx: state.nginx,
        caddy: state.caddy,
        wsUpstream: state.upstreams.node,
        prefix: state.pinning.prefix('proxy'),
        nodeOptions: PROBE,
        mpArgs: spec.args,
      });
      started.push(running);
      targets[proxy] = asBudgetTarget(running);
    }
    const perRoute = state.options.quick ? QUICK_REQUESTS_PER_ROUTE : REQUESTS_PER_ROUTE;
    result = await scrapeBudget(targets, { routes: BUDGET_ROUTES, requests: budgetFill(BUDGET_ROUTES, perRoute), scrapes: SCRAPES_TIMED, log });
    if (!started.every((t) => t.alive())) throw new Error('a proxy died during the measurement');
  } catch (err) {
    error = (err as Error).message;
  } finally {
    for (const t of started) await t.stop();
  }
  state.cells.push({ round: 0, scenario: 'scrape-budget', target: 'mp', ...(result === undefined ? {} : { budget: result }), ...(error === undefined ? {} : { error }) });
  if (result === undefined) {
    log(`  scrape     full budget FAILED: ${error ?? '?'}`);
    return;
  }
  const r = result;
  log(
    `  scrape     full budget: ${r.routesSeen} routes; ` +
      VARIANT_IDS.map((id) => `${VARIANTS[id].title.split(' (')[0] ?? id} ${ms(r.timings[id].medianMs)} ms`).join(', '),
  );
}
