/**
 * Process lifecycle of the real bin: graceful drain under load on SIGTERM,
 * the second signal, the shutdown timeout, crash handling, and the admin
 * listener's options from the command line.
 */
import { spawn } from 'node:child_process';
import { writeFile, mkdtemp, rm } from 'node:fs/promises';
import { type IncomingMessage, Agent, request } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { BIN, LOOPBACK, ROOT, childEnv, expectOneCleanLine, runToExit, startListening } from './bin.js';
import { httpRequest, startUpstream, until } from './helpers.js';

interface Outcome {
  readonly kind: 'complete' | 'refused' | 'broken';
  readonly status?: number;
  readonly detail?: string;
}

/** One GET; `complete` only when the whole body arrived and matched. */
function get(url: string, agent: Agent): Promise<Outcome> {
  return new Promise((resolve) => {
    let gotResponse = false;
    const req = request(url, { agent }, (res: IncomingMessage) => {
      gotResponse = true;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () =>
        resolve(
          res.statusCode === 200 && body === 'done'
            ? { kind: 'complete', status: 200 }
            : { kind: 'broken', status: res.statusCode, detail: `status ${res.statusCode} body ${body.slice(0, 80)}` },
        ),
      );
      res.on('error', (err) => resolve({ kind: 'broken', detail: `mid-body: ${err.message}` }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      // Never accepted by the proxy: the listener was closed, or a kept-alive socket was closed as it was reused.
      if (!gotResponse && ['ECONNREFUSED', 'ECONNRESET', 'EPIPE'].includes(err.code ?? '')) {
        resolve({ kind: 'refused', detail: err.code });
      } else {
        resolve({ kind: 'broken', detail: `${err.code ?? ''} ${err.message}` });
      }
    });
    req.end();
  });
}

async function tempFile(name: string, content: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'metrics-proxy-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, name);
  await writeFile(path, content);
  return path;
}

describe('graceful drain on SIGTERM', () => {
  it('completes every request it accepted while under load, then exits 0', async () => {
    let handled = 0;
    const upstream = await startUpstream((_req, res) => {
      setTimeout(() => {
        handled++;
        res.end('done');
      }, 20);
    });
    onTestFinished(upstream.close);
    const { bin, url } = await startListening([...LOOPBACK, '--port', '0', '--upstream', upstream.url, '--drain-delay', '300', '--shutdown-timeout', '10000']);

    const agent = new Agent({ keepAlive: true, maxSockets: 16 });
    onTestFinished(() => agent.destroy());
    const outcomes: Outcome[] = [];
    let exited = false;
    const exit = bin.exited.then((e) => {
      exited = true;
      return e;
    });
    // 16 clients in a loop until the proxy is gone
    const clients = Array.from({ length: 16 }, async () => {
      while (!exited) {
        const outcome = await get(`${url}/api/work`, agent);
        outcomes.push(outcome);
        if (outcome.kind === 'refused' && outcome.detail === 'ECONNREFUSED') return;
      }
    });
    // let the load run, then ask the proxy to stop
    await new Promise<void>((resolve) => {
      const check = setInterval(() => {
        if (outcomes.length >= 200) {
          clearInterval(check);
          resolve();
        }
      }, 5);
    });
    process.kill(bin.pid, 'SIGTERM');
    const { code } = await exit;
    await Promise.all(clients);

    expect(code).toBe(0);
    const broken = outcomes.filter((o) => o.kind === 'broken');
    expect(broken).toEqual([]);
    const complete = outcomes.filter((o) => o.kind === 'complete').length;
    expect(complete).toBeGreaterThan(200);
    // every request that reached the service was answered in full to its client
    expect(handled).toBe(complete);
    const logs = bin.stdout();
    expect(logs).toContain('"msg":"draining"');
    expect(logs).toContain('"msg":"stopped"');
  });

  it('lets an in-flight request finish before exiting', async () => {
    const upstream = await startUpstream((_req, res) => {
      setTimeout(() => res.end('done'), 500);
    });
    onTestFinished(upstream.close);
    const { bin, url } = await startListening([...LOOPBACK, '--port', '0', '--upstream', upstream.url]);
    const agent = new Agent({ keepAlive: false });
    const pending = get(`${url}/api/slow`, agent);
    await until(() => upstream.seen.length === 1, 'the upstream to receive the request');
    process.kill(bin.pid, 'SIGTERM');
    expect(await pending).toEqual({ kind: 'complete', status: 200 });
    expect((await bin.exited).code).toBe(0);
  });

  it('cuts what is still running at the shutdown timeout and exits 0', async () => {
    const upstream = await startUpstream(() => {}); // never answers
    onTestFinished(upstream.close);
    const { bin, url } = await startListening([
      ...LOOPBACK, '--port', '0', '--upstream', upstream.url, '--upstream-timeout', '0', '--shutdown-timeout', '300',
    ]);
    const pending = get(`${url}/api/forever`, new Agent({ keepAlive: false }));
    await until(() => upstream.seen.length === 1, 'the upstream to receive the request');
    process.kill(bin.pid, 'SIGTERM');
    expect((await bin.exited).code).toBe(0);
    expect((await pending).kind).not.toBe('complete');
  });

  it('exits at once on a second signal', async () => {
    const upstream = await startUpstream((_req, res) => res.end('done'));
    onTestFinished(upstream.close);
    // a drain delay far longer than the test timeout: only the second signal can end it in time
    const { bin } = await startListening([...LOOPBACK, '--port', '0', '--upstream', upstream.url, '--drain-delay', '600000']);
    process.kill(bin.pid, 'SIGTERM');
    await new Promise<void>((resolve) => {
      const check = setInterval(() => {
        if (bin.stdout().includes('"msg":"draining"')) {
          clearInterval(check);
          resolve();
        }
      }, 5);
    });
    process.kill(bin.pid, 'SIGINT');
    const { code } = await bin.exited;
    expect(code).toBe(1);
    expect(bin.stdout()).toContain('second signal');
  });
});

describe('crash handling', () => {
  it('logs an uncaught exception with its stack at fatal and exits non-zero', async () => {
    const upstream = await startUpstream((_req, res) => res.end('done'));
    onTestFinished(upstream.close);
    const preload = new URL('./fixtures/throw-later.mjs', import.meta.url).href;
    const child = spawn(process.execPath, ['--import', preload, BIN, ...LOOPBACK, '--port', '0', '--upstream', upstream.url], {
      cwd: ROOT,
      env: childEnv(),
    });
    onTestFinished(() => {
      child.kill('SIGKILL');
    });
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    expect(code).not.toBe(0);
    expect(code).not.toBeNull();
    const fatal = stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: number; msg: string; err?: { stack?: string } })
      .find((l) => l.level === 60);
    expect(fatal?.msg).toBe('uncaught exception: exiting');
    expect(fatal?.err?.stack).toContain('boom from the crash test');
    expect(fatal?.err?.stack).toContain('throw-later.mjs');
  });
});

