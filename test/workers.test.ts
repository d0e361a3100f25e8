/** `--workers`: workers share the port, and any worker's /metrics is the exact sum over all of them. */
import { execFileSync } from 'node:child_process';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { LOOPBACK, expectOneCleanLine, runToExit, startListening } from './bin.js';
import { httpRequest, sampleValue, settle, startUpstream, until } from './helpers.js';

function children(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

describe('--workers', () => {
  it('sums every worker exactly, keeps counters across a worker restart, and drains as one', { timeout: 60_000 }, async () => {
    const seenBy = new Set<number>();
    const upstream = await startUpstream((req, res) => {
      seenBy.add(req.socket.remotePort ?? 0);
      res.end('ok');
    });
    onTestFinished(upstream.close);
    const { bin, url } = await startListening([...LOOPBACK, '--port', '0', '--upstream', upstream.url, '--workers', '2']);
    // the first line may be the primary's; wait for both workers
    await until(() => (bin.stdout().match(/"msg":"listening"/g) ?? []).length === 2, 'both workers to listen', 10_000);
    const workers = children(bin.pid);
    expect(workers).toHaveLength(2);

    const send = async (n: number) => {
      for (let i = 0; i < n; i++) expect((await httpRequest(`${url}/api/item/${i}`)).status).toBe(200);
    };
    const count = async () => sampleValue((await httpRequest(`${url}/metrics`)).body.toString(), 'apiCount', { method: 'GET' });
    await send(200);
    // fresh connections are spread over both workers, each with its own upstream connection pool
    expect(seenBy.size).toBeGreaterThanOrEqual(2);
    for (let i = 0; i < 5; i++) expect(await count()).toBe(200); // whichever worker answers the scrape

    // a worker dies: the primary restarts it and its counts so far stay in the sum
    process.kill(workers[0] as number, 'SIGKILL');
    await until(() => children(bin.pid).filter((pid) => pid !== workers[0]).length === 2, 'the worker to be replaced', 15_000);
    await until(() => (bin.stdout().match(/"msg":"listening"/g) ?? []).length === 3, 'the new worker to listen', 15_000);
    expect(await settle(count, (n) => n === 200)).toBe(200);
    await send(50);
    for (let i = 0; i < 5; i++) expect(await count()).toBe(250);

    process.kill(bin.pid, 'SIGTERM');
    expect((await bin.exited).code).toBe(0);
    expect(children(bin.pid)).toEqual([]);
  });

  it.each([['0'], ['65'], ['many']])('refuses --workers %s with one clean line', async (value) => {
    const result = await runToExit([...LOOPBACK, '--port', '0', '--upstream', 'http://127.0.0.1:9', '--workers', value], {}, onTestFinished);
    expect(result.code).toBe(2);
    expect(expectOneCleanLine(result.stderr)).toContain('--workers');
  });

  it('stops with an error when the workers cannot listen', async () => {
    const holder = createNetServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    onTestFinished(() => new Promise<void>((resolve) => holder.close(() => resolve())));
    const port = (holder.address() as AddressInfo).port;
    const result = await runToExit(
      [...LOOPBACK, '--port', String(port), '--upstream', 'http://127.0.0.1:9', '--workers', '2', '--log-level', 'silent'],
      {},
      onTestFinished,
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('address already in use');
  });
});
