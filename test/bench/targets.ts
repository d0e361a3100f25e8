/**
 * The systems the load is sent to ("targets"). Every one except `direct` is a fresh process per
 * measurement, pinned to the proxy core: started, timed to ready (cold start), measured, stopped.
 * metrics-proxy is run as users run it, the bin with the Node flags of its `#!` line (as npx and the
 * container start it) on the built dist/, whatever engine is inside.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CaddyBinary, startCaddy } from './caddy.js';
import { type NginxBinary, h2ProxyConfig, proxyConfig, startNginx } from './nginx.js';
import { type Spawned, StartError, spawnProcess } from './processes.js';
import type { Memory } from './proc.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(ROOT, 'bin', 'metrics-proxy.js');
/**
 * What the bin's `#!/usr/bin/env -S NAME=value … node flags…` line gives the process: the
 * environment assignments before `node` (the allocator setting) and the flags after it (heap
 * sizing), so the bench runs what users run.
 */
const BIN_SHEBANG = /^#!\S*env -S ((?:\S+=\S*\s+)*)node\b(.*)$/.exec(readFileSync(BIN, 'utf8').split('\n')[0] ?? '');
if (BIN_SHEBANG === null) throw new Error(`${BIN}: the bench reads its #! line as env -S [NAME=value ...] node [flags ...], and it is not`);
const words = (text: string | undefined): string[] => (text ?? '').trim().split(/\s+/).filter((w) => w !== '');
const BIN_NODE_FLAGS = words(BIN_SHEBANG?.[2]);
const BIN_ENV: Record<string, string> = Object.fromEntries(words(BIN_SHEBANG?.[1]).map((w) => [w.slice(0, w.indexOf('=')), w.slice(w.indexOf('=') + 1)]));
const BARE = join(ROOT, 'test', 'bench', 'bare-proxy.mjs');
const NODE_UPSTREAM = join(ROOT, 'test', 'bench', 'upstream.mjs');
export const H2_UPSTREAM = join(ROOT, 'test', 'bench', 'h2-upstream.mjs');

export const TARGET_IDS = ['direct', 'node-floor', 'bare', 'mp', 'caddy', 'nginx', 'mp-nometrics'] as const;
export type TargetId = (typeof TARGET_IDS)[number];
/** `mp-nometrics` (`--metrics none`) is a diagnostic: it splits the cost of metrics from the rest of the proxy. */
export const DEFAULT_TARGETS: readonly TargetId[] = ['direct', 'node-floor', 'bare', 'mp', 'caddy', 'nginx'];
/** Targets that are a Node process (what --profile can profile). */
export const NODE_TARGETS: readonly TargetId[] = ['node-floor', 'bare', 'mp', 'mp-nometrics'];

export const TARGET_LABELS: Record<TargetId, string> = {
  direct: 'direct (no proxy)',
  'node-floor': 'Node answering by itself',
  bare: 'bare http-proxy',
  mp: 'metrics-proxy',
  caddy: 'Caddy (metrics on)',
  nginx: 'nginx',
  'mp-nometrics': 'metrics-proxy --metrics none',
};

/**
 * The HTTP/2 scenarios: `h2` = clients speak h2c to the target, which goes upstream as it does by
 * default (HTTP/1.1); `grpc` = gRPC calls over h2c, and h2c upstream as well.
 */
export type Protocol = 'h2' | 'grpc';

/** A target that cannot run on this machine or build; its column reads n/a with this reason. */
export class Unavailable extends Error {}

export interface RunningTarget {
  readonly id: TargetId;
  readonly url: string;
  /** The top process; undefined for `direct` (no process of its own). */
  readonly pid: number | undefined;
  /** What the target wrote to stderr so far ('' for `direct`). */
  readonly stderr: () => string;
  /** Undefined for `direct` (no process of its own). */
  readonly coldStartMs: number | undefined;
  /** Summed over the target's processes; undefined for `direct`. */
  readonly memory: () => Memory | undefined;
  /** CPU seconds used so far by the target's processes; undefined for `direct`. */
  readonly cpuSeconds: () => number | undefined;
  /** Minor page faults taken so far by the target's processes; undefined for `direct`. */
  readonly minorFaults: () => number | undefined;
  /** False once a target process has died. */
  readonly alive: () => boolean;
  /** After a measurement: undefined when the target did what it is meant to (Caddy: metrics recorded), else why not. */
  readonly verify: () => Promise<string | undefined>;
  readonly stop: () => Promise<void>;
}

