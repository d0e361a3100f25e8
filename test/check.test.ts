/**
 * `metrics-proxy check`, end to end on the built bin: a real upstream on port
 * 0, a port nobody listens on, config files in a temp directory. Exit 0 when
 * valid and reachable, 1 when unreachable, 2 when invalid.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { type Finished, LOOPBACK, ROOT, expectOneCleanLine, runToExit, spawnBin } from './bin.js';
import { echoHandler, startUpstream } from './helpers.js';

interface Report {
  valid: boolean;
  configFile: string | null;
  config: Record<string, unknown>;
  upstream: { url: string | null; probe: string | null; reachable: boolean | null; error?: string };
}

beforeAll(() => {
  if (!existsSync(join(ROOT, 'dist', 'cli', 'check.js'))) throw new Error('dist/cli/check.js is missing: run `npm run build` before these tests');
});

/** Runs `metrics-proxy check …` to completion (stdout is expected here, unlike runToExit's callers). */
async function check(args: readonly string[], env: Record<string, string> = {}): Promise<Finished & { report: Report }> {
  const bin = spawnBin(['check', ...args], env, onTestFinished);
  const exit = await bin.closed;
  const stdout = bin.stdout();
  return { ...exit, stdout, stderr: bin.stderr(), report: JSON.parse(stdout) as Report };
}

async function upstream(handler = echoHandler) {
  const running = await startUpstream(handler);
  onTestFinished(() => running.close());
  return running;
}

async function closedPortUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'metrics-proxy-check-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

