/**
 * Spawning the built bin (`node bin/metrics-proxy.js`, which imports dist/)
 * for end-to-end tests: line-by-line stdout, exit tracking, and cleanup by pid.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect, onTestFinished } from 'vitest';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const BIN = join(ROOT, 'bin', 'metrics-proxy.js');
/** Discard port: nothing listens there, and no bad-input test should ever get as far as connecting. */
export const DEAD_UPSTREAM = 'http://127.0.0.1:9';
export const LOOPBACK = ['--host', '127.0.0.1'] as const;
export const ENV_PREFIX = 'METRICS_PROXY_';

export const run = promisify(execFile);

export type Cleanup = (fn: () => Promise<void> | void) => void;

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface RunningBin {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Resolves on 'exit'. */
  readonly exited: Promise<Exit>;
  /** Resolves on 'close': the process exited and its stdout/stderr are fully read. */
  readonly closed: Promise<Exit>;
  stdout(): string;
  stderr(): string;
  /** The next complete stdout line not yet returned; rejects if stdout ends first. */
  nextLine(): Promise<string>;
}

export interface Finished extends Exit {
  readonly stdout: string;
  readonly stderr: string;
}

/** A copy of this process's environment without any METRICS_PROXY_* variable, plus `extra`. */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith(ENV_PREFIX)) env[name] = value;
  }
  return { ...env, ...extra };
}

export function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

export function killByPid(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone (ESRCH)
  }
}

/** Spawns the bin; `cleanup` (onTestFinished) kills it by pid if it is still running when the test ends. */
export function spawnBin(
  args: readonly string[],
  env: Record<string, string>,
  cleanup: Cleanup,
  nodeArgs: readonly string[] = [],
): RunningBin {
  const child = spawn(process.execPath, [...nodeArgs, BIN, ...args], { cwd: ROOT, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  const { pid } = child;
  if (pid === undefined) throw new Error('spawn failed: no pid');
  const exited = new Promise<Exit>((resolve, reject) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', reject);
  });
  const closed = new Promise<Exit>((resolve, reject) => {
    child.once('close', (code, signal) => resolve({ code, signal }));
    child.once('error', reject);
  });
  exited.catch(() => {});
  closed.catch(() => {});
  cleanup(async () => {
    if (isRunning(child)) killByPid(pid);
    await closed.catch(() => {});
  });

  let out = '';
  let err = '';
  let pending = '';
  const lines: string[] = [];
  let consumed = 0;
  let ended = false;
  const waiters: Array<{ resolve(line: string): void; reject(error: Error): void }> = [];
  const settle = (): void => {
    while (waiters.length > 0 && consumed < lines.length) waiters.shift()?.resolve(lines[consumed++] as string);
    if (ended) {
      for (const waiter of waiters.splice(0)) {
        waiter.reject(new Error(`stdout ended before another line; exit ${String(child.exitCode)}, stderr: ${err}`));
      }
    }
  };
  child.stdout?.setEncoding('utf8');
  child.stderr?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    out += chunk;
    pending += chunk;
    const parts = pending.split('\n');
    pending = parts.pop() ?? '';
    lines.push(...parts);
    settle();
  });
  child.stdout?.on('end', () => {
    ended = true;
    // stderr may still be arriving; settle after it too so the rejection carries it.
    if (child.stderr?.readableEnded === true) settle();
    else child.stderr?.once('end', settle);
  });
  child.stderr?.on('data', (chunk: string) => {
    err += chunk;
  });

  return {
    child,
    pid,
    exited,
    closed,
    stdout: () => out,
    stderr: () => err,
    nextLine: () =>
      new Promise<string>((resolve, reject) => {
        waiters.push({ resolve, reject });
        settle();
      }),
  };
}

/**
 * Runs the bin to completion. Anything on stdout means it got as far as
 * logging (i.e. listening), which no failing invocation may do: the child is
 * killed at once so the test fails fast instead of hanging.
 */
export async function runToExit(args: readonly string[], env: Record<string, string>, cleanup: Cleanup): Promise<Finished> {
  const bin = spawnBin(args, env, cleanup);
  bin.child.stdout?.once('data', () => killByPid(bin.pid));
  const exit = await bin.closed;
  return { ...exit, stdout: bin.stdout(), stderr: bin.stderr() };
}

export interface Listening {
  readonly bin: RunningBin;
  readonly log: Record<string, unknown>;
  readonly port: number;
  readonly url: string;
}

/** Starts the bin and waits for its first stdout line, which must be the pino `listening` line. */
export async function startListening(
  args: readonly string[],
  env: Record<string, string> = {},
  nodeArgs: readonly string[] = [],
): Promise<Listening> {
  const bin = spawnBin(args, env, onTestFinished, nodeArgs);
  const line = await bin.nextLine();
  const log = JSON.parse(line) as Record<string, unknown>;
  expect(log.msg).toBe('listening');
  const port = log.port;
  if (typeof port !== 'number') throw new Error(`listening line has no numeric port: ${line}`);
  expect(port).toBeGreaterThan(0);
  return { bin, log, port, url: `http://127.0.0.1:${port}` };
}

export async function exitWithin(bin: RunningBin, ms: number): Promise<Exit> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`still running ${ms} ms after SIGTERM; stderr: ${bin.stderr()}`)), ms);
  });
  try {
    return await Promise.race([bin.exited, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

export async function stopWithSigterm(bin: RunningBin): Promise<Exit> {
  process.kill(bin.pid, 'SIGTERM');
  return exitWithin(bin, 5_000);
}

/** One non-empty line ending in a newline, with no stack frames and no `SomethingError:` dump. */
export function expectOneCleanLine(stderr: string): string {
  expect(stderr).toMatch(/^[^\n]*\S[^\n]*\n$/);
  expect(stderr).not.toMatch(/^\s+at /m);
  expect(stderr).not.toMatch(/\b\w*Error:/);
  expect(stderr).not.toMatch(/node:internal|file:\/\//);
  return stderr.trimEnd();
}


/** Node flags for a bin whose live memory a test reads with `liveMemory` (the preload collects on SIGUSR2). */
export const LIVE_MEMORY_ARGS: readonly string[] = ['--expose-gc', '--import', new URL('./fixtures/gc-on-signal.mjs', import.meta.url).href];

/**
 * Live memory of a bin started with LIVE_MEMORY_ARGS: V8 heap plus memory outside it (such as
 * Buffers) after a settled full GC, so a test compares what is kept, not what is not collected yet.
 */
export async function liveMemory(bin: RunningBin): Promise<number> {
  const before = bin.stderr().length;
  process.kill(bin.pid, 'SIGUSR2');
  const deadline = Date.now() + 15_000;
  while (!/gc-done \d+\n/.test(bin.stderr().slice(before))) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the proxy to collect garbage');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const text = bin.stderr().slice(before);
  const heap = Number(/gc-done (\d+)/.exec(text)?.[1]);
  const external = Number(/gc-external (\d+)/.exec(text)?.[1]);
  expect(Number.isFinite(heap) && Number.isFinite(external), text).toBe(true);
  return heap + external;
}
