/**
 * End-to-end tests of the command line: every test spawns the built bin
 * (`node bin/metrics-proxy.js`, which imports dist/ — build first with
 * `npx tsc -p tsconfig.build.json`) against real servers on port 0. No mocks.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { type AddressInfo, createServer as createNetServer } from 'node:net';
import { join } from 'node:path';
import { beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import {
  BIN,
  DEAD_UPSTREAM,
  ENV_PREFIX,
  LOOPBACK,
  ROOT,
  childEnv,
  expectOneCleanLine,
  run,
  runToExit,
  startListening,
  stopWithSigterm,
} from './bin.js';
import { echoHandler, httpRequest, sampleValue, startUpstream } from './helpers.js';

async function startUpstreamForTest(): ReturnType<typeof startUpstream> {
  const upstream = await startUpstream(echoHandler);
  onTestFinished(() => upstream.close());
  return upstream;
}

beforeAll(() => {
  if (!existsSync(join(ROOT, 'dist', 'cli.js'))) {
    throw new Error('dist/cli.js is missing: run `npx tsc -p tsconfig.build.json` before these tests');
  }
});

interface BadInput {
  readonly name: string;
  readonly args: readonly string[];
  readonly env?: Record<string, string>;
  /** Substrings the one stderr line must contain: the option (flag or env var) and the bad value. */
  readonly mentions: readonly string[];
}

// Every case that is not about --host/--port binds loopback port 0, so a regression that starts listening is harmless.
const BAD_INPUTS: readonly BadInput[] = [
  { name: '--upstream not-a-url', args: [...LOOPBACK, '--port', '0', '--upstream', 'not-a-url'], mentions: ['--upstream', 'not-a-url'] },
  { name: '--upstream ftp://x', args: [...LOOPBACK, '--port', '0', '--upstream', 'ftp://x'], mentions: ['--upstream', 'ftp://x'] },
  { name: '--port abc', args: [...LOOPBACK, '--upstream', DEAD_UPSTREAM, '--port', 'abc'], mentions: ['--port', 'abc'] },
  { name: '--port 70000', args: [...LOOPBACK, '--upstream', DEAD_UPSTREAM, '--port', '70000'], mentions: ['--port', '70000'] },
  { name: '--port -1', args: [...LOOPBACK, '--upstream', DEAD_UPSTREAM, '--port', '-1'], mentions: ['--port', '-1'] },
  { name: '--port with no value', args: [...LOOPBACK, '--upstream', DEAD_UPSTREAM, '--port'], mentions: ['--port'] },
  { name: '--buckets 5,1 (not increasing)', args: [...LOOPBACK, '--port', '0', '--upstream', DEAD_UPSTREAM, '--buckets', '5,1'], mentions: ['--buckets', '5,1'] },
  { name: '--buckets a,b', args: [...LOOPBACK, '--port', '0', '--upstream', DEAD_UPSTREAM, '--buckets', 'a,b'], mentions: ['--buckets', 'a,b'] },
  { name: "--buckets ''", args: [...LOOPBACK, '--port', '0', '--upstream', DEAD_UPSTREAM, '--buckets', ''], mentions: ['--buckets', '""'] },
  { name: '--log-level loud', args: [...LOOPBACK, '--port', '0', '--upstream', DEAD_UPSTREAM, '--log-level', 'loud'], mentions: ['--log-level', 'loud'] },
  { name: '--api-prefix api (no leading slash)', args: [...LOOPBACK, '--port', '0', '--upstream', DEAD_UPSTREAM, '--api-prefix', 'api'], mentions: ['--api-prefix', 'api'] },
  { name: 'unknown flag --frobnicate', args: [...LOOPBACK, '--port', '0', '--upstream', DEAD_UPSTREAM, '--frobnicate'], mentions: ['--frobnicate'] },
  { name: 'a stray positional argument', args: [...LOOPBACK, '--port', '0', '--upstream', DEAD_UPSTREAM, 'stray'], mentions: ['stray'] },
  { name: 'missing --upstream without --demo', args: [...LOOPBACK, '--port', '0'], mentions: ['--upstream', 'required'] },
  { name: '--upstream together with --demo', args: [...LOOPBACK, '--port', '0', '--demo', '--upstream', DEAD_UPSTREAM], mentions: ['--upstream', '--demo'] },
  { name: 'METRICS_PROXY_PORT=abc', args: [...LOOPBACK, '--upstream', DEAD_UPSTREAM], env: { METRICS_PROXY_PORT: 'abc' }, mentions: ['METRICS_PROXY_PORT', 'abc'] },
  { name: 'METRICS_PROXY_UPSTREAM=ftp://x', args: [...LOOPBACK, '--port', '0'], env: { METRICS_PROXY_UPSTREAM: 'ftp://x' }, mentions: ['METRICS_PROXY_UPSTREAM', 'ftp://x'] },
  { name: 'METRICS_PROXY_BUCKETS=5,1', args: [...LOOPBACK, '--port', '0', '--upstream', DEAD_UPSTREAM], env: { METRICS_PROXY_BUCKETS: '5,1' }, mentions: ['METRICS_PROXY_BUCKETS', '5,1'] },
  { name: 'METRICS_PROXY_LOG_LEVEL=loud', args: [...LOOPBACK, '--port', '0', '--upstream', DEAD_UPSTREAM], env: { METRICS_PROXY_LOG_LEVEL: 'loud' }, mentions: ['METRICS_PROXY_LOG_LEVEL', 'loud'] },
  { name: 'METRICS_PROXY_API_PREFIX=api', args: [...LOOPBACK, '--port', '0', '--upstream', DEAD_UPSTREAM], env: { METRICS_PROXY_API_PREFIX: 'api' }, mentions: ['METRICS_PROXY_API_PREFIX', 'api'] },
];