export interface TargetContext {
  readonly nginx: NginxBinary | undefined;
  readonly caddy: CaddyBinary | undefined;
  /** Where WebSocket sessions go (nginx routes /api/ws there; the others get it as their upstream in the WS scenario). */
  readonly wsUpstream: URL;
  /** `taskset -c <proxy core>` or nothing. */
  readonly prefix: readonly string[];
  /** Extra node options in front of the script (--profile: --cpu-prof ...). */
  readonly nodeOptions?: readonly string[];
  /** Set for the HTTP/2 scenarios (undefined: HTTP/1.1). */
  readonly protocol?: Protocol;
  /** More flags for metrics-proxy (the full-budget scrape: --max-routes 2000, …). */
  readonly mpArgs?: readonly string[];
}

function fromSpawned(id: TargetId, spawned: Spawned, url: string, verify = (): Promise<string | undefined> => Promise.resolve(undefined)): RunningTarget {
  return {
    id,
    url,
    pid: spawned.pid,
    stderr: spawned.stderr,
    coldStartMs: spawned.coldStartMs,
    memory: spawned.memory,
    cpuSeconds: spawned.cpuSeconds,
    minorFaults: spawned.minorFaults,
    alive: spawned.alive,
    verify,
    stop: spawned.stop,
  };
}

async function startNode(id: TargetId, script: string, args: readonly string[], ctx: TargetContext): Promise<RunningTarget> {
  const bin = script === BIN;
  const spawned = await spawnProcess(process.execPath, [...(bin ? BIN_NODE_FLAGS : []), ...(ctx.nodeOptions ?? []), script, ...args], {
    cwd: ROOT,
    listeningLines: 1,
    prefix: ctx.prefix,
    env: bin ? BIN_ENV : {},
  });
  return fromSpawned(id, spawned, `http://127.0.0.1:${spawned.port}`);
}

async function startMetricsProxy(id: TargetId, upstream: URL, extra: readonly string[], ctx: TargetContext): Promise<RunningTarget> {
  try {
    return await startNode(id, BIN, ['--host', '127.0.0.1', '--port', '0', '--upstream', upstream.href, ...extra], ctx);
  } catch (err) {
    // The CLI refuses an option it does not know (or a value it does not accept) with one line naming it.
    const stderr = err instanceof StartError ? err.stderr.trim() : '';
    const flag = extra.find((a) => a.startsWith('--'));
    if (flag !== undefined && stderr.includes(flag)) throw new Unavailable(`${flag} not accepted: ${stderr.split('\n')[0] ?? ''}`);
    throw err;
  }
}

/** The devDependency the bare baseline needs. */
export function bareAvailable(): boolean {
  return existsSync(join(ROOT, 'node_modules', 'http-proxy', 'package.json'));
}

export async function startTarget(id: TargetId, upstream: URL, ctx: TargetContext): Promise<RunningTarget> {
  switch (id) {
    case 'direct':
      return {
        id,
        url: upstream.origin,
        pid: undefined,
        stderr: () => '',
        coldStartMs: undefined,
        memory: () => undefined,
        cpuSeconds: () => undefined,
        minorFaults: () => undefined,
        alive: () => true,
        verify: () => Promise.resolve(undefined),
        stop: async () => {},
      };
    case 'node-floor':
      // The bench's own upstream, answering by itself on the proxy core: what one Node process
      // does per request with no proxying at all, the floor under any Node proxy (for the
      // HTTP/2 scenarios, the HTTP/2 upstream).
      return startNode(id, ctx.protocol === undefined ? NODE_UPSTREAM : H2_UPSTREAM, [], ctx);
    case 'bare':
      if (!bareAvailable()) throw new Unavailable('http-proxy (devDependency) is not installed: npm install');
      return startNode(id, BARE, [upstream.href], ctx);
    case 'mp':
      return startMetricsProxy(id, upstream, ctx.mpArgs ?? [], ctx);
    case 'mp-nometrics':
      return startMetricsProxy(id, upstream, ['--metrics', 'none', ...(ctx.mpArgs ?? [])], ctx);
    case 'caddy': {
      if (ctx.caddy === undefined) throw new Unavailable('Caddy is not installed (apt-get install caddy)');
      const caddy = await startCaddy(ctx.caddy, upstream, ctx.prefix, ctx.protocol);
      return fromSpawned(id, caddy, caddy.url, caddy.verifyMetrics);
    }
    case 'nginx': {
      if (ctx.nginx === undefined) throw new Unavailable('nginx is not installed (apt-get install nginx-light)');
      const { protocol } = ctx;
      const config = (dir: string, port: number): string =>
        protocol === undefined ? proxyConfig(dir, port, upstream, ctx.wsUpstream) : h2ProxyConfig(dir, port, upstream, protocol);
      const nginx = await startNginx(ctx.nginx, config, ctx.prefix);
      return fromSpawned(id, nginx, nginx.url);
    }
  }
}