describe('admin listener and token from the command line', () => {
  it('reads the bearer token from --metrics-token-file and serves metrics on --metrics-port', async () => {
    const upstream = await startUpstream((_req, res) => res.end('done'));
    onTestFinished(upstream.close);
    const tokenFile = await tempFile('token', 'file-token-123\n');
    const { log, url } = await startListening([
      ...LOOPBACK, '--port', '0', '--upstream', upstream.url, '--metrics-port', '0', '--metrics-token-file', tokenFile,
    ]);
    const adminPort = log.metricsPort;
    expect(typeof adminPort).toBe('number');
    const admin = `http://127.0.0.1:${String(adminPort)}`;
    expect((await httpRequest(`${admin}/metrics`)).status).toBe(401);
    expect((await httpRequest(`${admin}/metrics`, { headers: { authorization: 'Bearer file-token-123' } })).status).toBe(200);
    expect((await httpRequest(`${url}/metrics`, { headers: { authorization: 'Bearer file-token-123' } })).status).toBe(404);
  });

  it('takes the token from METRICS_PROXY_METRICS_TOKEN', async () => {
    const upstream = await startUpstream((_req, res) => res.end('done'));
    onTestFinished(upstream.close);
    const { url } = await startListening([...LOOPBACK, '--port', '0', '--upstream', upstream.url], {
      METRICS_PROXY_METRICS_TOKEN: 'env-token',
    });
    expect((await httpRequest(`${url}/metrics`)).status).toBe(401);
    expect((await httpRequest(`${url}/metrics`, { headers: { authorization: 'Bearer env-token' } })).status).toBe(200);
  });

  it.each([
    ['an unreadable token file', ['--metrics-token-file', '/nonexistent/token'], '--metrics-token-file'],
    ['a bad --metrics-port', ['--metrics-port', 'x'], '--metrics-port'],
    ['a bad --connect-timeout', ['--connect-timeout', '-5'], '--connect-timeout'],
    ['a bad --max-header-size', ['--max-header-size', '10'], '--max-header-size'],
    ['a bad --metrics family', ['--metrics', 'seed,bogus'], '--metrics'],
    ['a bad --max-routes', ['--max-routes', '0'], '--max-routes'],
    ['a bad --duration-buckets', ['--duration-buckets', '1,0.5'], '--duration-buckets'],
    ['an unreadable --openapi document', ['--openapi', '/nonexistent/api.yaml'], '--openapi'],
    ['a --route outside the prefix', ['--route', '/other/:id'], '--route'],
  ])('refuses %s with one clean line', async (_name, args, option) => {
    const result = await runToExit([...LOOPBACK, '--port', '0', '--upstream', 'http://127.0.0.1:9', ...args], {}, onTestFinished);
    expect(result.code).toBe(2);
    expect(expectOneCleanLine(result.stderr)).toContain(option);
  });

  it('takes --route several times and --openapi, and lists them at the routes endpoint', async () => {
    const upstream = await startUpstream((_req, res) => res.end('done'));
    onTestFinished(upstream.close);
    const openapi = await tempFile('api.yaml', 'openapi: 3.0.3\ninfo: { title: t, version: "1" }\npaths:\n  /pets/{petId}: {}\n');
    const { url } = await startListening([
      ...LOOPBACK, '--port', '0', '--upstream', upstream.url, '--route', '/api/users/:id', '--route', '/api/orders/:id', '--openapi', openapi,
    ]);
    const listed = JSON.parse((await httpRequest(`${url}/metrics/routes`)).body.toString()) as { routes: Array<{ route: string; source: string }> };
    expect(listed.routes).toEqual(
      expect.arrayContaining([
        { route: '/api/users/:id', source: 'config' },
        { route: '/api/orders/:id', source: 'config' },
        { route: '/api/pets/:petId', source: 'openapi' },
      ]),
    );
  });

  it('refuses a --metrics-port already in use with one clean line', async () => {
    const holder = createNetServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    onTestFinished(() => new Promise<void>((resolve) => holder.close(() => resolve())));
    const port = (holder.address() as AddressInfo).port;
    const result = await runToExit(
      [...LOOPBACK, '--port', '0', '--upstream', 'http://127.0.0.1:9', '--metrics-port', String(port)],
      {},
      onTestFinished,
    );
    expect(result.code).toBe(1);
    const line = expectOneCleanLine(result.stderr);
    expect(line).toContain(String(port));
    expect(line).toContain('--metrics-port');
  });
});
