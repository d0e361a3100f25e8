/**
 * A real Prometheus for end-to-end metric tests (Debian's `prometheus` package; .ci/run installs it):
 * promtool's linter over an exposition, and a server on a free loopback port that scrapes the given
 * targets and answers PromQL over its HTTP API. Processes are killed by pid; nothing outlives `close`.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

export interface PrometheusTools {
  readonly prometheus: string;
  readonly promtool: string;
}

export interface ScrapeTarget {
  readonly job: string;
  /** host:port */
  readonly address: string;
  readonly metricsPath?: string;
  readonly bearerToken?: string;
}

export interface PrometheusOptions {
  /** Also the rule evaluation interval. */
  readonly scrapeIntervalSeconds?: number;
  readonly targets: readonly ScrapeTarget[];
  /** Absolute paths of rule files to load. */
  readonly ruleFiles?: readonly string[];
  /** Scrape configs added as they are, after those of `targets` (e.g. one with file_sd_configs and relabel_configs). */
  readonly scrapeConfigs?: readonly object[];
  /**
   * Store native histograms: 2.40–3.7 with --enable-feature=native-histograms, 3.8+ with the global
   * scrape_native_histograms. Prometheus then asks for the protobuf exposition first.
   */
  readonly nativeHistograms?: boolean;
}

export interface PromSample {
  readonly metric: Record<string, string>;
  readonly value: number;
}

export interface RunningPrometheus {
  readonly url: string;
  /** An instant query, evaluated now; a scalar result comes back as one sample without labels. */
  query(promql: string): Promise<PromSample[]>;
  /** The `data` of /api/v1/query_exemplars. */
  queryExemplars(promql: string, startSec: number, endSec: number): Promise<unknown>;
  /** The `data` of any GET endpoint of the HTTP API (`/api/v1/rules`, `/api/v1/alerts`…); throws unless it succeeded. */
  api(path: string, params?: Record<string, string>): Promise<unknown>;
  /**
   * Resolves once every target of `job` has had `count` successful scrapes that started after this call,
   * and whose samples are therefore queryable and include everything the target counted before it.
   */
  waitForScrapes(job: string, count: number, timeoutMs?: number): Promise<void>;
  /** A function property, so that `onTestFinished(prometheus.close)` needs no binding. */
  readonly close: () => Promise<void>;
}

function executable(name: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(delimiter), '/usr/bin']) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** How this Prometheus switches native histograms on; undefined before 2.40, which has none. */
export function nativeHistogramSwitch(bin: string): 'flag' | 'config' | undefined {
  const match = /version (\d+)\.(\d+)/.exec(execFileSync(bin, ['--version'], { encoding: 'utf8' }));
  const [major, minor] = [Number(match?.[1]), Number(match?.[2])];
  if (!(major > 2 || (major === 2 && minor >= 40))) return undefined;
  return major > 3 || (major === 3 && minor >= 8) ? 'config' : 'flag';
}

/** Both binaries, from PATH or /usr/bin; undefined when either is missing. */
export function prometheusTools(): PrometheusTools | undefined {
  const prometheus = executable('prometheus');
  const promtool = executable('promtool');
  return prometheus === undefined || promtool === undefined ? undefined : { prometheus, promtool };
}

function requireTools(): PrometheusTools {
  const tools = prometheusTools();
  if (tools === undefined) throw new Error("prometheus/promtool not found: install Debian's `prometheus` package (bash .ci/run does)");
  return tools;
}

// A safety net for a worker that exits without running its cleanup hooks.
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) {
    try {
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

interface Spawned {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Resolves on 'close' (exited, output read) with the exit code, or null when killed by a signal. */
  readonly closed: Promise<number | null>;
  /** stdout and stderr interleaved, the last 32 KiB. */
  output(): string;
}

function spawnCaptured(file: string, args: readonly string[], stdin: 'pipe' | 'ignore' = 'ignore'): Spawned {
  const child = spawn(file, args, { stdio: [stdin, 'pipe', 'pipe'] });
  let text = '';
  const append = (chunk: Buffer): void => {
    text = (text + chunk.toString('utf8')).slice(-32_768);
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  const closed = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve(code));
  });
  if (child.pid === undefined) throw new Error(`could not start ${file}`);
  live.add(child);
  child.once('exit', () => live.delete(child));
  return { child, pid: child.pid, closed, output: () => text };
}

