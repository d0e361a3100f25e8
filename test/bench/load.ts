/**
 * The load generators that run in this (the bench's) process, pinned with it to the load core;
 * saturation runs use wrk instead (wrk.ts):
 * - `paced`: an open-loop fixed rate on node:http with a keep-alive agent (see below for why
 *   not autocannon's overallRate, and wrk2 is not packaged in Debian);
 * - `wsEcho`: N `ws` clients each doing sequential echo round trips (wrk speaks no WebSocket).
 * Latency percentiles come from every sample, to the microsecond.
 */
import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { type Latency, Samples } from './stats.js';

export interface Measured extends Latency {
  /** Completed operations (2xx responses, echo round trips) per second. */
  readonly rate: number;
  readonly ops: number;
  /** Connection errors, timeouts, non-2xx answers. */
  readonly errors: number;
}

export interface PacedOptions {
  readonly rate: number;
  readonly durationS: number;
  /** Upper bound on concurrent connections (the agent queues beyond it, and that wait counts). */
  readonly maxSockets: number;
}

/**
 * A fixed offered rate, open loop: request i is sent at start + i/rate whether or not earlier
 * ones have finished. autocannon's overallRate is not used for this: it gives each connection a
 * per-second quota that it spends back-to-back at the start of every second (httpClient.js,
 * `reqsMadeThisSecond`), i.e. a burst at full speed and then silence, which measures queueing
 * in the burst instead of latency at a steady rate. A 1 ms timer sends whatever is due, so
 * requests leave in groups of about rate/1000; latency runs from each request's send.
 */
export function paced(url: string, options: PacedOptions): Promise<Measured> {
  const target = new URL(url);
  const agent = new Agent({ keepAlive: true, maxSockets: options.maxSockets, maxFreeSockets: options.maxSockets });
  const intervalMs = 1000 / options.rate;
  const total = Math.max(1, Math.round(options.rate * options.durationS));
  const latencies = new Samples();
  let errors = 0;
  let sent = 0;
  let settled = 0;
  const start = performance.now();
  return new Promise((resolve) => {
    const finish = (): void => {
      settled += 1;
      if (settled < total) return;
      agent.destroy();
      const elapsedS = (performance.now() - start) / 1000;
      resolve({ rate: latencies.length / Math.max(elapsedS, options.durationS), ops: latencies.length, errors, ...latencies.latency() });
    };
    const fire = (): void => {
      const sentAt = performance.now();
      const req = request(
        { host: target.hostname, port: target.port, path: target.pathname + target.search, agent },
        (res) => {
          res.on('data', () => {});
          res.on('end', () => {
            if (res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300) latencies.push(performance.now() - sentAt);
            else errors += 1;
            finish();
          });
          res.on('error', () => {});
        },
      );
      req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
      req.on('error', () => {
        errors += 1;
        finish();
      });
      req.end();
    };
    const tick = (): void => {
      const now = performance.now();
      while (sent < total && start + sent * intervalMs <= now) {
        sent += 1;
        fire();
      }
      if (sent < total) setTimeout(tick, 1);
    };
    tick();
  });
}

export interface WsEchoOptions {
  readonly clients: number;
  readonly durationS: number;
  readonly payloadBytes: number;
}

/** N clients, each sending a message and waiting for its echo before the next, for the duration. */
export async function wsEcho(url: string, options: WsEchoOptions): Promise<Measured> {
  const payload = Buffer.alloc(options.payloadBytes, 0x61);
  const sockets: WebSocket[] = [];
  let errors = 0;
  try {
    await Promise.all(
      Array.from({ length: options.clients }, () => {
        const ws = new WebSocket(url, { perMessageDeflate: false });
        sockets.push(ws);
        ws.on('error', () => {
          errors += 1;
        });
        return new Promise<void>((resolve, reject) => {
          ws.once('open', () => resolve());
          ws.once('error', reject);
          ws.once('unexpected-response', (_req, res) => reject(new Error(`WebSocket handshake answered ${res.statusCode ?? '?'}`)));
        });
      }),
    );
    const latencies = new Samples();
    const start = performance.now();
    const deadline = start + options.durationS * 1000;
    await Promise.all(
      sockets.map(
        (ws) =>
          new Promise<void>((resolve) => {
            let sentAt = 0;
            const next = (): void => {
              sentAt = performance.now();
              ws.send(payload, { binary: true });
            };
            ws.on('message', () => {
              const now = performance.now();
              latencies.push(now - sentAt);
              if (now < deadline) next();
              else resolve();
            });
            ws.once('close', () => {
              if (performance.now() < deadline) errors += 1;
              resolve();
            });
            next();
          }),
      ),
    );
    const elapsedS = (performance.now() - start) / 1000;
    return { rate: latencies.length / elapsedS, ops: latencies.length, errors, ...latencies.latency() };
  } finally {
    for (const ws of sockets) ws.terminate();
  }
}
