/**
 * h2load (Debian package `nghttp2-client`) for the HTTP/2 scenarios: C, one thread, N
 * connections with M concurrent streams each, cleartext HTTP/2 with prior knowledge (h2c) for
 * an http:// URL. Like wrk it runs as its own process on the load core. Its summary gives the
 * counts; latency percentiles come from its per-request log (`--log-file`: start, status, µs).
 *
 * A cell fails when any request failed, errored, timed out or had a non-2xx status, and when
 * the DATA bytes received are fewer than the successful responses should have carried: a gRPC
 * error is an HTTP 200 with no message (trailers-only), which h2load counts as a success. A
 * proxy that answers errors fast must not look fast.
 */
import { mkdtempSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Measured } from './load.js';
import { registerTempDir, runTool } from './processes.js';
import { type Latency, Samples } from './stats.js';
import { type ToolBinary, findTool } from './tools.js';

const CANDIDATES = ['/usr/bin/h2load', '/usr/local/bin/h2load'];

export type H2loadBinary = ToolBinary;

export function findH2load(): H2loadBinary | undefined {
  // `h2load --version` prints "h2load nghttp2/1.52.0".
  return findTool('h2load', CANDIDATES, ['--version'], (out) => (out.split('\n')[0] ?? '').trim());
}

export interface H2loadOptions {
  /** Connections (`-c`). */
  readonly clients: number;
  /** Concurrent streams per connection (`-m`). */
  readonly streams: number;
  readonly durationS: number;
  /** The request body (`-d <file>`; h2load then sends a POST). */
  readonly body?: Buffer;
  /** Extra request headers (`-H 'name: value'`). */
  readonly headers?: readonly string[];
  /** Response body bytes each successful request must carry (checked on the total DATA bytes). */
  readonly expectBodyBytes: number;
}

export type H2loadRunner = (url: string, options: H2loadOptions) => Promise<Measured>;

/** What h2load's summary says; exported for the parser's sake. */
export interface H2loadSummary {
  readonly protocol: string | undefined;
  readonly seconds: number;
  readonly done: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly errored: number;
  readonly timeout: number;
  readonly status: { readonly s2xx: number; readonly s3xx: number; readonly s4xx: number; readonly s5xx: number };
  readonly dataBytes: number;
}

const UNIT_S: Record<string, number> = { us: 1e-6, ms: 1e-3, s: 1, m: 60 };

function count(text: string, re: RegExp, what: string): number {
  const m = re.exec(text);
  if (m?.[1] === undefined) throw new Error(`h2load's output has no ${what}`);
  return Number(m[1]);
}

export function parseH2load(text: string): H2loadSummary {
  const finished = /^finished in ([\d.]+)(us|ms|s|m)\b/m.exec(text);
  if (finished?.[1] === undefined || finished[2] === undefined) throw new Error("h2load's output has no 'finished in' line");
  const requests = /^requests: .*$/m.exec(text)?.[0] ?? '';
  const field = (name: string): number => count(requests, new RegExp(`(\\d+) ${name}`), `'${name}' count`);
  const codes = /^status codes: .*$/m.exec(text)?.[0] ?? '';
  const code = (name: string): number => count(codes, new RegExp(`(\\d+) ${name}`), `${name} count`);
  return {
    protocol: /^Application protocol: (\S+)/m.exec(text)?.[1],
    seconds: Number(finished[1]) * (UNIT_S[finished[2]] ?? 1),
    done: field('done'),
    succeeded: field('succeeded'),
    failed: field('failed'),
    errored: field('errored'),
    timeout: field('timeout'),
    status: { s2xx: code('2xx'), s3xx: code('3xx'), s4xx: code('4xx'), s5xx: code('5xx') },
    dataBytes: count(text, /^traffic: .*?\((\d+)\) data$/m, 'DATA byte count'),
  };
}

/** Why the run must not count, or undefined. */
export function h2loadProblem(s: H2loadSummary, expectBodyBytes: number): string | undefined {
  if (s.protocol !== 'h2c') return `the connection did not speak h2c (application protocol: ${s.protocol ?? 'none'})`;
  const bad = s.failed + s.errored + s.timeout;
  const non2xx = s.status.s3xx + s.status.s4xx + s.status.s5xx;
  if (bad > 0 || non2xx > 0) {
    return (
      `${bad} of ${s.done} requests failed (${s.failed} failed, ${s.errored} errored, ${s.timeout} timed out); ` +
      `status codes ${s.status.s2xx} 2xx, ${s.status.s3xx} 3xx, ${s.status.s4xx} 4xx, ${s.status.s5xx} 5xx`
    );
  }
  if (s.succeeded === 0) return `no request succeeded (${s.done} done)`;
  const want = s.succeeded * expectBodyBytes;
  if (s.dataBytes < want) {
    return `${s.dataBytes} DATA bytes for ${s.succeeded} successful responses of ${expectBodyBytes} bytes (${want}): some answers had no body (errors in trailers?)`;
  }
  return undefined;
}

/** p50/p99/p99.9 from h2load's per-request log: tab-separated start µs, status, duration µs. */
function latencyFromLog(log: string): Latency {
  const samples = new Samples();
  let start = 0;
  while (start < log.length) {
    let end = log.indexOf('\n', start);
    if (end < 0) end = log.length;
    const a = log.indexOf('\t', start);
    const b = a < 0 ? -1 : log.indexOf('\t', a + 1);
    if (b > 0 && b < end && log.charCodeAt(a + 1) === 0x32 /* 2xx */) samples.push(Number(log.slice(b + 1, end)) / 1000);
    start = end + 1;
  }
  return samples.latency();
}

/** A runner bound to one h2load binary and one core prefix (`taskset -c 0`). Its files live in one temp dir. */
export function h2loadRunner(binary: H2loadBinary, prefix: readonly string[]): H2loadRunner {
  const dir = mkdtempSync(join(tmpdir(), 'mp-bench-h2load-'));
  registerTempDir(dir);
  const bodies = new Map<Buffer, string>();
  let runs = 0;
  return async (url, options) => {
    let bodyFile: string | undefined;
    if (options.body !== undefined) {
      bodyFile = bodies.get(options.body);
      if (bodyFile === undefined) {
        bodyFile = join(dir, `body-${bodies.size}.bin`);
        await writeFile(bodyFile, options.body);
        bodies.set(options.body, bodyFile);
      }
    }
    const logFile = join(dir, `requests-${runs++}.tsv`);
    const args = [
      '-t1',
      `-c${options.clients}`,
      `-m${options.streams}`,
      '-D',
      String(options.durationS),
      `--log-file=${logFile}`,
      ...(bodyFile === undefined ? [] : ['-d', bodyFile]),
      ...(options.headers ?? []).flatMap((h) => ['-H', h]),
      url,
    ];
    try {
      const result = await runTool(binary.path, args, prefix, (options.durationS + 30) * 1000);
      if (result.code !== 0 || !/^finished in /m.test(result.stdout)) {
        throw new Error(`h2load failed (exit ${String(result.code)}): ${(result.stderr || result.stdout).trim().split('\n').slice(-2).join(' / ')}`);
      }
      const summary = parseH2load(result.stdout);
      const problem = h2loadProblem(summary, options.expectBodyBytes);
      if (problem !== undefined) throw new Error(`h2load: ${problem}`);
      return {
        rate: summary.succeeded / summary.seconds,
        ops: summary.succeeded,
        errors: 0,
        ...latencyFromLog(await readFile(logFile, 'latin1')),
      };
    } finally {
      await rm(logFile, { force: true });
    }
  };
}