describe('check: valid configuration', () => {
  it('exits 0 when the upstream accepts a TCP connection, and prints the resolved config as JSON', async () => {
    const service = await upstream();
    const result = await check([...LOOPBACK, '--upstream', service.url, '--route', '/api/users/:id', '--connect-timeout', '2000']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.report).toMatchObject({
      valid: true,
      configFile: null,
      upstream: { url: `${service.url}/`, probe: 'TCP connect', reachable: true },
    });
    expect(result.report.config).toMatchObject({
      upstream: `${service.url}/`,
      host: '127.0.0.1',
      port: 8000,
      connectTimeout: 2000,
      routes: ['/api/users/:id'],
      buckets: [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
      readyPath: null,
      metricsToken: null,
      slo: 0.999,
      logFormat: 'auto',
      accessLog: false,
    });
    // A check does not listen: nobody but the probe talked to the upstream, and no HTTP request was made.
    expect(service.seen).toEqual([]);
  });

  it('with --ready-path: GETs it, 2xx is reachable, anything else is exit 1', async () => {
    const service = await upstream((req, res) => {
      res.writeHead(req.url === '/ready' ? 204 : 503);
      res.end();
    });
    const ready = await check(['--upstream', service.url, '--ready-path', '/ready']);
    expect(ready.code).toBe(0);
    expect(ready.report.upstream).toEqual({ url: `${service.url}/`, probe: 'GET /ready', reachable: true });

    const down = await check(['--upstream', service.url, '--ready-path', '/down']);
    expect(down.code).toBe(1);
    expect(down.report.upstream).toMatchObject({ probe: 'GET /down', reachable: false, error: 'upstream ready path answered 503' });
    expect(expectOneCleanLine(down.stderr)).toContain('503');
    expect(service.seen.map((r) => `${r.method} ${r.url}`)).toEqual(['GET /ready', 'GET /down']);
  });

  it('masks the token, from the environment or from a token file', async () => {
    const service = await upstream();
    const fromEnv = await check(['--upstream', service.url], { METRICS_PROXY_METRICS_TOKEN: 'env-secret-123' });
    expect(fromEnv.code).toBe(0);
    expect(fromEnv.report.config.metricsToken).toBe('***');
    expect(fromEnv.stdout + fromEnv.stderr).not.toContain('env-secret-123');

    const dir = await tempDir();
    const tokenFile = join(dir, 'token');
    await writeFile(tokenFile, 'file-secret-456\n');
    const fromFile = await check(['--upstream', service.url, '--metrics-token-file', tokenFile]);
    expect(fromFile.code).toBe(0);
    expect(fromFile.report.config).toMatchObject({ metricsToken: '***', metricsTokenFile: tokenFile });
    expect(fromFile.stdout + fromFile.stderr).not.toContain('file-secret-456');
  });

  it('reads --config, with env and flags over it, and names the file', async () => {
    const service = await upstream();
    const dir = await tempDir();
    const file = join(dir, 'proxy.yaml');
    await writeFile(file, `upstream: ${service.url}\nport: 9001\nmaxRoutes: 5\nbuckets: [5, 50]\naccessLog: true\nslo: 0.99\n`);
    const result = await check(['--config', file, '--max-routes', '9'], { METRICS_PROXY_PORT: '9002' });
    expect(result.code).toBe(0);
    expect(result.report.configFile).toBe(file);
    expect(result.report.config).toMatchObject({ port: 9002, maxRoutes: 9, buckets: [5, 50], accessLog: true, slo: 0.99 });

    const viaEnv = await check([], { METRICS_PROXY_CONFIG: file });
    expect(viaEnv.code).toBe(0);
    expect(viaEnv.report.config).toMatchObject({ port: 9001, maxRoutes: 5 });
  });

  it('takes the options before or after "check"', async () => {
    const service = await upstream();
    const bin = spawnBin(['--upstream', service.url, 'check', '--port', '0'], {}, onTestFinished);
    expect(await bin.closed).toEqual({ code: 0, signal: null });
    expect((JSON.parse(bin.stdout()) as Report).config.port).toBe(0);
  });

  it('with --demo: valid, nothing to probe, exit 0', async () => {
    const result = await check(['--demo']);
    expect(result.code).toBe(0);
    expect(result.report.upstream).toEqual({ url: null, probe: null, reachable: null });
    expect(result.report.config.demo).toBe(true);
  });
});

describe('check: unreachable upstream', () => {
  it('exits 1 for a closed port, with the report on stdout and one line on stderr', async () => {
    const url = await closedPortUrl();
    const result = await check(['--upstream', url]);
    expect(result.code).toBe(1);
    expect(result.report.valid).toBe(true);
    expect(result.report.upstream).toEqual({ url: `${url}/`, probe: 'TCP connect', reachable: false, error: 'upstream unreachable: ECONNREFUSED' });
    const line = expectOneCleanLine(result.stderr);
    expect(line).toContain('ECONNREFUSED');
    expect(line).toContain(url);
  });
});

describe('check: invalid configuration exits 2 with one line and nothing on stdout', () => {
  const cases: ReadonlyArray<{ name: string; args: (dir: string) => string[] | Promise<string[]>; env?: Record<string, string>; mentions: string[] }> = [
    { name: 'a bad flag value', args: () => ['--upstream', 'http://127.0.0.1:9', '--port', '70000'], mentions: ['--port', '70000'] },
    { name: 'no upstream', args: () => [], mentions: ['--upstream'] },
    {
      name: 'a bad value in the config file',
      args: async (dir) => {
        await writeFile(join(dir, 'c.yaml'), 'upstream: http://127.0.0.1:9\nconnectTimeout: abc\n');
        return ['--config', join(dir, 'c.yaml')];
      },
      mentions: ['c.yaml: connectTimeout:', 'milliseconds', '"abc"'],
    },
    {
      name: 'an unknown key in the config file',
      args: async (dir) => {
        await writeFile(join(dir, 'c.yaml'), 'upstream: http://127.0.0.1:9\nprot: 80\n');
        return ['--config', join(dir, 'c.yaml')];
      },
      mentions: ['c.yaml: prot:', 'unknown option', 'port'],
    },
    {
      name: 'a YAML syntax error',
      args: async (dir) => {
        await writeFile(join(dir, 'c.yaml'), 'upstream: [http://127.0.0.1:9\n');
        return ['--config', join(dir, 'c.yaml')];
      },
      mentions: ['c.yaml', 'not valid YAML'],
    },
    { name: 'a missing config file', args: (dir) => ['--config', join(dir, 'nope.yaml')], mentions: ['nope.yaml', 'ENOENT'] },
    {
      name: 'a missing token file',
      args: (dir) => ['--upstream', 'http://127.0.0.1:9', '--metrics-token-file', join(dir, 'no-token')],
      mentions: ['--metrics-token-file', 'ENOENT'],
    },
    {
      name: 'a missing OpenAPI document',
      args: (dir) => ['--upstream', 'http://127.0.0.1:9', '--openapi', join(dir, 'api.yaml')],
      mentions: ['--openapi', 'api.yaml'],
    },
    {
      name: 'a route template outside the API prefix',
      args: () => ['--upstream', 'http://127.0.0.1:9', '--route', '/other/:id'],
      mentions: ['/other/:id', '/api'],
    },
    { name: 'a stray argument after check', args: () => ['--upstream', 'http://127.0.0.1:9', 'extra'], mentions: ['argument'] },
  ];

  it.for(cases)('$name', async ({ args, env, mentions }, { expect }) => {
    const dir = await tempDir();
    const result = await runToExit(['check', ...(await args(dir))], env ?? {}, onTestFinished);
    expect(result.stdout).toBe('');
    expect(result.code).toBe(2);
    const line = expectOneCleanLine(result.stderr);
    for (const text of mentions) expect(line).toContain(text);
  });
});
