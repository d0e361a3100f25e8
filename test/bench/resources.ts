/**
 * The resource measurements, one per process: peak RSS with many open client connections, and
 * RSS growth while a large body streams through in both directions at once.
 */
import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Memory } from './proc.js';

export type ReadMemory = () => Memory | undefined;

export interface IdleConnections {
  readonly connections: number;
  /** Requests that did not get a 200 (each connection carries one). */
  readonly failed: number;
  /** Summed over the target's processes, 2 s after it listened, before the first connection. */
  readonly startRssBytes: number;
  /** Summed over the target's processes, 1 s after the last response, connections still open. */
  readonly rssBytes: number;
  /** Peak since the process started (start-up, the burst of requests, holding the connections). */
  readonly hwmBytes: number;
}

/** One GET on a connection of its own, left open afterwards (the agent keeps it as a free socket). */
function getOnOwnConnection(url: URL, agent: Agent): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ host: url.hostname, port: url.port, path: url.pathname, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
      res.on('error', () => resolve(false));
    });
    req.setTimeout(30_000, () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(false));
    req.end();
  });
}

/**
 * Reads the memory of the idle process 2 s after it listened, then opens `n` client connections,
 * each with one request (50 at a time, so the proxy's upstream
 * pool stays small: this is about held client connections, not n concurrent requests), keeps
 * them all open and idle for a second, and reads the memory.
 */
export async function idleConnections(baseUrl: string, n: number, memory: ReadMemory): Promise<IdleConnections> {
  const url = new URL('/api/small', baseUrl);
  await sleep(2_000);
  const start = memory();
  if (start === undefined) throw new Error('the target process is gone');
  // An agent per connection: a shared one would reuse a freed socket instead of opening another.
  const agents = Array.from({ length: n }, () => new Agent({ keepAlive: true, maxSockets: 1 }));
  let failed = 0;
  let next = 0;
  const wave = async (): Promise<void> => {
    while (next < n) {
      const agent = agents[next++] as Agent;
      if (!(await getOnOwnConnection(url, agent))) failed += 1;
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(50, n) }, wave));
    await sleep(1_000);
    const read = memory();
    if (read === undefined) throw new Error('the target process is gone');
    return { connections: n, failed, startRssBytes: start.rssBytes, rssBytes: read.rssBytes, hwmBytes: read.hwmBytes };
  } finally {
    for (const agent of agents) agent.destroy();
  }
}

const CHUNK = Buffer.alloc(64 * 1024, 0x63);

/** POSTs `bytes` to /api/sink with backpressure; resolves with the byte count the upstream reports. */
function upload(baseUrl: string, bytes: number): Promise<number> {
  const url = new URL('/api/sink', baseUrl);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent: false, headers: { 'content-length': String(bytes) } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => {
          const received = (JSON.parse(body) as { bytes?: number }).bytes;
          if (res.statusCode !== 200 || typeof received !== 'number') reject(new Error(`upload answered ${res.statusCode}: ${body}`));
          else resolve(received);
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    let left = bytes;
    const pump = (): void => {
      while (left > 0) {
        const chunk = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left);
        left -= chunk.length;
        if (!req.write(chunk)) {
          req.once('drain', pump);
          return;
        }
      }
      req.end();
    };
    pump();
  });
}

/** GETs /api/stream?bytes=N and counts what arrives. */
function download(baseUrl: string, bytes: number): Promise<number> {
  const url = new URL(`/api/stream?bytes=${bytes}`, baseUrl);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path: url.pathname + url.search, agent: false }, (res) => {
      let received = 0;
      res.on('data', (chunk: Buffer) => {
        received += chunk.length;
      });
      res.on('end', () => (res.statusCode === 200 ? resolve(received) : reject(new Error(`download answered ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

export interface Streamed {
  readonly bytesEachWay: number;
  readonly uploadMiBps: number;
  readonly downloadMiBps: number;
  /** RSS before, after a 64 MiB warm-up each way and half a second of rest. */
  readonly baselineRssBytes: number;
  /** VmHWM after the warm-up: what streaming at all costs, before the long transfer. */
  readonly warmUpHwmBytes: number;
  /** Highest VmRSS seen by 50 ms polling during the transfer. */
  readonly polledPeakRssBytes: number;
  /** VmHWM after the transfer: the peak whatever the polling missed. */
  readonly hwmBytes: number;
  /** hwm − baseline: the conservative growth figure the target is checked against. */
  readonly growthBytes: number;
  /** hwm − warmUpHwm: growth the long transfer added over the short one (≈ 0 for constant memory). */
  readonly growthOverWarmUpBytes: number;
}

/** Streams `bytes` up and `bytes` down at the same time through the target and watches its RSS. */
export async function streamBothWays(baseUrl: string, bytes: number, memory: ReadMemory): Promise<Streamed> {
  const warm = 64 * 1024 * 1024;
  await Promise.all([upload(baseUrl, warm), download(baseUrl, warm)]);
  await sleep(500);
  const baseline = memory();
  if (baseline === undefined) throw new Error('the target process is gone');
  let polledPeak = baseline.rssBytes;
  const poll = setInterval(() => {
    polledPeak = Math.max(polledPeak, memory()?.rssBytes ?? 0);
  }, 50);
  const timed = async (run: () => Promise<number>): Promise<{ bytes: number; ms: number }> => {
    const started = performance.now();
    const moved = await run();
    return { bytes: moved, ms: performance.now() - started };
  };
  try {
    const [up, down] = await Promise.all([timed(() => upload(baseUrl, bytes)), timed(() => download(baseUrl, bytes))]);
    if (up.bytes !== bytes || down.bytes !== bytes) throw new Error(`streamed ${up.bytes} up and ${down.bytes} down, expected ${bytes} each`);
    const after = memory();
    if (after === undefined) throw new Error('the target process is gone');
    const mib = bytes / (1024 * 1024);
    return {
      bytesEachWay: bytes,
      uploadMiBps: mib / (up.ms / 1000),
      downloadMiBps: mib / (down.ms / 1000),
      baselineRssBytes: baseline.rssBytes,
      polledPeakRssBytes: polledPeak,
      warmUpHwmBytes: baseline.hwmBytes,
      hwmBytes: after.hwmBytes,
      growthBytes: after.hwmBytes - baseline.rssBytes,
      growthOverWarmUpBytes: after.hwmBytes - baseline.hwmBytes,
    };
  } finally {
    clearInterval(poll);
  }
}
