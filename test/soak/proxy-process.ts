/**
 * The proxy under test: the real bin (`node bin/metrics-proxy.js`, which runs
 * dist/), spawned as a child. The bound port comes from its first stdout line,
 * the pino `listening` line. That line is logged at `info`, so the proxy runs
 * at `--log-level info` (at `warn` it would never tell its port); nothing on
 * the request path logs at `info` unless a timeout fires. Later lines are
 * counted by level and the first few kept for the report.
 *
 * Node runs it with `--inspect=127.0.0.1:0` (nothing else changes): the
 * inspector is the one way to make another process run a full GC, without
 * which its heap figure is mostly young-generation garbage (see probe.ts).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(ROOT, 'bin', 'metrics-proxy.js');
const LISTEN_TIMEOUT_MS = 10_000;
const KEEP_LOG_LINES = 20;

export interface ProxyLogLine {
  readonly level: number | undefined;
  readonly msg: string | undefined;
  readonly line: string;
}

export interface ProxyProcess {
  readonly pid: number;
  readonly url: string;
  readonly args: readonly string[];
  /** The inspector's WebSocket URL, or undefined if it did not announce one. */
  inspectorUrl(): string | undefined;
  /** Stdout lines after `listening`: the first few, how many in all, and how many at warn (40) or above. */
  readonly logs: { readonly first: ProxyLogLine[]; count: number; warnOrAbove: number };
  stderr(): string;
  isRunning(): boolean;
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  stop(graceMs?: number): Promise<void>;
  /** Synchronous last resort for process 'exit' handlers. */
  killNow(): void;
}

export function distIsBuilt(): boolean {
  return existsSync(join(ROOT, 'dist', 'cli', 'main.js'));
}

/** This process's environment without METRICS_PROXY_*: only the flags below configure the proxy. */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('METRICS_PROXY_')) env[name] = value;
  return env;
}

function isAlive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

export async function spawnProxy(upstreamUrl: string): Promise<ProxyProcess> {
  const args = ['--host', '127.0.0.1', '--port', '0', '--upstream', upstreamUrl, '--log-level', 'info'];
  const nodeArgs = ['--inspect=127.0.0.1:0'];
  const child = spawn(process.execPath, [...nodeArgs, BIN, ...args], { cwd: ROOT, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  const { pid } = child;
  if (pid === undefined) throw new Error('spawning the proxy failed: no pid');
  let spawnError: Error | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', (err) => {
      spawnError = err;
      resolve();
    });
  });
  const killNow = (): void => {
    if (!isAlive(child)) return;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };

  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderr += chunk;
  });
  const logs: ProxyProcess['logs'] = { first: [], count: 0, warnOrAbove: 0 };
  let pending = '';
  let onFirstLine: ((line: string) => void) | undefined;
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    pending += chunk;
    let newline: number;
    while ((newline = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      if (onFirstLine !== undefined) {
        const resolveFirst = onFirstLine;
        onFirstLine = undefined;
        resolveFirst(line);
        continue;
      }
      const described = describeLine(line);
      logs.count += 1;
      if ((described.level ?? 50) >= 40) logs.warnOrAbove += 1;
      if (logs.first.length < KEEP_LOG_LINES) logs.first.push(described);
    }
  });

  let timer: NodeJS.Timeout | undefined;
  try {
    const first = await new Promise<string>((resolve, reject) => {
      onFirstLine = resolve;
      timer = setTimeout(() => reject(new Error(`the proxy did not log "listening" within ${LISTEN_TIMEOUT_MS} ms`)), LISTEN_TIMEOUT_MS);
      void exited.then(() => reject(new Error(`the proxy exited before listening (code ${child.exitCode}): ${spawnError?.message ?? stderr.trim()}`)));
    });
    const log = JSON.parse(first) as Record<string, unknown>;
    if (log.msg !== 'listening' || typeof log.port !== 'number') throw new Error(`unexpected first log line from the proxy: ${first}`);
    return {
      pid,
      url: `http://127.0.0.1:${log.port}`,
      args: [...nodeArgs, 'bin/metrics-proxy.js', ...args],
      inspectorUrl: () => /Debugger listening on (ws:\/\/\S+)/.exec(stderr)?.[1],
      logs,
      // Without the inspector's own chatter: what is left is the proxy's.
      stderr: () => stderr.replace(/^(Debugger listening on|For help, see:|Debugger attached|Waiting for the debugger).*\n/gm, ''),
      isRunning: () => isAlive(child),
      killNow,
      async stop(graceMs = 5_000) {
        if (!isAlive(child)) return;
        child.kill('SIGTERM');
        const deadline = setTimeout(killNow, graceMs);
        await exited;
        clearTimeout(deadline);
      },
    };
  } catch (err) {
    killNow();
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

function describeLine(line: string): ProxyLogLine {
  try {
    const parsed = JSON.parse(line) as { level?: unknown; msg?: unknown };
    return {
      level: typeof parsed.level === 'number' ? parsed.level : undefined,
      msg: typeof parsed.msg === 'string' ? parsed.msg : undefined,
      line,
    };
  } catch {
    return { level: undefined, msg: undefined, line };
  }
}