describe('bad input: exits non-zero before listening, with one clean line on stderr', () => {
  it.concurrent.for(BAD_INPUTS)('$name', async ({ args, env, mentions }, { expect, onTestFinished: cleanup }) => {
    const result = await runToExit(args, env ?? {}, cleanup);
    expect(result.stdout).toBe('');
    expect(result.signal).toBeNull();
    expect(result.code).not.toBe(0);
    expect(result.code).toEqual(expect.any(Number));
    const line = expectOneCleanLine(result.stderr);
    for (const text of mentions) expect(line).toContain(text);
  });

  it('the error names the env var, not a flag, when the bad value came from the environment', async () => {
    const result = await runToExit([...LOOPBACK, '--upstream', DEAD_UPSTREAM], { METRICS_PROXY_PORT: 'abc' }, onTestFinished);
    expect(expectOneCleanLine(result.stderr)).not.toContain('--port');
  });

  it('a port already in use: non-zero exit, one line naming the port, no stack', async () => {
    const blocker = createNetServer();
    await new Promise<void>((resolve, reject) => {
      blocker.once('error', reject);
      blocker.listen(0, '127.0.0.1', () => resolve());
    });
    onTestFinished(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
    const { port } = blocker.address() as AddressInfo;

    const result = await runToExit([...LOOPBACK, '--port', String(port), '--upstream', DEAD_UPSTREAM], {}, onTestFinished);
    expect(result.stdout).toBe('');
    expect(result.signal).toBeNull();
    expect(result.code).not.toBe(0);
    const line = expectOneCleanLine(result.stderr);
    expect(line).toContain(String(port));
    expect(line).toMatch(/in use/i);
  });
});

describe('--help and --version', () => {
  it('--help exits 0 and lists every flag and its env var', async () => {
    const { stdout, stderr } = await run(process.execPath, [BIN, '--help'], { cwd: ROOT, env: childEnv() });
    expect(stderr).toBe('');
    const flags = ['--upstream', '--port', '--host', '--api-prefix', '--metrics-path', '--buckets', '--log-level', '--demo', '--version'];
    for (const flag of flags) expect(stdout).toMatch(new RegExp(`(^|[\\s,])${flag}(?![\\w-])`, 'm'));
    const envVars = ['UPSTREAM', 'PORT', 'HOST', 'API_PREFIX', 'METRICS_PATH', 'BUCKETS', 'LOG_LEVEL'].map((s) => `${ENV_PREFIX}${s}`);
    for (const name of envVars) expect(stdout).toMatch(new RegExp(`\\b${name}\\b`));
  });

  it('--version prints the package.json version and exits 0', async () => {
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(pkg.version).toMatch(/^\d+\.\d+\.\d+/);
    const { stdout, stderr } = await run(process.execPath, [BIN, '--version'], { cwd: ROOT, env: childEnv() });
    expect(stderr).toBe('');
    expect(stdout).toBe(`${pkg.version}\n`);
  });
});

describe('running', () => {
  it('logs a listening line with the bound port, proxies /api/*, and exits 0 on SIGTERM', async () => {
    const upstream = await startUpstreamForTest();
    const { bin, log, url } = await startListening([...LOOPBACK, '--port', '0', '--upstream', upstream.url]);
    expect(log.address).toBe('127.0.0.1');
    expect(log.upstream).toBe(`${upstream.url}/`);

    // fetch keeps its connection alive: shutdown must not wait on an idle client socket.
    const res = await fetch(`${url}/api/things?x=1`);
    expect(res.status).toBe(200);
    expect(res.headers.get('x-echo-url')).toBe('/api/things?x=1');
    await res.arrayBuffer();
    expect(upstream.seen.map((r) => r.url)).toEqual(['/api/things?x=1']);

    expect(await stopWithSigterm(bin)).toEqual({ code: 0, signal: null });
  });

  it('--demo serves GET /api/ping and counts it in /metrics', async () => {
    const { bin, url } = await startListening([...LOOPBACK, '--port', '0', '--demo']);

    const before = await httpRequest(`${url}/metrics`);
    expect(before.status).toBe(200);
    expect(sampleValue(before.body.toString('utf8'), 'apiCount', { method: 'GET' })).toBeUndefined();

    const ping = await httpRequest(`${url}/api/ping`);
    expect(ping.status).toBe(200);
    expect(JSON.parse(ping.body.toString('utf8'))).toEqual({ message: 'hello world' });

    const after = await httpRequest(`${url}/metrics`);
    expect(after.status).toBe(200);
    const text = after.body.toString('utf8');
    expect(sampleValue(text, 'apiCount', { method: 'GET' })).toBe(1);
    expect(sampleValue(text, 'apiDuration_count', { method: 'GET' })).toBe(1);

    expect(await stopWithSigterm(bin)).toEqual({ code: 0, signal: null });
  });
});

describe('precedence: flags > env > defaults', () => {
  it('uses METRICS_PROXY_UPSTREAM when --upstream is not given', async () => {
    const upstream = await startUpstreamForTest();
    const { bin, log, url } = await startListening([...LOOPBACK, '--port', '0'], { METRICS_PROXY_UPSTREAM: upstream.url });
    expect(log.upstream).toBe(`${upstream.url}/`);
    const res = await httpRequest(`${url}/api/from-env`);
    expect(res.status).toBe(200);
    expect(upstream.seen.map((r) => r.url)).toEqual(['/api/from-env']);
    expect(await stopWithSigterm(bin)).toEqual({ code: 0, signal: null });
  });

  it('a flag beats the env var: METRICS_PROXY_PORT=abc is ignored when --port 0 is given', async () => {
    const upstream = await startUpstreamForTest();
    const { bin, port, url } = await startListening([...LOOPBACK, '--port', '0', '--upstream', upstream.url], {
      METRICS_PROXY_PORT: 'abc',
    });
    expect(port).toBeGreaterThan(0);
    expect((await httpRequest(`${url}/api/x`)).status).toBe(200);
    expect(bin.stderr()).toBe('');
    expect(await stopWithSigterm(bin)).toEqual({ code: 0, signal: null });
  });

  it('METRICS_PROXY_API_PREFIX=/v1 forwards /v1/x and answers /api/x with 404', async () => {
    const upstream = await startUpstreamForTest();
    const { bin, log, url } = await startListening([...LOOPBACK, '--port', '0', '--upstream', upstream.url], {
      METRICS_PROXY_API_PREFIX: '/v1',
    });
    expect(log.apiPrefix).toBe('/v1');
    const forwarded = await httpRequest(`${url}/v1/x`);
    expect(forwarded.status).toBe(200);
    expect(forwarded.headers['x-echo-url']).toBe('/v1/x');
    const notForwarded = await httpRequest(`${url}/api/x`);
    expect(notForwarded.status).toBe(404);
    expect(upstream.seen.map((r) => r.url)).toEqual(['/v1/x']);
    expect(await stopWithSigterm(bin)).toEqual({ code: 0, signal: null });
  });
});
