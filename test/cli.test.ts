/**
 * End-to-end tests of the command line: every test spawns the built bin
 * (`node bin/metrics-proxy.js`, which imports dist/ — build first with
 * `npx tsc -p tsconfig.build.json`) against real servers on port 0. No mocks.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { type AddressInfo, createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
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

async function tempDir(cleanup: typeof onTestFinished = onTestFinished): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'metrics-proxy-cli-'));
  cleanup(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

beforeAll(() => {
  if (!existsSync(join(ROOT, 'dist', 'cli', 'bin-bundle.js'))) {
    throw new Error('dist/cli/bin-bundle.js is missing: run `npm run build` before these tests');
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
  {
    name: '--metrics-host without --metrics-port',
    args: [...LOOPBACK, '--port', '0', '--upstream', DEAD_UPSTREAM, '--metrics-host', '127.0.0.2'],
    mentions: ['--metrics-host', '"127.0.0.2"', '--metrics-port'],
  },
  { name: 'METRICS_PROXY_PORT=abc', args: [...LOOPBACK, '--upstream', DEAD_UPSTREAM], env: { METRICS_PROXY_PORT: 'abc' }, mentions: ['METRICS_PROXY_PORT', 'abc'] },
  { name: 'METRICS_PROXY_UPSTREAM=ftp://x', args: [...LOOPBACK, '--port', '0'], env: { METRICS_PROXY_UPSTREAM: 'ftp://x' }, mentions: ['METRICS_PROXY_UPSTREAM', 'ftp://x'] },
  { name: 'METRICS_PROXY_BUCKETS=5,1', args: [...LOOPBACK, '--port', '0', '--upstream', DEAD_UPSTREAM], env: { METRICS_PROXY_BUCKETS: '5,1' }, mentions: ['METRICS_PROXY_BUCKETS', '5,1'] },
  { name: 'METRICS_PROXY_LOG_LEVEL=loud', args: [...LOOPBACK, '--port', '0', '--upstream', DEAD_UPSTREAM], env: { METRICS_PROXY_LOG_LEVEL: 'loud' }, mentions: ['METRICS_PROXY_LOG_LEVEL', 'loud'] },
  { name: 'METRICS_PROXY_API_PREFIX=api', args: [...LOOPBACK, '--port', '0', '--upstream', DEAD_UPSTREAM], env: { METRICS_PROXY_API_PREFIX: 'api' }, mentions: ['METRICS_PROXY_API_PREFIX', 'api'] },
  { name: '--slo 1', args: [...LOOPBACK, '--port', '0', '--upstream', DEAD_UPSTREAM, '--slo', '1'], mentions: ['--slo', '"1"'] },
  { name: 'METRICS_PROXY_ACCESS_LOG=yes', args: [...LOOPBACK, '--port', '0', '--upstream', DEAD_UPSTREAM], env: { METRICS_PROXY_ACCESS_LOG: 'yes' }, mentions: ['METRICS_PROXY_ACCESS_LOG', 'yes'] },
  { name: '--config of a missing file', args: [...LOOPBACK, '--port', '0', '--config', '/nonexistent/proxy.yaml'], mentions: ['/nonexistent/proxy.yaml', 'ENOENT'] },
  { name: 'METRICS_PROXY_CONFIG of a missing file', args: [...LOOPBACK, '--port', '0'], env: { METRICS_PROXY_CONFIG: '/nonexistent/env.yaml' }, mentions: ['/nonexistent/env.yaml'] },
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

describe('--config: bad files stop the proxy with exit 2 and one line naming the file and the key', () => {
  it.concurrent.for([
    { name: 'a bad value', yaml: 'connectTimeout: abc\n', mentions: ['proxy.yaml: connectTimeout:', 'milliseconds', 'got "abc"'] },
    { name: 'a wrong type', yaml: 'port: [1, 2]\n', mentions: ['proxy.yaml: port:', 'not a list'] },
    { name: 'an unknown key', yaml: 'connectTimeoutMs: 5\n', mentions: ['proxy.yaml: connectTimeoutMs:', 'did you mean connectTimeout?'] },
    { name: 'the token in plain text', yaml: 'metricsToken: hunter2\n', mentions: ['proxy.yaml: metricsToken:', 'metricsTokenFile'] },
    { name: 'a YAML syntax error', yaml: 'port: [1\n', mentions: ['proxy.yaml', 'not valid YAML'] },
  ])('$name', async ({ yaml, mentions }, { expect, onTestFinished: cleanup }) => {
    const file = join(await tempDir(cleanup), 'proxy.yaml');
    await writeFile(file, `upstream: ${DEAD_UPSTREAM}\nhost: 127.0.0.1\n${yaml}`);
    const result = await runToExit(['--config', file, '--port', '0'], {}, cleanup);
    expect(result.stdout).toBe('');
    expect(result.code).toBe(2);
    const line = expectOneCleanLine(result.stderr);
    expect(line.startsWith('metrics-proxy: ')).toBe(true);
    for (const text of mentions) expect(line).toContain(text);
    expect(line).not.toContain('hunter2');
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

  it('--help lists --config, the check command, the new options and the config keys', async () => {
    const { stdout } = await run(process.execPath, [BIN, '--help'], { cwd: ROOT, env: childEnv() });
    for (const flag of ['--config', '--log-format', '--access-log', '--no-access-log', '--slo']) {
      expect(stdout).toMatch(new RegExp(`(^|[\\s,])${flag}(?![\\w-])`, 'm'));
    }
    expect(stdout).toMatch(/^Commands:\n\s+check\b/m);
    const flat = stdout.replace(/\s+/g, ' ');
    for (const key of ['connectTimeout', 'apiPrefix', 'routes', 'logFormat']) expect(flat).toContain(`config: ${key}`);
    const check = await run(process.execPath, [BIN, 'check', '--help'], { cwd: ROOT, env: childEnv() });
    expect(check.stdout).toContain('metrics-proxy check');
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

  it("skips an upstream's stray 100 Continue (the bundle's undici parser hook)", async () => {
    const upstream = createNetServer((socket) => {
      socket.once('data', () => socket.end('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok'));
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    onTestFinished(() => void upstream.close());
    const { port } = upstream.address() as AddressInfo;
    const { bin, url } = await startListening([...LOOPBACK, '--port', '0', '--upstream', `http://127.0.0.1:${port}`]);
    const answer = await httpRequest(`${url}/api/x`);
    expect(answer.status).toBe(200);
    expect(answer.body.toString('utf8')).toBe('ok');
    expect(await stopWithSigterm(bin)).toEqual({ code: 0, signal: null });
  });

  it('serves the built status page (the bundle in dist/cli/ reads it from dist/admin/)', async () => {
    const { bin, url } = await startListening([...LOOPBACK, '--port', '0', '--upstream', DEAD_UPSTREAM]);
    const page = await httpRequest(`${url}/status`);
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['content-security-policy']).toMatch(/script-src 'sha256-/);
    expect(page.body.toString('utf8')).toContain('<!doctype html>');
    expect(await stopWithSigterm(bin)).toEqual({ code: 0, signal: null });
  });
});

describe('precedence: flags > env > config file > defaults', () => {
  it('takes options from --config (and METRICS_PROXY_CONFIG), with env and flags over them', async () => {
    const upstream = await startUpstreamForTest();
    const file = join(await tempDir(), 'proxy.yaml');
    await writeFile(file, `upstream: ${upstream.url}\nhost: 127.0.0.1\nport: 1\napiPrefix: /v1\nmetricsPath: /file-metrics\nroutes: [/v1/users/:id]\n`);
    const { bin, log, url } = await startListening(['--config', file, '--port', '0'], { METRICS_PROXY_METRICS_PATH: '/env-metrics' });
    expect(log).toMatchObject({ address: '127.0.0.1', upstream: `${upstream.url}/`, apiPrefix: '/v1', metricsPath: '/env-metrics' });
    expect((await httpRequest(`${url}/v1/users/7`)).status).toBe(200);
    const metrics = (await httpRequest(`${url}/env-metrics`)).body.toString('utf8');
    expect(metrics).toContain('http_route="/v1/users/:id"');
    expect(await stopWithSigterm(bin)).toEqual({ code: 0, signal: null });

    const viaEnv = await startListening(['--port', '0'], { METRICS_PROXY_CONFIG: file });
    expect(viaEnv.log).toMatchObject({ apiPrefix: '/v1', metricsPath: '/file-metrics' });
    expect(await stopWithSigterm(viaEnv.bin)).toEqual({ code: 0, signal: null });
  });


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

describe('--slo and --access-log on the real bin', () => {
  it('exposes --slo as metrics_proxy_slo_objective_ratio (default 0.999)', async () => {
    const upstream = await startUpstreamForTest();
    const configured = await startListening([...LOOPBACK, '--port', '0', '--upstream', upstream.url, '--slo', '0.995']);
    const text = (await httpRequest(`${configured.url}/metrics`)).body.toString('utf8');
    expect(text).toContain(
      '# HELP metrics_proxy_slo_objective_ratio Availability objective (--slo) that the burn-rate alert rules compare the error ratio against.',
    );
    expect(text).toContain('# TYPE metrics_proxy_slo_objective_ratio gauge');
    expect(sampleValue(text, 'metrics_proxy_slo_objective_ratio')).toBe(0.995);
    expect(await stopWithSigterm(configured.bin)).toEqual({ code: 0, signal: null });

    const byDefault = await startListening([...LOOPBACK, '--port', '0', '--upstream', upstream.url]);
    const defaultText = (await httpRequest(`${byDefault.url}/metrics`)).body.toString('utf8');
    expect(sampleValue(defaultText, 'metrics_proxy_slo_objective_ratio')).toBe(0.999);
    expect(await stopWithSigterm(byDefault.bin)).toEqual({ code: 0, signal: null });
  });

  it('--access-log writes one JSON "request" line per forwarded request on stdout', async () => {
    const upstream = await startUpstreamForTest();
    const { bin, url } = await startListening([...LOOPBACK, '--port', '0', '--upstream', upstream.url, '--access-log']);
    expect((await httpRequest(`${url}/api/things/12?q=1`)).status).toBe(200);
    const line = JSON.parse(await bin.nextLine()) as Record<string, unknown>;
    expect(line).toMatchObject({ level: 30, msg: 'request', method: 'GET', path: '/api/things/12', route: '/api/things/:id', status: 200 });
    expect(await stopWithSigterm(bin)).toEqual({ code: 0, signal: null });
  });

  it('METRICS_PROXY_ACCESS_LOG=false keeps it off (commander alone would turn it on)', async () => {
    const upstream = await startUpstreamForTest();
    const { bin, url } = await startListening([...LOOPBACK, '--port', '0', '--upstream', upstream.url], { METRICS_PROXY_ACCESS_LOG: 'false' });
    expect((await httpRequest(`${url}/api/x`)).status).toBe(200);
    expect(await stopWithSigterm(bin)).toEqual({ code: 0, signal: null });
    await bin.closed;
    const messages = bin.stdout().split('\n').filter((l) => l !== '').map((l) => (JSON.parse(l) as { msg: string }).msg);
    expect(messages).not.toContain('request');
    expect(messages).toContain('stopped');
  });
});
