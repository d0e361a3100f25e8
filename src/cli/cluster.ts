/**
 * `--workers N` on node:cluster. The primary forks N workers that share the
 * listening port, restarts a crashed one with back-off, drains them as one on
 * SIGTERM, and answers every worker's scrape with the exact sum over all workers
 * (admin/cluster-sum.ts), which the worker renders in the format the scraper asked
 * for. Counters never go backwards across a worker restart: what a worker had
 * counted by its last collection stays in the sum after it dies.
 *
 * What crosses the IPC channel is compact: each worker's collection, and the sum,
 * are mostly Float64Arrays (admin/cluster-snapshot.ts), which node:cluster's advanced
 * serialization copies as bytes where JSON would spell out every number. The sum
 * travels, not its exposition: at the full route budget the text is 15 MB, and
 * moving it from the primary to the worker cost 20–50 ms, more than rendering it.
 *
 * A scrape never waits for ever: the primary gives each worker COLLECT_TIMEOUT_MS
 * to hand over its metrics, and a worker gives the primary SCRAPE_TIMEOUT_MS to
 * answer; either way the scraper gets a 503 (MetricsUnavailableError), never a
 * partial sum that would look like a counter reset.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { type ClusterSum, type Collection, createClusterSum, createSumRenderer } from '../admin/cluster-sum.js';
import { collectRegistry } from '../admin/cluster-snapshot.js';
import type { Rendered, Renderer } from '../admin/exposition.js';
import type { ProtoOptions } from '../metrics/family-proto.js';
import { MetricsUnavailableError } from '../errors.js';
import { allocatorTuning, withHeapSizing } from './process-tuning.js';

const COLLECT = 'metrics-proxy:collect';
const COLLECTED = 'metrics-proxy:collected';
const SCRAPE = 'metrics-proxy:scrape';
const SCRAPED = 'metrics-proxy:scraped';
/** How long the primary waits for each worker's metrics. */
const COLLECT_TIMEOUT_MS = 4_000;
/** How long a worker waits for the primary's sum: longer, so that the primary's own 503 (with its reason) comes first. */
const SCRAPE_TIMEOUT_MS = COLLECT_TIMEOUT_MS + 1_000;
const FIRST_RESTART_DELAY_MS = 100;
const MAX_RESTART_DELAY_MS = 10_000;
/** A worker that lived this long is healthy: its crash starts the back-off over. */
const STABLE_AFTER_MS = 10_000;

type Message =
  | { type: typeof COLLECT; id: number }
  | { type: typeof COLLECTED; id: number; collection?: Collection; error?: string }
  | { type: typeof SCRAPE; id: number }
  | { type: typeof SCRAPED; id: number; sum?: Collection; error?: string; unavailable?: boolean };

function isMessage(value: unknown): value is Message {
  return typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string';
}

/** Worker side: hand the primary this worker's registry, in the compact form, whenever it asks (or why it cannot). */
export function answerCollections(registry: Registry): void {
  process.on('message', (message: unknown) => {
    if (!isMessage(message) || message.type !== COLLECT) return;
    collectRegistry(registry)
      .then((collection) => process.send?.({ type: COLLECTED, id: message.id, collection }))
      .catch((err: unknown) => process.send?.({ type: COLLECTED, id: message.id, error: String(err) }));
  });
}

type Waiter = { resolve(sum: Collection): void; reject(e: Error): void; readonly timer: NodeJS.Timeout };

/**
 * Worker side: a scrape asks the primary for the cluster-wide sum, for at most `timeoutMs`, and
 * renders it in the wanted format.
 */
export function createClusterRenderer(protobuf: ProtoOptions = { classicBuckets: true }, timeoutMs = SCRAPE_TIMEOUT_MS): Renderer {
  const render = createSumRenderer(protobuf);
  let next = 0;
  const pending = new Map<number, Waiter>();
  /** The waiter for `id`, taken off the list with its timer stopped; undefined once answered or given up. */
  const take = (id: number): Waiter | undefined => {
    const waiter = pending.get(id);
    pending.delete(id);
    if (waiter !== undefined) clearTimeout(waiter.timer);
    return waiter;
  };
  process.on('message', (message: unknown) => {
    if (!isMessage(message) || message.type !== SCRAPED) return;
    const waiter = take(message.id);
    if (waiter === undefined) return; // answered after the timeout
    if (message.sum !== undefined) waiter.resolve(message.sum);
    else if (message.unavailable === true) waiter.reject(new MetricsUnavailableError(message.error ?? 'cluster scrape failed'));
    else waiter.reject(new Error(message.error ?? 'cluster scrape failed'));
  });
  const giveUp = (id: number, why: string): void => take(id)?.reject(new MetricsUnavailableError(why));
  const askPrimary = (): Promise<Collection> =>
    new Promise((resolve, reject) => {
      const id = next++;
      const timer = setTimeout(() => giveUp(id, `the primary did not answer within ${timeoutMs} ms`), timeoutMs);
      pending.set(id, { resolve, reject, timer });
      if (process.send === undefined) giveUp(id, 'no IPC channel to the primary');
      else process.send({ type: SCRAPE, id }, undefined, {}, (err: Error | null) => err !== null && giveUp(id, err.message));
    });
  return async (format): Promise<Rendered> => render(await askPrimary(), format);
}

/**
 * Primary side: one worker's collection; MetricsUnavailableError after COLLECT_TIMEOUT_MS or when
 * the worker could not collect (an empty collection would sum to a counter reset).
 */