/** SIGTERM by pid, SIGKILL after `graceMs`; resolves once the process is gone. */
async function stop(proc: Spawned, graceMs = 5_000): Promise<void> {
  const { child, pid } = proc;
  if (child.exitCode !== null || child.signalCode !== null) return;
  process.kill(pid, 'SIGTERM');
  const timer = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGKILL');
  }, graceMs);
  await proc.closed.catch(() => undefined);
  clearTimeout(timer);
}

/** Runs promtool with `args`; `output` is its stdout and stderr interleaved. */
export async function runPromtool(args: readonly string[]): Promise<{ code: number | null; output: string }> {
  const proc = spawnCaptured(requireTools().promtool, args);
  const code = await proc.closed;
  return { code, output: proc.output() };
}

/** Pipes an exposition into `promtool check metrics`; `problems` holds its complaints, one per line. */
export async function promtoolCheckMetrics(text: string): Promise<{ ok: boolean; problems: string[] }> {
  const proc = spawnCaptured(requireTools().promtool, ['check', 'metrics'], 'pipe');
  proc.child.stdin?.on('error', () => undefined); // EPIPE if it gives up before reading everything
  proc.child.stdin?.end(text);
  const code = await proc.closed;
  const problems = proc.output().split('\n').map((line) => line.trim()).filter((line) => line !== '');
  if (code !== 0 && problems.length === 0) problems.push(`promtool exited with ${code ?? 'a signal'} and said nothing`);
  return { ok: code === 0, problems };
}

function prometheusConfig(intervalSeconds: number, options: PrometheusOptions): object {
  const { targets, ruleFiles = [], scrapeConfigs = [] } = options;
  const interval = `${Math.round(intervalSeconds * 1000)}ms`;
  const jobs = new Map<string, { path: string; token: string | undefined; addresses: string[] }>();
  for (const t of targets) {
    const job = jobs.get(t.job) ?? { path: t.metricsPath ?? '/metrics', token: t.bearerToken, addresses: [] };
    if (job.path !== (t.metricsPath ?? '/metrics') || job.token !== t.bearerToken) throw new Error(`job ${t.job}: targets differ in path or token`);
    job.addresses.push(t.address);
    jobs.set(t.job, job);
  }
  const native = options.nativeHistograms === true && nativeHistogramSwitch(requireTools().prometheus) === 'config';
  return {
    global: { scrape_interval: interval, scrape_timeout: interval, evaluation_interval: interval, ...(native ? { scrape_native_histograms: true } : {}) },
    ...(ruleFiles.length === 0 ? {} : { rule_files: ruleFiles }),
    scrape_configs: [
      ...[...jobs].map(([name, job]) => ({
        job_name: name,
        metrics_path: job.path,
        ...(job.token === undefined ? {} : { authorization: { type: 'Bearer', credentials: job.token } }),
        static_configs: [{ targets: job.addresses }],
      })),
      ...scrapeConfigs,
    ],
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function api(base: string, path: string, params: Record<string, string> = {}): Promise<unknown> {
  const res = await fetch(`${base}${path}?${new URLSearchParams(params).toString()}`);
  const raw = await res.text();
  let body: { status?: string; data?: unknown; errorType?: string; error?: string };
  try {
    body = JSON.parse(raw) as typeof body;
  } catch {
    throw new Error(`Prometheus ${path}: HTTP ${res.status}: ${raw.slice(0, 500)}`);
  }
  if (body.status !== 'success') throw new Error(`Prometheus ${path} ${JSON.stringify(params)}: ${body.errorType}: ${body.error}`);
  return body.data;
}

/** Polls /-/ready; true once this very process answers (another one could have taken the port first). */
async function ready(proc: Spawned, url: string, configFile: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && proc.child.exitCode === null) {
    const ok = await fetch(`${url}/-/ready`).then((r) => r.ok, () => false);
    if (ok) {
      const flags = (await api(url, '/api/v1/status/flags')) as Record<string, string>;
      return flags['config.file'] === configFile;
    }
    await delay(50);
  }
  return false;
}

const parseValue = (raw: string): number => (raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw));

