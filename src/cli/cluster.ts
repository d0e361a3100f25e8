/**
 * `--workers N` on node:cluster. The primary forks N workers that share the
 * listening port, restarts a crashed one with back-off, drains them as one on
 * SIGTERM, and answers every worker's scrape with the sum over all workers
 * (prom-client's AggregatorRegistry.aggregate). Counters never go backwards
 * across a worker restart: the primary keeps each worker's counters and
 * histograms as of its last collection and keeps adding them in after it dies.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { AggregatorRegistry, Registry } from 'prom-client';
import type { Rendered } from '../admin/exposition.js';

const COLLECT = 'metrics-proxy:collect';
const COLLECTED = 'metrics-proxy:collected';
const SCRAPE = 'metrics-proxy:scrape';
const SCRAPED = 'metrics-proxy:scraped';
/** A scrape fails (503) rather than report a partial sum that would look like a counter reset. */
const COLLECT_TIMEOUT_MS = 4_000;
const FIRST_RESTART_DELAY_MS = 100;
const MAX_RESTART_DELAY_MS = 10_000;
/** A worker that lived this long is healthy: its crash starts the back-off over. */
const STABLE_AFTER_MS = 10_000;

type MetricJson = { name: string; type: string; aggregator?: string } & Record<string, unknown>;
type Message =
  | { type: typeof COLLECT; id: number }
  | { type: typeof COLLECTED; id: number; metrics: MetricJson[] }
  | { type: typeof SCRAPE; id: number }
  | { type: typeof SCRAPED; id: number; body?: string; error?: string };

function isMessage(value: unknown): value is Message {
  return typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string';
}

/** Worker side: hand the primary this worker's registry whenever it asks. */
export function answerCollections(registry: Registry): void {
  process.on('message', (message: unknown) => {
    if (!isMessage(message) || message.type !== COLLECT) return;
    registry
      .getMetricsAsJSON()
      .then((metrics) => process.send?.({ type: COLLECTED, id: message.id, metrics }))
      .catch(() => process.send?.({ type: COLLECTED, id: message.id, metrics: [] }));
  });
}

/** Worker side: a scrape asks the primary for the cluster-wide sum (always the text format). */
export function createClusterRenderer(): (openMetrics: boolean) => Promise<Rendered> {
  let next = 0;
  const pending = new Map<number, { resolve(r: Rendered): void; reject(e: Error): void }>();
  process.on('message', (message: unknown) => {
    if (!isMessage(message) || message.type !== SCRAPED) return;
    const waiter = pending.get(message.id);
    if (waiter === undefined) return;
    pending.delete(message.id);
    if (message.body !== undefined) waiter.resolve({ body: message.body, contentType: Registry.PROMETHEUS_CONTENT_TYPE });
    else waiter.reject(new Error(message.error ?? 'cluster scrape failed'));
  });
  return () =>
    new Promise((resolve, reject) => {
      const id = next++;
      pending.set(id, { resolve, reject });
      process.send?.({ type: SCRAPE, id });
    });
}

export interface PrimaryOptions {
  readonly workers: number;
  readonly log: Logger;
}

/** Primary side: runs until SIGTERM/SIGINT (exit 0 after every worker drained) or a start-up failure. */
export function runPrimary({ workers, log }: PrimaryOptions): Promise<number> {
  return new Promise((resolveExit) => {
    const lastSeen = new Map<number, MetricJson[]>();
    const retired: MetricJson[][] = [];
    const started = new Map<number, number>();
    const everListened = new Set<number>();
    const alive = new Set<number>();
    let restartDelay = FIRST_RESTART_DELAY_MS;
    let stopping = false;
    let collectId = 0;

    function live(): Worker[] {
      return Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected());
    }

    function collect(worker: Worker): Promise<MetricJson[]> {
      return new Promise((resolve, reject) => {
        const id = collectId++;
        const timer = setTimeout(() => {
          worker.off('message', onMessage);
          reject(new Error(`worker ${worker.id} did not answer within ${COLLECT_TIMEOUT_MS} ms`));
        }, COLLECT_TIMEOUT_MS);
        function onMessage(message: unknown): void {
          if (!isMessage(message) || message.type !== COLLECTED || message.id !== id) return;
          clearTimeout(timer);
          worker.off('message', onMessage);
          resolve(message.metrics);
        }
        worker.on('message', onMessage);
        worker.send({ type: COLLECT, id });
      });
    }

    async function aggregate(): Promise<string> {
      const workersNow = live();
      const collected = await Promise.all(workersNow.map((w) => collect(w)));
      workersNow.forEach((w, i) => lastSeen.set(w.id, collected[i] as MetricJson[]));
      return AggregatorRegistry.aggregate([...collected, ...retired] as never).metrics();
    }

    function fork(): void {
      const worker = cluster.fork();
      started.set(worker.id, Date.now());
      alive.add(worker.id);
      worker.on('message', (message: unknown) => {
        if (!isMessage(message) || message.type !== SCRAPE) return;
        aggregate()
          .then((body) => worker.isConnected() && worker.send({ type: SCRAPED, id: message.id, body }))
          .catch((err: Error) => {
            log.warn({ err }, 'cluster scrape failed');
            if (worker.isConnected()) worker.send({ type: SCRAPED, id: message.id, error: err.message });
          });
      });
    }

    cluster.on('listening', (worker) => everListened.add(worker.id));
    cluster.on('exit', (worker, code, signal) => {
      const seen = lastSeen.get(worker.id);
      // What this worker had counted by its last collection stays in the sum: counters and histograms only.
      if (seen !== undefined) retired.push(seen.filter((m) => m.type === 'counter' || m.type === 'histogram'));
      lastSeen.delete(worker.id);
      const lived = Date.now() - (started.get(worker.id) ?? Date.now());
      started.delete(worker.id);
      alive.delete(worker.id);
      if (stopping) {
        if (alive.size === 0) resolveExit(0);
        return;
      }
      if (!everListened.has(worker.id)) {
        // It never got to listen (bad option, port taken): every other worker would fail the same way.
        log.fatal({ worker: worker.id, code }, 'worker failed to start; stopping');
        stopAll('SIGKILL');
        resolveExit(code === 0 || code === null ? 1 : code);
        return;
      }
      everListened.delete(worker.id);
      if (lived >= STABLE_AFTER_MS) restartDelay = FIRST_RESTART_DELAY_MS;
      log.error({ worker: worker.id, code, signal, restartInMs: restartDelay }, 'worker exited; restarting');
      setTimeout(fork, restartDelay).unref();
      restartDelay = Math.min(restartDelay * 2, MAX_RESTART_DELAY_MS);
    });

    function stopAll(signal: NodeJS.Signals): void {
      stopping = true;
      for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill(signal);
    }

    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        log.warn({ signal }, 'second signal: stopping workers at once');
        stopAll('SIGKILL');
        resolveExit(1);
        return;
      }
      log.info({ signal, workers: live().length }, 'draining workers');
      // Each worker drains on its own SIGTERM: readiness 503, drain delay, in-flight requests, exit 0.
      stopAll('SIGTERM');
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    // debug: the first line a tool reads must stay a worker's `listening` line, with the port.
    log.debug({ workers }, 'starting workers');
    for (let i = 0; i < workers; i++) fork();
  });
}