function collectFrom(worker: Worker, id: number): Promise<Collection> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      worker.off('message', onMessage);
      reject(new MetricsUnavailableError(`worker ${worker.id} did not answer within ${COLLECT_TIMEOUT_MS} ms`));
    }, COLLECT_TIMEOUT_MS);
    function onMessage(message: unknown): void {
      if (!isMessage(message) || message.type !== COLLECTED || message.id !== id) return;
      clearTimeout(timer);
      worker.off('message', onMessage);
      if (message.collection !== undefined) resolve(message.collection);
      else reject(new MetricsUnavailableError(`worker ${worker.id} could not collect its metrics: ${message.error ?? 'no reason given'}`));
    }
    worker.on('message', onMessage);
    worker.send({ type: COLLECT, id });
  });
}

function liveWorkers(): Worker[] {
  return Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected());
}

type Scrape = () => Promise<Collection>;

/** Primary side: the sum over every live worker now, and every retired one. */
function createScraper(sum: ClusterSum): Scrape {
  let collectId = 0;
  return async () => {
    const workers = liveWorkers();
    const collected = await Promise.all(workers.map((w) => collectFrom(w, collectId++)));
    workers.forEach((w, i) => sum.seen(w.id, collected[i] as Collection));
    return sum.sum(collected);
  };
}

/** Primary side: answers a worker's SCRAPE with the sum, or with why there is none. */
function answerScrapes(worker: Worker, scrape: Scrape, log: Logger): void {
  worker.on('message', (message: unknown) => {
    if (!isMessage(message) || message.type !== SCRAPE) return;
    scrape()
      .then((sum) => worker.isConnected() && worker.send({ type: SCRAPED, id: message.id, sum }))
      .catch((err: Error) => {
        log.warn({ err }, 'cluster scrape failed');
        const unavailable = err instanceof MetricsUnavailableError;
        if (worker.isConnected()) worker.send({ type: SCRAPED, id: message.id, error: err.message, unavailable });
      });
  });
}

export interface PrimaryOptions {
  readonly workers: number;
  readonly log: Logger;
}

/** The primary's own state: one object, passed to the few functions that change it. */
interface Supervisor {
  readonly log: Logger;
  readonly sum: ClusterSum;
  readonly scrape: Scrape;
  /** When each live worker was forked. */
  readonly started: Map<number, number>;
  /** Workers that got as far as listening. */
  readonly everListened: Set<number>;
  restartDelay: number;
  stopping: boolean;
  readonly exit: (code: number) => void;
}

function fork(supervisor: Supervisor): void {
  const worker = cluster.fork(allocatorTuning(process.env));
  supervisor.started.set(worker.id, Date.now());
  answerScrapes(worker, supervisor.scrape, supervisor.log);
}

function stopAll(supervisor: Supervisor, signal: NodeJS.Signals): void {
  supervisor.stopping = true;
  for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill(signal);
}

function onWorkerExit(supervisor: Supervisor, worker: Worker, code: number | null, signal: string | null): void {
  const { log, started, everListened } = supervisor;
  supervisor.sum.retire(worker.id);
  const lived = Date.now() - (started.get(worker.id) ?? Date.now());
  started.delete(worker.id);
  if (supervisor.stopping) {
    if (started.size === 0) supervisor.exit(0);
    return;
  }
  if (!everListened.delete(worker.id)) {
    // It never got to listen (bad option, port taken): every other worker would fail the same way.
    log.fatal({ worker: worker.id, code }, 'worker failed to start; stopping');
    stopAll(supervisor, 'SIGKILL');
    supervisor.exit(code === 0 || code === null ? 1 : code);
    return;
  }
  if (lived >= STABLE_AFTER_MS) supervisor.restartDelay = FIRST_RESTART_DELAY_MS;
  log.error({ worker: worker.id, code, signal, restartInMs: supervisor.restartDelay }, 'worker exited; restarting');
  setTimeout(() => fork(supervisor), supervisor.restartDelay).unref();
  supervisor.restartDelay = Math.min(supervisor.restartDelay * 2, MAX_RESTART_DELAY_MS);
}

function onSignal(supervisor: Supervisor, signal: NodeJS.Signals): void {
  if (supervisor.stopping) {
    supervisor.log.warn({ signal }, 'second signal: stopping workers at once');
    stopAll(supervisor, 'SIGKILL');
    supervisor.exit(1);
    return;
  }
  supervisor.log.info({ signal, workers: liveWorkers().length }, 'draining workers');
  // Each worker drains on its own SIGTERM: readiness 503, drain delay, in-flight requests, exit 0.
  stopAll(supervisor, 'SIGTERM');
}

/** Primary side: runs until SIGTERM/SIGINT (exit 0 after every worker drained) or a start-up failure. */
export function runPrimary({ workers, log }: PrimaryOptions): Promise<number> {
  return new Promise((exit) => {
    // Before the first fork: the workers inherit the channel's serialization, and the heap and
    // allocator settings whether or not the primary was started with them (process-tuning.ts).
    cluster.setupPrimary({ serialization: 'advanced', execArgv: withHeapSizing(process.execArgv) });
    const sum = createClusterSum();
    const supervisor: Supervisor = {
      log,
      sum,
      scrape: createScraper(sum),
      started: new Map(),
      everListened: new Set(),
      restartDelay: FIRST_RESTART_DELAY_MS,
      stopping: false,
      exit,
    };
    cluster.on('listening', (worker) => supervisor.everListened.add(worker.id));
    cluster.on('exit', (worker, code, signal) => onWorkerExit(supervisor, worker, code, signal));
    process.on('SIGTERM', (signal) => onSignal(supervisor, signal));
    process.on('SIGINT', (signal) => onSignal(supervisor, signal));
    // debug: the first line a tool reads must stay a worker's `listening` line, with the port.
    log.debug({ workers }, 'starting workers');
    for (let i = 0; i < workers; i++) fork(supervisor);
  });
}
