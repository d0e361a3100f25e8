/**
 * Every process the bench starts goes through here: spawned, timed from spawn to ready
 * (cold start), measured (peak RSS of the whole tree), and stopped by pid. A registry of
 * live pids lets `killEverything` stop whatever is left on exit, error or Ctrl-C.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Memory, childPids, cpuSeconds, minorFaults, startTime, sumMemory } from './proc.js';

const READY_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 3_000;

/**
 * Pids the bench started (and their children, once known), each with its start time from
 * /proc, so that a pid the kernel has since handed to another process is never signalled.
 */
const live = new Map<number, string>();

function track(pid: number): void {
  if (live.has(pid)) return;
  const started = startTime(pid);
  if (started !== undefined) live.set(pid, started);
}

/** SIGKILL, if `pid` is still the process the bench started. */
function kill(pid: number): void {
  const started = live.get(pid);
  if (started === undefined || startTime(pid) !== started) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/**
 * Every process the bench has running now (its own pid included), with their children: nginx's
 * worker is forked after the master listens, so the upstream's worker is not known at start.
 */
export function ownPids(): Set<number> {
  const own = new Set([process.pid, process.ppid, ...live.keys()]);
  for (const pid of live.keys()) for (const child of childPids(pid)) own.add(child);
  return own;
}

/** Temp directories to remove on the way out (nginx configs), in case their owner's stop() never ran. */
const tempDirs = new Set<string>();

export function registerTempDir(dir: string): () => void {
  tempDirs.add(dir);
  return () => tempDirs.delete(dir);
}

/** Synchronous, for 'exit' and signal handlers: SIGKILL to every live pid, then remove the temp dirs. */
export function killEverything(): void {
  for (const pid of live.keys()) kill(pid);
  live.clear();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

/** This process's environment without METRICS_PROXY_*: only command-line flags configure the proxy. Plus `extra`. */
function cleanEnv(extra: Readonly<Record<string, string>> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('METRICS_PROXY_')) env[name] = value;
  return { ...env, ...extra };
}

export interface Spawned {
  readonly pid: number;
  readonly child: ChildProcess;
  /** Spawn → ready, ms. */
  readonly coldStartMs: number;
  /** The port from the first `listening` line (0 for processes that print none). */
  readonly port: number;
  readonly stderr: () => string;
  /** The process and its children as of now (workers). */
  readonly tree: () => number[];
  /** VmRSS and VmHWM summed over the tree; read before stopping. */
  readonly memory: () => Memory | undefined;
  /** CPU seconds used so far by the tree (user + system). */
  readonly cpuSeconds: () => number;
  /** Minor page faults taken so far by the tree. */
  readonly minorFaults: () => number;
  readonly alive: () => boolean;
  /** SIGTERM to the top process, SIGKILL to the whole tree after a grace period. */
  readonly stop: () => Promise<void>;
}

export class StartError extends Error {
  constructor(
    message: string,
    readonly stderr: string,
  ) {
    super(message);
  }
}

export interface SpawnOptions {
  readonly cwd: string;
  /** How many JSON `{"msg":"listening"}` lines mean ready (2 for two cluster workers); 0 = use `readyPort`. */
  readonly listeningLines: number;
  /** For processes that print nothing (nginx, Caddy): ready once this port accepts a TCP connection. */
  readonly readyPort?: number;
  /** Put in front of the command, e.g. `taskset -c 1` (it execs the command: the pid stays the same). */
  readonly prefix?: readonly string[];
  /** Added to the environment. */
  readonly env?: Readonly<Record<string, string>>;
}

export async function spawnProcess(command: string, args: readonly string[], options: SpawnOptions): Promise<Spawned> {
  const started = performance.now();
  const [head, ...rest] = [...(options.prefix ?? []), command, ...args];
  const child = spawn(head ?? command, rest, { cwd: options.cwd, env: cleanEnv(options.env), stdio: ['ignore', 'pipe', 'pipe'] });
  const { pid } = child;
  if (pid === undefined) throw new StartError(`spawning ${command} failed`, '');
  track(pid);
  const known = new Set<number>([pid]);
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', (err) => {
      stderr += `${err.message}\n`;
      resolve();
    });
  });
  const running = (): boolean => child.exitCode === null && child.signalCode === null;

  const remember = (): number[] => {
    const tree = [pid, ...childPids(pid)];
    for (const p of tree) {
      known.add(p);
      track(p);
    }
    return tree;
  };

  let port = 0;
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new StartError(`${command} was not ready within ${READY_TIMEOUT_MS} ms`, stderr)), READY_TIMEOUT_MS);
    const done = (): void => {
      clearTimeout(timer);
      resolve();
    };
    void exited.then(() => {
      clearTimeout(timer);
      reject(new StartError(`${command} exited before it was ready (code ${String(child.exitCode)})`, stderr));
    });
    if (options.listeningLines > 0) {
      let pending = '';
      let seen = 0;
      child.stdout?.setEncoding('utf8');
      child.stdout?.on('data', (chunk: string) => {
        pending += chunk;
        let newline: number;
        while ((newline = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, newline);
          pending = pending.slice(newline + 1);
          if (!line.includes('"listening"')) continue;
          const parsed = JSON.parse(line) as { msg?: unknown; port?: unknown };
          if (parsed.msg !== 'listening' || typeof parsed.port !== 'number') continue;
          if (seen === 0) port = parsed.port;
          seen += 1;
          if (seen === options.listeningLines) done();
        }
      });
    } else {
      child.stdout?.resume();
      const readyPort = options.readyPort ?? 0;
      port = readyPort;
      void (async () => {
        while (running()) {
          if (await canConnect(readyPort)) {
            done();
            return;
          }
          await sleep(5);
        }
      })();
    }
  });
  try {
    await ready;
  } catch (err) {
    for (const p of remember()) kill(p);
    throw err;
  }
  const coldStartMs = performance.now() - started;
  remember();

  return {
    pid,
    child,
    coldStartMs,
    port,
    stderr: () => stderr,
    tree: remember,
    memory: () => sumMemory(remember()),
    cpuSeconds: () => remember().reduce((sum, p) => sum + cpuSeconds(p), 0),
    minorFaults: () => remember().reduce((sum, p) => sum + minorFaults(p), 0),
    alive: running,
    async stop() {
      const tree = running() ? remember() : [...known];
      if (running()) child.kill('SIGTERM');
      const deadline = sleep(STOP_GRACE_MS).then(() => 'timeout' as const);
      await Promise.race([exited, deadline]);
      for (const p of new Set([...tree, ...known])) kill(p);
      await exited;
      for (const p of known) live.delete(p);
    },
  };
}

export interface ToolResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs a short-lived tool (wrk) to completion, tracked like every other process so that an
 * interrupted bench kills it too; SIGKILL after `timeoutMs`.
 */
export function runTool(command: string, args: readonly string[], prefix: readonly string[], timeoutMs: number): Promise<ToolResult> {
  const [head, ...rest] = [...prefix, command, ...args];
  const child = spawn(head ?? command, rest, { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  const { pid } = child;
  if (pid !== undefined) track(pid);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.on('data', (chunk: string) => {
    stderr += chunk;
  });
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      stderr += `killed after ${timeoutMs} ms\n`;
      if (pid !== undefined) kill(pid);
    }, timeoutMs);
    let settled = false;
    const settle = (code: number | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (pid !== undefined) live.delete(pid);
      resolve({ code, stdout, stderr });
    };
    // A spawn failure (ENOENT) emits 'error' and may not emit 'close'.
    child.once('error', (err) => {
      stderr += `${err.message}\n`;
      settle(null);
    });
    child.once('close', (code) => settle(code));
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** A free loopback port (for nginx and Caddy, which cannot report the one they bound). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
