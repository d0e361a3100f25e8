/**
 * `--retry-noisy N`: on a shared machine, a cell during which other processes took the proxy
 * core (or a good part of the machine) is measured again, after waiting for a quiet moment, up
 * to N times; the last attempt is kept whatever it shows. The report counts the retries.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { readCoreTimes } from './proc.js';
import type { CellRecord } from './summary.js';

/** Others on the proxy core above this (% of the core) make a cell noisy. */
const PROXY_CORE_LIMIT_PCT = 10;
/** Others on any core above this (% of one core) make a cell noisy. */
const MACHINE_LIMIT_PCT = 25;
/** Quiet: both cores together this busy at most (% of one core), over a 2 s window. */
const QUIET_PCT = 15;

/** Why the cell is noisy, or undefined. */
export function noise(cell: CellRecord): string | undefined {
  const m = cell.measured;
  if (m === undefined) return undefined;
  // `direct` has nothing on the proxy core: whatever runs there takes nothing from it.
  if (m.targetCpuPct !== undefined && (m.proxyCoreOthersPct ?? 0) > PROXY_CORE_LIMIT_PCT) return `others took ${(m.proxyCoreOthersPct ?? 0).toFixed(0)} % of the proxy core`;
  if ((m.othersPct ?? 0) > MACHINE_LIMIT_PCT) return `others used ${(m.othersPct ?? 0).toFixed(0)} % of a core`;
  return undefined;
}

function busySeconds(): number {
  let busy = 0;
  for (const core of readCoreTimes().values()) busy += core.busy + core.irq;
  return busy;
}

/** Waits until the machine has been quiet for a 2 s window, or `maxS` have passed; returns the seconds waited. */
export async function waitForQuiet(maxS: number): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < maxS * 1000) {
    const before = busySeconds();
    await sleep(2000);
    if (((busySeconds() - before) / 2) * 100 <= QUIET_PCT) break;
  }
  return (Date.now() - started) / 1000;
}