/** Runs Prometheus on a free 127.0.0.1 port until it is ready, retrying when another process took the port first. */
async function launch(bin: string, configFile: string, dataDir: string, features: readonly string[]): Promise<{ proc: Spawned; url: string }> {
  for (let attempt = 1; ; attempt++) {
    const url = `http://127.0.0.1:${await freePort()}`;
    const proc = spawnCaptured(bin, [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${dataDir}`,
      `--web.listen-address=${url.slice('http://'.length)}`,
      `--enable-feature=${features.join(',')}`,
    ]);
    const isReady = await ready(proc, url, configFile, 20_000).catch(async (err: unknown) => {
      await stop(proc);
      throw err;
    });
    if (isReady) return { proc, url };
    await stop(proc);
    if (attempt >= 5 || !/address already in use/.test(proc.output())) {
      throw new Error(`Prometheus did not become ready at ${url}:\n${proc.output()}`);
    }
  }
}

/** Starts Prometheus with its own config and storage in a temp dir, scraping `targets`; waits for /-/ready. */
export async function startPrometheus(options: PrometheusOptions): Promise<RunningPrometheus> {
  const tools = requireTools();
  const intervalSeconds = options.scrapeIntervalSeconds ?? 1;
  const dir = await mkdtemp(join(tmpdir(), 'metrics-proxy-prometheus-'));
  const configFile = join(dir, 'prometheus.yml');
  let launched: { proc: Spawned; url: string };
  try {
    await writeFile(configFile, JSON.stringify(prometheusConfig(intervalSeconds, options), null, 2)); // JSON is YAML
    const features = ['exemplar-storage', ...(options.nativeHistograms === true && nativeHistogramSwitch(tools.prometheus) === 'flag' ? ['native-histograms'] : [])];
    launched = await launch(tools.prometheus, configFile, join(dir, 'data'), features);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const { proc: running, url } = launched;

  const query = async (promql: string): Promise<PromSample[]> => {
    const data = (await api(url, '/api/v1/query', { query: promql })) as { resultType: string; result: unknown };
    if (data.resultType === 'scalar') return [{ metric: {}, value: parseValue((data.result as [number, string])[1]) }];
    if (data.resultType !== 'vector') throw new Error(`${promql}: a ${data.resultType}, not an instant vector`);
    return (data.result as Array<{ metric: Record<string, string>; value: [number, string] }>).map((s) => ({ metric: s.metric, value: parseValue(s.value[1]) }));
  };

  const activeTargets = async (job: string) => {
    const data = (await api(url, '/api/v1/targets', { state: 'active' })) as { activeTargets: Array<{ scrapePool: string; scrapeUrl: string; health: string; lastError: string }> };
    return data.activeTargets.filter((t) => t.scrapePool === job);
  };

  /** The fewest successful scrapes, over the job's targets, with a timestamp at or after `sinceSec`. */
  const scrapesSince = async (job: string, sinceSec: number): Promise<number> => {
    const window = Math.ceil(Date.now() / 1000 - sinceSec) + 10;
    const data = (await api(url, '/api/v1/query', { query: `up{job=${JSON.stringify(job)}}[${window}s]` })) as { result: Array<{ values: Array<[number, string]> }> };
    const counts = data.result.map((series) => series.values.filter(([t, v]) => t >= sinceSec && v === '1').length);
    // A target not scraped even once yet has no `up` series at all: it counts as 0.
    if (counts.length < (await activeTargets(job)).length) return 0;
    return counts.length === 0 ? 0 : Math.min(...counts);
  };

  const targetHealth = async (job: string): Promise<string> => {
    const mine = await activeTargets(job);
    return mine.length === 0 ? 'no such job' : mine.map((t) => `${t.scrapeUrl} ${t.health} ${t.lastError}`.trim()).join('; ');
  };

  let closing: Promise<void> | undefined;
  return {
    url,
    query,
    queryExemplars: (promql, startSec, endSec) => api(url, '/api/v1/query_exemplars', { query: promql, start: String(startSec), end: String(endSec) }),
    api: (path, params = {}) => api(url, path, params),
    async waitForScrapes(job, count, timeoutMs = (count + 5) * intervalSeconds * 1000 + 5_000) {
      // Sample timestamps are taken just before the scrape request; the margin covers Prometheus's 2 ms timestamp alignment.
      const sinceSec = (Date.now() + 10) / 1000;
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if (running.child.exitCode !== null) throw new Error(`Prometheus exited (${running.child.exitCode}):\n${running.output()}`);
        const seen = await scrapesSince(job, sinceSec);
        if (seen >= count) return;
        if (Date.now() > deadline) {
          throw new Error(`${seen} of ${count} scrapes of ${job} within ${timeoutMs} ms (target: ${await targetHealth(job).catch(String)})\n${running.output()}`);
        }
        await delay(Math.min(100, intervalSeconds * 250));
      }
    },
    close: () => {
      closing ??= stop(running).then(() => rm(dir, { recursive: true, force: true }));
      return closing;
    },
  };
}
