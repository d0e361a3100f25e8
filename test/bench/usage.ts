/**
 * How a measured run used the machine: the target's CPU per operation (utime + stime from
 * /proc/PID/stat), whether it was saturated, whether the load core was, and who else ran
 * (other users' test suites on this shared 2-core box). Start a watch before the run, stop it
 * after.
 */
import { performance } from 'node:perf_hooks';
import type { Pinning } from './pinning.js';
import { type CoreTimes, commandLine, processCpuTimes, readCoreTimes } from './proc.js';
import { ownPids } from './processes.js';
import type { CellUsage } from './summary.js';

/** Processes of others named in a cell's record when they used at least this much of a core. */
const NAMED_OVER_PCT = 3;

export interface Watch {
  /** Ends the watch; `ops` = operations completed in the run. */
  stop(ops: number): CellUsage;
}

const pct = (seconds: number, wallS: number): number => (seconds / wallS) * 100;
/** Of one core: tick-granular readings against a wall clock can overshoot by a tick or two. */
const corePct = (seconds: number, wallS: number): number => Math.min(100, pct(seconds, wallS));

function coreDelta(before: Map<number, CoreTimes>, after: Map<number, CoreTimes>, core: number, field: keyof CoreTimes): number | undefined {
  const a = before.get(core)?.[field];
  const b = after.get(core)?.[field];
  return a === undefined || b === undefined ? undefined : b - a;
}

/**
 * CPU of processes the bench did not start, alive at the end of the run (one that started
 * during it counts whole). Those that came and went within the run are missed here; on the
 * proxy core, its busy time still shows them.
 */
function others(before: Map<number, number>, after: Map<number, number>, wallS: number): { pct: number; top: string } {
  const own = ownPids();
  const deltas: Array<[number, number]> = [];
  for (const [pid, end] of after) {
    if (own.has(pid)) continue;
    const start = before.get(pid) ?? 0;
    if (end > start) deltas.push([pid, end - start]);
  }
  deltas.sort((a, b) => b[1] - a[1]);
  const total = deltas.reduce((sum, [, d]) => sum + d, 0);
  const top = deltas
    .filter(([, d]) => pct(d, wallS) >= NAMED_OVER_PCT)
    .slice(0, 3)
    .map(([pid, d]) => `${commandLine(pid) ?? String(pid)} ${pct(d, wallS).toFixed(0)} %`)
    .join('; ');
  return { pct: pct(total, wallS), top };
}

/** What the watch reads of the target: its CPU seconds and minor page faults so far (undefined: no process of its own). */
export interface TargetCounters {
  readonly cpuSeconds: () => number | undefined;
  readonly minorFaults: () => number | undefined;
}

export function startWatch(pinning: Pinning, target: TargetCounters): Watch {
  const processesBefore = processCpuTimes();
  const cpuBefore = target.cpuSeconds();
  const faultsBefore = target.minorFaults();
  const coresBefore = readCoreTimes();
  const started = performance.now();
  return {
    stop(ops) {
      const wallS = (performance.now() - started) / 1000;
      const coresAfter = readCoreTimes();
      const cpuAfter = target.cpuSeconds();
      const faultsAfter = target.minorFaults();
      const other = others(processesBefore, processCpuTimes(), wallS);
      const cpuS = cpuBefore === undefined || cpuAfter === undefined ? undefined : cpuAfter - cpuBefore;
      let steal = 0;
      for (const core of coresAfter.keys()) steal += coreDelta(coresBefore, coresAfter, core, 'steal') ?? 0;
      const out: { -readonly [K in keyof CellUsage]: CellUsage[K] } = { stealPct: pct(steal, wallS), othersPct: other.pct };
      if (other.top !== '') out.othersTop = other.top;
      if (cpuS !== undefined) {
        out.targetCpuPct = pct(cpuS, wallS);
        if (ops > 0) out.cpuUsPerOp = (cpuS / ops) * 1e6;
      }
      if (faultsBefore !== undefined && faultsAfter !== undefined && ops > 0) out.faultsPerOp = (faultsAfter - faultsBefore) / ops;
      if (!pinning.enabled) return out;
      const proxyBusy = coreDelta(coresBefore, coresAfter, pinning.proxyCore, 'busy');
      const loadBusy = coreDelta(coresBefore, coresAfter, pinning.loadCore, 'busy');
      const loadIrq = coreDelta(coresBefore, coresAfter, pinning.loadCore, 'irq');
      if (proxyBusy !== undefined) out.proxyCoreOthersPct = corePct(Math.max(0, proxyBusy - (cpuS ?? 0)), wallS);
      if (loadBusy !== undefined) out.loadCoreBusyPct = corePct(loadBusy + (loadIrq ?? 0), wallS);
      return out;
    },
  };
}
