// @ts-check
/**
 * Preloaded into a metrics-proxy under test by the full-budget scrape (scrape-budget.ts) with
 * `node --expose-gc --import test/bench/memory-probe.mjs`: on SIGUSR2 it runs a full garbage
 * collection and writes one JSON line to stderr, `{"msg":"memory",...process.memoryUsage()}`,
 * so that the bench reads what the process keeps alive rather than what it has not collected
 * yet. Plain JavaScript on purpose: it loads before the bin, without a TypeScript loader.
 */

const gc = /** @type {undefined | (() => void)} */ (globalThis.gc);

process.on('SIGUSR2', () => {
  gc?.();
  // V8 frees dead buffers' memory behind the collection and counts it off `external` only at a
  // later one: a second collection a moment after the first settles the figure.
  setTimeout(() => {
    gc?.();
    process.stderr.write(`${JSON.stringify({ msg: 'memory', ...process.memoryUsage() })}\n`);
  }, 100);
});
