/**
 * The `--workers` scrape at the full route budget, end to end over HTTP against the built bin:
 * `--workers 2 --max-routes 2000` (seed + standard families, native histograms on: the defaults),
 * every route of the budget learned by both workers, then the median of 20 scrapes per format.
 *
 *   npm run build && npx tsx test/bench/cluster-scrape.ts [--routes 2000] [--scrapes 20] [--workers 2]
 *
 * Each scrape is one fresh connection, so the primary hands them to the workers in turn: both
 * workers' side of the scrape (asking the primary, waiting for its answer) is measured.
 */
import { spawn } from 'node:child_process';
import { Agent, type Server, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { median } from './stats.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(ROOT, 'bin', 'metrics-proxy.js');
const ACCEPT = {
  text: 'text/plain;version=0.0.4',
  openmetrics: 'application/openmetrics-text;version=1.0.0',
  protobuf: 'application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3',
} as const;
type Format = keyof typeof ACCEPT;
const CONCURRENCY = 16;

interface Answer {
  readonly status: number;
  readonly body: Buffer;
  readonly contentType: string;
  readonly ms: number;
}

/** One GET, by default on a connection of its own (the cluster's primary deals connections out to the workers in turn). */
function get(base: string, path: string, accept?: string, agent: Agent | false = false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = request(new URL(path, base), { agent, headers: accept === undefined ? {} : { accept } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), contentType: String(res.headers['content-type']), ms: performance.now() - started }),
      );
      res.on('error', reject);
    });
    req.setTimeout(30_000, () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

async function startUpstream(): Promise<{ server: Server; url: string }> {
  const server = createServer((_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** The bin with `--workers`; resolves with its port once every worker printed its `listening` line. */
function startProxy(upstream: string, workers: number, routes: number): Promise<{ pid: number; url: string; stop(): Promise<void> }> {
  const args = [BIN, '--host', '127.0.0.1', '--port', '0', '--upstream', upstream, '--workers', String(workers), '--max-routes', String(routes)];
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    child.kill('SIGTERM');
    await exited;
  };
  return new Promise((resolve, reject) => {
    let out = '';
    let listening = 0;
    child.once('exit', (code) => reject(new Error(`the proxy exited (${code}) before listening`)));
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
      let newline: number;
      while ((newline = out.indexOf('\n')) >= 0) {
        const line = out.slice(0, newline);
        out = out.slice(newline + 1);
        const port = /"msg":"listening"/.test(line) ? /"port":(\d+)/.exec(line)?.[1] : undefined;
        if (port !== undefined && ++listening === workers) resolve({ pid: child.pid as number, url: `http://127.0.0.1:${port}`, stop });
      }
    });
  });
}

/** A keep-alive connection of its own: it stays with the worker the primary handed it to. */
function connection(): Agent {
  return new Agent({ keepAlive: true, maxSockets: 1 });
}

/** The routes the worker behind `agent` has learned. */
async function routesOf(base: string, agent: Agent): Promise<Set<string>> {
  const answer = await get(base, '/metrics/routes', undefined, agent);
  const { routes } = JSON.parse(answer.body.toString('utf8')) as { routes: Array<{ route: string }> };
  return new Set(routes.map((r) => r.route));
}

/**
 * Keep-alive connections, grouped by the worker behind them: a connection whose worker has not
 * learned any group's marker route yet marks it with one of the paths to fill (so no route is wasted).
 */
async function connectionsByWorker(base: string, paths: readonly string[], workers: number): Promise<Agent[][]> {
  const groups: Array<{ marker: string; agents: Agent[] }> = [];
  for (let i = 0; groups.reduce((n, g) => n + g.agents.length, 0) < CONCURRENCY * workers && i < 64 * workers; i++) {
    const agent = connection();
    const known = await routesOf(base, agent);
    const group = groups.find((g) => known.has(g.marker));
    if (group !== undefined) {
      if (group.agents.length < CONCURRENCY) group.agents.push(agent);
      else agent.destroy();
      continue;
    }
    const marker = paths[groups.length] as string;
    await get(base, marker, undefined, agent);
    groups.push({ marker, agents: [agent] });
  }
  if (groups.length !== workers) throw new Error(`found ${groups.length} workers behind the port, expected ${workers}`);
  return groups.map((g) => g.agents);
}

/** Every path over each of `agents` (one request at a time on each). */
async function requestAll(base: string, paths: readonly string[], agents: readonly Agent[]): Promise<void> {
  let next = 0;
  const worker = async (agent: Agent): Promise<void> => {
    for (let path = paths[next++]; path !== undefined; path = paths[next++]) {
      const { status } = await get(base, path, undefined, agent);
      if (status !== 200) throw new Error(`GET ${path}: ${status}`);
    }
  };
  await Promise.all(agents.map(worker));
}

/** /api/r1 … /api/rN (one inferred route each: a letter makes `r1` a name, not an id), all of them through every worker. */
async function fillRoutes(base: string, routes: number, workers: number): Promise<void> {
  const paths = Array.from({ length: routes }, (_, i) => `/api/r${i + 1}`);
  const groups = await connectionsByWorker(base, paths, workers);
  try {
    for (const agents of groups) {
      await requestAll(base, paths, agents);
      const known = await routesOf(base, agents[0] as Agent);
      if (known.size < routes) throw new Error(`a worker learned ${known.size} routes of ${routes}`);
    }
  } finally {
    for (const agents of groups) for (const agent of agents) agent.destroy();
  }
}

async function timeScrapes(base: string, format: Format, count: number): Promise<{ medianMs: number; bytes: number; contentType: string }> {
  const times: number[] = [];
  let last: Answer | undefined;
  for (let i = 0; i < count + 2; i++) {
    last = await get(base, '/metrics', ACCEPT[format]);
    if (last.status !== 200) throw new Error(`/metrics (${format}) answered ${last.status}`);
    if (i >= 2) times.push(last.ms); // two to warm up, one per worker
  }
  return { medianMs: median(times), bytes: last?.body.length ?? 0, contentType: last?.contentType ?? '' };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { routes: { type: 'string' }, scrapes: { type: 'string' }, workers: { type: 'string' } } });
  const routes = Number(values.routes ?? 2000);
  const scrapes = Number(values.scrapes ?? 20);
  const workers = Number(values.workers ?? 2);
  const upstream = await startUpstream();
  const proxy = await startProxy(upstream.url, workers, routes);
  try {
    await fillRoutes(proxy.url, routes, workers);
    console.log(`${workers} workers, ${routes} routes known to each, median of ${scrapes} scrapes:`);
    for (const format of ['text', 'openmetrics', 'protobuf'] as const) {
      const { medianMs, bytes, contentType } = await timeScrapes(proxy.url, format, scrapes);
      console.log(`  ${format.padEnd(11)} ${medianMs.toFixed(1).padStart(7)} ms  ${String(bytes).padStart(9)} bytes  ${contentType}`);
    }
  } finally {
    await proxy.stop();
    upstream.server.close();
  }
}

await main();
