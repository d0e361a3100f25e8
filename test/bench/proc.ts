/**
 * Readings of other processes from /proc (Linux): resident memory now and at its peak, and a
 * process's children (cluster workers, nginx workers) so that trees are measured and killed whole.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on Linux as a rule). */
const TICKS_PER_SECOND = ((): number => {
  try {
    const ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isInteger(ticks) && ticks > 0 ? ticks : 100;
  } catch {
    return 100;
  }
})();

export interface Memory {
  /** VmRSS: resident now. */
  readonly rssBytes: number;
  /** VmHWM: the peak resident size since the process started. */
  readonly hwmBytes: number;
}

/** Undefined when the process is gone. */
export function readMemory(pid: number): Memory | undefined {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1] ?? 0) * 1024;
  return { rssBytes: kib('VmRSS'), hwmBytes: kib('VmHWM') };
}

/** Sums over processes; undefined if none of them could be read. */
export function sumMemory(pids: readonly number[]): Memory | undefined {
  const read = pids.map(readMemory).filter((m): m is Memory => m !== undefined);
  if (read.length === 0) return undefined;
  return {
    rssBytes: read.reduce((sum, m) => sum + m.rssBytes, 0),
    hwmBytes: read.reduce((sum, m) => sum + m.hwmBytes, 0),
  };
}

/** Direct children of `pid`, from the ppid field of every /proc/<n>/stat. */
export function childPids(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[1]) === pid) children.push(Number(entry));
  }
  return children;
}

/** Field 22 of /proc/<pid>/stat (clock ticks after boot): with the pid, it names one process. Undefined once gone or a zombie. */
export function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[0] === 'Z' ? undefined : fields[19];
  } catch {
    return undefined;
  }
}

/** User + system CPU seconds a process has used so far (its own threads, not its children); 0 once gone. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}
