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

/**
 * Minor page faults a process has taken so far (its own threads): pages the kernel had to map in,
 * zeroed, on first touch. Many per request means memory handed back to the kernel and taken again
 * (docs/performance.md, "The allocator"). 0 once gone.
 */
export function minorFaults(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7]);
  } catch {
    return 0;
  }
}

/** Cumulative time of one core from /proc/stat, in seconds. */
export interface CoreTimes {
  /** user + nice + system (what processes ran; irq and softirq apart). */
  readonly busy: number;
  /** irq + softirq: network work that no process is charged for. */
  readonly irq: number;
  /** Taken by the hypervisor for other guests. */
  readonly steal: number;
  readonly idle: number;
}

/** Every core's times from /proc/stat ("cpuN user nice system idle iowait irq softirq steal ..."); empty when unreadable. */
export function readCoreTimes(): Map<number, CoreTimes> {
  const cores = new Map<number, CoreTimes>();
  let stat: string;
  try {
    stat = readFileSync('/proc/stat', 'utf8');
  } catch {
    return cores;
  }
  for (const line of stat.split('\n')) {
    const match = /^cpu(\d+)\s+(.*)$/.exec(line);
    if (match === null) continue;
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = (match[2] ?? '').split(/\s+/).map(Number);
    cores.set(Number(match[1]), {
      busy: (user + nice + system) / TICKS_PER_SECOND,
      irq: (irq + softirq) / TICKS_PER_SECOND,
      steal: steal / TICKS_PER_SECOND,
      idle: (idle + iowait) / TICKS_PER_SECOND,
    });
  }
  return cores;
}

/** CPU seconds so far of every process, by pid (for "who else ran during this cell"). */
export function processCpuTimes(): Map<number, number> {
  const times = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const seconds = cpuSeconds(pid);
    if (seconds > 0) times.set(pid, seconds);
  }
  return times;
}

/** The command line of a process, shortened for a report; undefined once gone. */
export function commandLine(pid: number, maxLength = 70): string | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '').join(' ');
    const text = raw === '' ? `[${readFileSync(`/proc/${pid}/comm`, 'utf8').trim()}]` : raw;
    return text.length > maxLength ? `${text.slice(0, maxLength - 1)}…` : text;
  } catch {
    return undefined;
  }
}
