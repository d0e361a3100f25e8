/**
 * wrk (Debian package `wrk`) for the saturation scenarios: C, one thread, closed loop, N
 * connections as fast as the target answers. It runs as its own process on the load core; the
 * bench reads the JSON line that wrk-report.lua prints when the run is done.
 */
import { fileURLToPath } from 'node:url';
import type { Measured } from './load.js';
import { runTool } from './processes.js';
import { type ToolBinary, findTool } from './tools.js';

const CANDIDATES = ['/usr/bin/wrk', '/usr/local/bin/wrk'];
const SCRIPT = fileURLToPath(new URL('wrk-report.lua', import.meta.url));

export type WrkBinary = ToolBinary;

export function findWrk(): WrkBinary | undefined {
  // `wrk -v` prints "wrk debian/4.1.0-3+b2 [epoll] Copyright ..." and the usage, and exits 1.
  return findTool('wrk', CANDIDATES, ['-v'], (out) => (out.split('\n')[0] ?? '').replace(/\s*Copyright.*$/, '').trim());
}

export interface WrkOptions {
  readonly connections: number;
  readonly durationS: number;
  /** POST a body of this many bytes instead of a GET. */
  readonly postBytes?: number;
}

interface WrkReport {
  readonly requests: number;
  readonly durationUs: number;
  readonly connect: number;
  readonly read: number;
  readonly write: number;
  readonly status: number;
  readonly timeout: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly p999Us: number;
}

export type WrkRunner = (url: string, options: WrkOptions) => Promise<Measured>;

/** A runner bound to one wrk binary and one core prefix (`taskset -c 0`). */
export function wrkRunner(binary: WrkBinary, prefix: readonly string[]): WrkRunner {
  return async (url, options) => {
    const args = [
      '-t1',
      `-c${options.connections}`,
      `-d${options.durationS}s`,
      '--timeout',
      '10s',
      '-s',
      SCRIPT,
      url,
      ...(options.postBytes === undefined ? [] : ['--', 'post', String(options.postBytes)]),
    ];
    const result = await runTool(binary.path, args, prefix, (options.durationS + 30) * 1000);
    const line = result.stdout.split('\n').find((l) => l.startsWith('{"wrk":1'));
    if (result.code !== 0 || line === undefined) {
      throw new Error(`wrk failed (exit ${String(result.code)}): ${(result.stderr || result.stdout).trim().split('\n').slice(-2).join(' / ')}`);
    }
    const r = JSON.parse(line) as WrkReport;
    const ok = r.requests - r.status;
    return {
      rate: ok / (r.durationUs / 1e6),
      ops: ok,
      errors: r.connect + r.read + r.write + r.status + r.timeout,
      p50Ms: r.p50Us / 1000,
      p99Ms: r.p99Us / 1000,
      p999Ms: r.p999Us / 1000,
    };
  };
}
