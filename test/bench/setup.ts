/**
 * What a run needs before its first cell: the tools found (wrk required; Caddy and nginx when
 * installed), the cores pinned, and the upstreams started on the load core. Also the header of
 * the report, which says all of that.
 */
import { existsSync, readFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { type CaddyBinary, findCaddy } from './caddy.js';
import type { RunState, Upstreams } from './cells.js';
import { type H2loadBinary, findH2load, h2loadRunner } from './h2load.js';
import { type NginxBinary, findNginx, startNginx, upstreamConfig } from './nginx.js';
import { type BenchOptions, UsageError } from './options.js';
import { type Pinning, setUpPinning } from './pinning.js';
import { type Spawned, spawnProcess } from './processes.js';
import { LOAD_SCENARIOS, type LoadScenario } from './scenarios.js';
import { H2_UPSTREAM, ROOT, TARGET_LABELS, bareAvailable } from './targets.js';
import { type WrkBinary, findWrk, wrkRunner } from './wrk.js';

export class SetupError extends Error {}

export interface Tools {
  readonly wrk: WrkBinary;
  readonly nginx: NginxBinary | undefined;
  readonly caddy: CaddyBinary | undefined;
  /** For the HTTP/2 scenarios; without it they are skipped. */
  readonly h2load: H2loadBinary | undefined;
  readonly pinning: Pinning;
}

export function findTools(options: BenchOptions): Tools {
  if (!existsSync(join(ROOT, 'bin', 'metrics-proxy.js')) || !existsSync(join(ROOT, 'dist'))) throw new SetupError('dist/ is missing; run `npm run build` first');
  const wrk = findWrk();
  if (wrk === undefined) throw new SetupError('wrk is not installed (apt-get install wrk)');
  return { wrk, nginx: options.nginx ? findNginx() : undefined, caddy: findCaddy(), h2load: findH2load(), pinning: setUpPinning(options.pin) };
}

/** The load scenarios of this run; with --profile, the ones profiled. */
export function selectedScenarios(options: BenchOptions): LoadScenario[] {
  return LOAD_SCENARIOS.filter((s) => options.scenarios.includes(s.id));
}

/** The HTTP/2 upstream, on the load core, when a scenario of the run needs it. */
async function startH2Upstream(options: BenchOptions, tools: Tools): Promise<Spawned | undefined> {
  const needed = selectedScenarios(options).some((s) => s.upstream === 'h2' || s.directUpstream === 'h2');
  if (!needed || tools.h2load === undefined) return undefined;
  return spawnProcess(process.execPath, [H2_UPSTREAM], { cwd: ROOT, listeningLines: 1, prefix: tools.pinning.prefix('load') });
}

async function startUpstreams(options: BenchOptions, tools: Tools): Promise<Upstreams> {
  const prefix = tools.pinning.prefix('load');
  const node = await spawnProcess(process.execPath, [join(ROOT, 'test', 'bench', 'upstream.mjs')], { cwd: ROOT, listeningLines: 1, prefix });
  const nodeUrl = new URL(`http://127.0.0.1:${node.port}`);
  const started: Spawned[] = [node];
  try {
    const h2 = await startH2Upstream(options, tools);
    if (h2 !== undefined) started.push(h2);
    const h2Url = h2 === undefined ? undefined : new URL(`http://127.0.0.1:${h2.port}`);
    const wantNginx = options.upstream === 'nginx' || (options.upstream === 'auto' && tools.nginx !== undefined);
    if (!wantNginx) return { http: nodeUrl, node: nodeUrl, httpKind: 'node', h2: h2Url, processes: started };
    if (tools.nginx === undefined) throw new UsageError('--upstream nginx: nginx is not installed');
    const upstream = await startNginx(tools.nginx, upstreamConfig, prefix, { '16k.bin': Buffer.alloc(16 * 1024, 0x61) });
    return { http: new URL(upstream.url), node: nodeUrl, httpKind: 'nginx', h2: h2Url, processes: [...started, upstream] };
  } catch (err) {
    for (const p of started) await p.stop();
    throw err;
  }
}

/** Starts the upstreams and returns the state of an empty run; its upstreams must be stopped by the caller. */
export async function prepareRun(options: BenchOptions, tools: Tools): Promise<RunState> {
  const upstreams = await startUpstreams(options, tools);
  const state: RunState = {
    options,
    upstreams,
    nginx: tools.nginx,
    caddy: tools.caddy,
    pinning: tools.pinning,
    wrk: wrkRunner(tools.wrk, tools.pinning.prefix('load')),
    h2load: tools.h2load === undefined ? undefined : h2loadRunner(tools.h2load, tools.pinning.prefix('load')),
    unavailable: new Map(),
    cells: [],
    coldStarts: new Map(),
  };
  if (tools.nginx === undefined && options.targets.includes('nginx')) {
    state.unavailable.set('nginx', options.nginx ? 'nginx is not installed (apt-get install nginx-light)' : 'left out (--no-nginx)');
  }
  if (tools.caddy === undefined && options.targets.includes('caddy')) state.unavailable.set('caddy', 'Caddy is not installed (apt-get install caddy)');
  if (!bareAvailable() && options.targets.includes('bare')) state.unavailable.set('bare', 'http-proxy (devDependency) is not installed: npm install');
  return state;
}

export function cpuModel(): string {
  const all = cpus();
  return `${all.length} × ${all[0]?.model.trim() ?? 'unknown CPU'}`;
}

export function packageVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '?';
  }
}

