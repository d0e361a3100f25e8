/**
 * Bounded fuzzing of the real bin with random and mutated raw requests from
 * many connections (FUZZ_SECONDS, default 30; `npm run fuzz` runs longer).
 * Afterwards the process must be alive, /metrics must parse, apiCount must
 * equal the requests the upstream actually received, and descriptors and
 * live heap must be back near where they started.
 */
import { createServer } from 'node:http';
import { type Socket, connect } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { LOOPBACK, startListening } from './bin.js';
import { httpRequest, parseExposition, startServer, until } from './helpers.js';
import { DEFAULTS } from '../src/config/config.js';
import { createListener } from '../src/http/listener.js';
import { createPathClassifier } from '../src/http/paths.js';
import { checkRequest, isPoisoned, poison } from '../src/http/request-checks.js';
import { payload, random } from './fuzz-input.js';
import { openFds } from './proc.js';

const SECONDS = Number(process.env.FUZZ_SECONDS ?? 30);
const CONNECTIONS = 32;

/**
 * The oracle: a plain Node server with the proxy's parser settings that counts the requests it
 * parses and that the proxy's routing would forward. Every such request must show in apiCount,
 * whatever happened to it afterwards (the bytes after it may be garbage that kills the connection
 * before the request reaches the upstream: it still counts, like any request its client abandoned).
 */
async function startReference(): Promise<{ port: number; forwarded: () => number; close: () => Promise<void> }> {
  const classify = createPathClassifier(DEFAULTS.apiPrefix, [DEFAULTS.metricsPath, '/healthz', '/readyz']);
  let forwarded = 0;
  // The same framing checks the router applies (they have tests of their own in hostile.test.ts), behind
  // the proxy's own listener: the HTTP/2 preface split and the replay of declined upgrades (tested in
  // h2c-upgrade.test.ts) decide which requests exist, as they do in the proxy.
  const listener = createListener(
    {
      onRequest(req, res) {
        if (isPoisoned(req)) {
          req.socket.destroy();
          return;
        }
        const refusal = checkRequest(req);
        if (refusal?.poison === true) poison(req);
        if (refusal === undefined && classify(req.url ?? '').kind === 'forward') forwarded++;
        req.resume();
        if (refusal?.poison === true) res.shouldKeepAlive = false;
        res.end();
      },
      onUpgrade(req, socket) {
        const websocket =
          req.method === 'GET' && req.headers.upgrade?.toLowerCase() === 'websocket' && typeof req.headers['sec-websocket-key'] === 'string';
        if (websocket && checkRequest(req) === undefined && classify(req.url ?? '').kind === 'forward') forwarded++;
        socket.destroy();
      },
      onHttp2Request(_req, res) {
        res.stream.close();
      },
    },
    { ...DEFAULTS, idleTimeoutMs: 0, maxConcurrentStreams: DEFAULTS.http2MaxConcurrentStreams },
  );
  const server = listener.server;
  server.on('connect', (_req, socket: Socket) => socket.destroy());
  const running = await startServer(server);
  return { port: running.port, forwarded: () => forwarded, close: running.close };
}

/** Sends one payload; waits for the server to close or to fall quiet, then hangs up. */
function exchange(port: number, data: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const socket: Socket = connect(port, '127.0.0.1');
    let quiet: NodeJS.Timeout | undefined;
    const finish = (): void => {
      clearTimeout(quiet);
      socket.destroy();
      resolve();
    };
    const arm = (ms: number): void => {
      clearTimeout(quiet);
      quiet = setTimeout(finish, ms);
    };
    socket.on('error', finish);
    socket.on('close', finish);
    socket.on('data', () => arm(150));
    socket.write(data, () => arm(400));
  });
}

describe('fuzzing', () => {
  it(`survives ${SECONDS} s of random and mutated requests with its counts exact`, { timeout: (SECONDS + 60) * 1000 }, async () => {
    let seen = 0;
    const upstream = createServer((req, res) => {
      seen++;
      req.resume();
      res.end('ok');
    });
    upstream.on('upgrade', (_req, socket: Socket) => {
      seen++;
      socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n');
    });
    upstream.on('clientError', (_err, socket) => socket.destroy());
    const running = await startServer(upstream);
    onTestFinished(running.close);
    const preload = new URL('./fixtures/gc-on-signal.mjs', import.meta.url).href;
    const { bin, url, port } = await startListening(
      [...LOOPBACK, '--port', '0', '--upstream', running.url, '--log-level', 'info'],
      {},
      ['--expose-gc', '--import', preload],
    );
    const liveHeap = async (): Promise<number> => {
      const before = bin.stderr().length;
      process.kill(bin.pid, 'SIGUSR2');
      await until(() => /gc-done \d+\n/.test(bin.stderr().slice(before)), 'the proxy to collect garbage');
      return Number(/gc-done (\d+)/.exec(bin.stderr().slice(before))?.[1]);
    };
    await httpRequest(`${url}/api/warm`); // counted once below
    seen = 0;
    const baseFds = openFds(bin.pid);
    const baseHeap = await liveHeap();

    const reference = await startReference();
    onTestFinished(reference.close);
    const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
    console.log(`fuzz seed ${seed} (FUZZ_SEED=${seed} replays it)`);
    const rand = random(seed);
    const deadline = Date.now() + SECONDS * 1000;
    let sent = 0;
    await Promise.all(
      Array.from({ length: CONNECTIONS }, async () => {
        while (Date.now() < deadline) {
          sent++;
          const data = payload(rand);
          await exchange(reference.port, data);
          await exchange(port, data);
        }
      }),
    );

    expect(bin.child.exitCode).toBeNull(); // alive
    const scrape = await httpRequest(`${url}/metrics`);
    expect(scrape.status).toBe(200);
    const samples = parseExposition(scrape.body.toString());
    const total = (name: string): number => samples.filter((s) => s.name === name).reduce((sum, s) => sum + s.value, 0);
    console.log(
      `fuzz: ${sent} payloads, ${reference.forwarded()} forwardable requests parsed by the reference, ` +
        `apiCount ${total('apiCount')}, ${seen} reached the upstream`,
    );
    expect(total('apiCount')).toBe(reference.forwarded() + 1);
    expect(seen).toBeLessThanOrEqual(total('apiCount'));
    expect(total('apiDuration_count')).toBe(total('apiCount'));
    for (const method of new Set(samples.filter((s) => s.name === 'apiCount').map((s) => s.labels.method))) {
      const count = samples.find((s) => s.name === 'apiCount' && s.labels.method === method)?.value;
      const durations = samples.find((s) => s.name === 'apiDuration_count' && s.labels.method === method)?.value;
      expect(durations, `apiDuration_count{method="${String(method)}"}`).toBe(count);
    }
    expect(seen).toBeGreaterThan(0);

    await until(() => openFds(bin.pid) <= baseFds + 4, 'descriptors to return to their starting level', 15_000);
    const heap = await liveHeap();
    console.log(`live heap ${(baseHeap / 1048576).toFixed(1)} MB → ${(heap / 1048576).toFixed(1)} MB`);
    expect(heap - baseHeap).toBeLessThan(16 * 1024 * 1024);
    expect(bin.stdout()).not.toContain('"level":60');
  });
});
