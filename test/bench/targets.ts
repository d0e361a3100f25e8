/**
 * What the load is sent to. Every target except `direct` is a fresh process per measurement:
 * started, timed to ready (cold start), measured, stopped.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type NginxBinary, proxyConfig, startNginx } from './nginx.js';
import { type Spawned, StartError, spawnProcess } from './processes.js';
import type { Memory } from './proc.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(ROOT, 'bin', 'metrics-proxy.js');
const BARE = join(ROOT, 'test', 'bench', 'bare-proxy.mjs');

export const TARGET_IDS = ['direct', 'bare', 'mp', 'mp-w2', 'nginx', 'mp-nometrics'] as const;
export type TargetId = (typeof TARGET_IDS)[number];
/** `mp-nometrics` (`--metrics none`) is a diagnostic: it splits the cost of metrics from the rest of the proxy. */
export const DEFAULT_TARGETS: readonly TargetId[] = ['direct', 'bare', 'mp', 'mp-w2', 'nginx'];

export const TARGET_LABELS: Record<TargetId, string> = {
  direct: 'direct',
  bare: 'bare http-proxy',
  mp: 'metrics-proxy',
  'mp-w2': 'metrics-proxy --workers 2',
  nginx: 'nginx',
  'mp-nometrics': 'metrics-proxy --metrics none',
};

/** A target that cannot run on this machine or build; its column reads n/a with this reason. */
export class Unavailable extends Error {}

export interface RunningTarget {
  readonly id: TargetId;
  readonly url: string;
  /** Undefined for `direct` (no process of its own). */
  readonly coldStartMs: number | undefined;
  /** Summed over the target's processes; undefined for `direct`. */
  memory(): Memory | undefined;
  /** CPU seconds used so far by the target's processes; undefined for `direct`. */
  cpuSeconds(): number | undefined;
  /** False once a target process has died. */
  alive(): boolean;
  stop(): Promise<void>;
}

export interface TargetContext {
  readonly nginx: NginxBinary | undefined;
  /** Where WebSocket sessions go (nginx routes /api/ws there; the others get it as their upstream in the WS scenario). */
  readonly wsUpstream: URL;
}

function fromSpawned(id: TargetId, spawned: Spawned, url: string): RunningTarget {
  return {
    id,
    url,
    coldStartMs: spawned.coldStartMs,
    memory: spawned.memory,
    cpuSeconds: spawned.cpuSeconds,
    alive: spawned.alive,
    stop: spawned.stop,
  };
}

async function startMetricsProxy(id: TargetId, upstream: URL, extra: readonly string[], listeningLines: number): Promise<RunningTarget> {
  const args = [BIN, '--host', '127.0.0.1', '--port', '0', '--upstream', upstream.href, ...extra];
  try {
    const spawned = await spawnProcess(process.execPath, args, { cwd: ROOT, listeningLines });
    return fromSpawned(id, spawned, `http://127.0.0.1:${spawned.port}`);
  } catch (err) {
    // The CLI refuses an option it does not know (or a value it does not accept) with one line naming it.
    const stderr = err instanceof StartError ? err.stderr.trim() : '';
    const flag = extra.find((a) => a.startsWith('--'));
    if (flag !== undefined && stderr.includes(flag)) throw new Unavailable(`${flag} not accepted: ${stderr.split('\n')[0] ?? ''}`);
    throw err;
  }
}

export async function startTarget(id: TargetId, upstream: URL, ctx: TargetContext): Promise<RunningTarget> {
  switch (id) {
    case 'direct':
      return {
        id,
        url: upstream.origin,
        coldStartMs: undefined,
        memory: () => undefined,
        cpuSeconds: () => undefined,
        alive: () => true,
        stop: async () => {},
      };
    case 'bare': {
      const spawned = await spawnProcess(process.execPath, [BARE, upstream.href], { cwd: ROOT, listeningLines: 1 });
      return fromSpawned(id, spawned, `http://127.0.0.1:${spawned.port}`);
    }
    case 'mp':
      return startMetricsProxy(id, upstream, [], 1);
    case 'mp-w2':
      return startMetricsProxy(id, upstream, ['--workers', '2'], 2);
    case 'mp-nometrics':
      return startMetricsProxy(id, upstream, ['--metrics', 'none'], 1);
    case 'nginx': {
      if (ctx.nginx === undefined) throw new Unavailable('nginx is not installed (apt-get install nginx)');
      const nginx = await startNginx(ctx.nginx, (dir, port) => proxyConfig(dir, port, upstream, ctx.wsUpstream));
      return fromSpawned(id, nginx, nginx.url);
    }
  }
}
