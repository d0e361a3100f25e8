/**
 * Core pinning, the way a sidecar runs: the proxy under test alone on one core (`taskset -c 1`),
 * everything else (wrk, the upstreams, this bench process with its WebSocket and fixed-rate
 * clients) on another (`taskset -c 0`). Child processes inherit nothing implicitly: every spawn
 * names its core through `prefix()`, so the command lines in the docs are the ones that run.
 * Without taskset or a second core the bench still runs, unpinned, and says so in its header.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

const TASKSET_CANDIDATES = ['/usr/bin/taskset', '/bin/taskset', '/usr/local/bin/taskset'];

export type Role = 'proxy' | 'load';

export interface Pinning {
  readonly enabled: boolean;
  /** Where the proxy under test runs, alone. */
  readonly proxyCore: number;
  /** Where the load generator, the upstreams and the bench itself run. */
  readonly loadCore: number;
  /** Why pinning is off (undefined when on). */
  readonly reason: string | undefined;
  /** `taskset -c N` for a role, or nothing when pinning is off: put it in front of a command. */
  prefix(role: Role): readonly string[];
  /** One line for the report's header. */
  describe(): string;
}

/** Cpus_allowed_list of this process, e.g. "0-1" or "0,2-3", as numbers. */
function allowedCores(): number[] {
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const list = /^Cpus_allowed_list:\s*(\S+)$/m.exec(status)?.[1] ?? '';
    const cores: number[] = [];
    for (const part of list.split(',')) {
      const [from, to] = part.split('-').map(Number);
      if (from === undefined || !Number.isInteger(from)) continue;
      for (let c = from; c <= (to ?? from); c++) cores.push(c);
    }
    return cores;
  } catch {
    return [];
  }
}

function off(reason: string): Pinning {
  return {
    enabled: false,
    proxyCore: -1,
    loadCore: -1,
    reason,
    prefix: () => [],
    describe: () => `**not pinned** (${reason}): the load generator, the upstream and the proxy share the cores; read the ratios only`,
  };
}

/**
 * Pins this process (all its threads: `taskset -a -p`) to the load core and returns the
 * prefixes for children. `want: false` (--no-pin) leaves everything unpinned.
 */
export function setUpPinning(want: boolean, proxyCore = 1, loadCore = 0): Pinning {
  if (!want) return off('--no-pin');
  const taskset = TASKSET_CANDIDATES.find((p) => existsSync(p));
  if (taskset === undefined) return off('taskset is not installed (util-linux)');
  const cores = allowedCores();
  if (!cores.includes(proxyCore) || !cores.includes(loadCore)) {
    return off(`cores ${loadCore} and ${proxyCore} are not both available to this process (allowed: ${cores.join(',') || '?'})`);
  }
  try {
    execFileSync(taskset, ['-a', '-p', '-c', String(loadCore), String(process.pid)], { stdio: 'ignore' });
  } catch (err) {
    return off(`taskset failed: ${(err as Error).message}`);
  }
  const others = cores.filter((c) => c !== proxyCore && c !== loadCore);
  return {
    enabled: true,
    proxyCore,
    loadCore,
    reason: undefined,
    prefix: (role) => [taskset, '-c', String(role === 'proxy' ? proxyCore : loadCore)],
    describe: () =>
      `the proxy under test alone on core ${proxyCore} (\`taskset -c ${proxyCore}\`); wrk, the upstreams and the bench process ` +
      `(WebSocket and fixed-rate clients) on core ${loadCore} (\`taskset -c ${loadCore}\`)` +
      (others.length > 0 ? `; cores ${others.join(',')} unused` : ''),
  };
}