/** Cells one round will run (targets that are known to be unavailable left out). */
export function cellsPerRound(state: RunState): number {
  const { options } = state;
  const runnable = options.targets.filter((t) => !state.unavailable.has(t));
  return runnableScenarios(state).reduce((n, s) => n + runnable.filter((t) => s.targets.includes(t)).length, 0);
}

/** The selected load scenarios this machine can run (the HTTP/2 ones need h2load). */
export function runnableScenarios(state: RunState): LoadScenario[] {
  return selectedScenarios(state.options).filter((s) => s.protocol === undefined || state.h2load !== undefined);
}

export function header(state: RunState, tools: Tools, startedAt: Date): string {
  const { options, upstreams } = state;
  const nodeUpstream = 'a Node process (test/bench/upstream.mjs)';
  return [
    `# metrics-proxy bench, ${startedAt.toISOString()}`,
    '',
    ...(options.quick ? ['**--quick: one short round, a smoke test of the bench; do not quote these figures.**', ''] : []),
    `- machine: ${cpuModel()}, Linux ${release()}, node ${process.version}`,
    `- pinning: ${tools.pinning.describe()}`,
    `- load: ${tools.wrk.version} (\`wrk -t1\`, own process) for the saturation scenarios; for the fixed rate, an open-loop node:http client ` +
      'in the bench process; for WebSocket, `ws` clients in the bench process',
    ...(selectedScenarios(options).some((s) => s.protocol !== undefined)
      ? [
          `- HTTP/2: ${tools.h2load === undefined ? '**h2load is not installed (apt-get install nghttp2-client): the HTTP/2 scenarios were skipped**' : `${tools.h2load.version} (\`h2load -t1\`, own process, h2c prior knowledge)`}; ` +
            'the HTTP/2 upstream is a Node node:http2 process (test/bench/h2-upstream.mjs, h2c); Caddy adds `protocols h1 h2c` ' +
            '(and `reverse_proxy h2c://` for gRPC), nginx `listen … http2` (and `grpc_pass grpc://` for gRPC)',
        ]
      : []),
    `- upstream: ${upstreams.httpKind === 'nginx' ? `nginx (${tools.nginx?.version ?? ''}, 1 worker) for the HTTP scenarios, ${nodeUpstream} for WebSocket and uploads` : `${nodeUpstream} for everything`}`,
    `- systems: ${TARGET_LABELS.bare} = http-proxy ${packageVersion('http-proxy')} with the same agent as metrics-proxy; ` +
      `${TARGET_LABELS.caddy} = ${tools.caddy === undefined ? 'not installed' : `${tools.caddy.version}, GOMAXPROCS=1, \`servers { metrics }\``}; ` +
      `nginx = ${tools.nginx === undefined ? (options.nginx ? 'not installed' : 'left out (--no-nginx)') : `${tools.nginx.version}, 1 worker, upstream keep-alive 256`}; ` +
      `${TARGET_LABELS['node-floor']} = the Node upstream itself on the proxy core (the floor under any Node proxy)`,
    ...(options.mpArgs.length === 0 ? [] : [`- **metrics-proxy started with \`${options.mpArgs.join(' ')}\`** (--mp-args) in every ${options.profile ? 'profile' : 'load cell'}`]),
    options.profile
      ? `- profile: \`node --cpu-prof\` on the proxy core, under ${selectedScenarios(options).map((s) => `${s.id} (${s.generator})`).join(', ')}, ` +
        `${options.warmUpS} s warm-up, then ${options.durationS} s measured; ` +
        'only the samples of the measured window are counted; self time per request (µs) = sampled time ÷ requests completed in the window'
      : `- ${options.rounds} interleaved round(s), the order of systems rotated each round; each cell: a fresh process, ${options.warmUpS} s warm-up, ` +
        `${options.durationS} s measured; figures are medians over rounds (peak RSS: the highest), comparisons are medians of ratios within a round`,
  ].join('\n');
}
