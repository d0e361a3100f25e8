/** Resource bounds of the real bin: thousands of idle client connections held, then released. */
import { type Socket, connect } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { LOOPBACK, startListening } from './bin.js';
import { httpRequest, startUpstream, until } from './helpers.js';
import { openFds, rssBytes } from './proc.js';

const CONNECTIONS = 5_000;

function openIdle(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket));
    socket.once('error', reject);
  });
}

describe('resource bounds', () => {
  it(`holds ${CONNECTIONS} idle connections and gives back the file descriptors and memory`, { timeout: 90_000 }, async () => {
    const upstream = await startUpstream((_req, res) => res.end('ok'));
    onTestFinished(upstream.close);
    const preload = new URL('./fixtures/gc-on-signal.mjs', import.meta.url).href;
    const { bin, url, port } = await startListening([...LOOPBACK, '--port', '0', '--upstream', upstream.url], {}, [
      '--expose-gc',
      '--import',
      preload,
    ]);
    /** Live heap after a full GC in the proxy (see the preload). */
    const liveHeap = async (): Promise<number> => {
      const before = bin.stderr().length;
      process.kill(bin.pid, 'SIGUSR2');
      await until(() => /gc-done \d+\n/.test(bin.stderr().slice(before)), 'the proxy to collect garbage');
      return Number(/gc-done (\d+)/.exec(bin.stderr().slice(before))?.[1]);
    };
    // warm up the paths every connection will take
    for (let i = 0; i < 20; i++) expect((await httpRequest(`${url}/api/warm`)).status).toBe(200);
    const baseFds = openFds(bin.pid);
    const baseRss = rssBytes(bin.pid);
    const baseHeap = await liveHeap();

    const mb = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MB`;
    const released: number[] = [];
    const heaps: number[] = [];
    // Two rounds: the first grows the heap to its working size; a leak would show as growth in the second.
    for (let round = 1; round <= 2; round++) {
      const sockets: Socket[] = [];
      onTestFinished(() => sockets.forEach((s) => s.destroy()));
      for (let i = 0; i < CONNECTIONS; i += 250) {
        sockets.push(...(await Promise.all(Array.from({ length: 250 }, () => openIdle(port)))));
      }
      // (a few of the baseline's descriptors are pooled upstream sockets that may close meanwhile)
      await until(() => openFds(bin.pid) >= baseFds + CONNECTIONS - 5, 'the proxy to accept every connection', 30_000);
      const heldRss = rssBytes(bin.pid);
      // still serving while holding them
      expect((await httpRequest(`${url}/api/while-held`)).status).toBe(200);

      for (const socket of sockets) socket.destroy();
      await until(() => openFds(bin.pid) <= baseFds + 2, 'the proxy to close every released connection', 30_000);
      released.push(rssBytes(bin.pid));
      heaps.push(await liveHeap());
      console.log(
        `round ${round}: RSS baseline ${mb(baseRss)}, holding ${CONNECTIONS} ${mb(heldRss)}, released ${mb(released.at(-1) ?? 0)};` +
          ` live heap baseline ${mb(baseHeap)}, released ${mb(heaps.at(-1) ?? 0)}`,
      );
    }
    // Node keeps some per-server structures at their high-water mark (a bare http.Server retains ~4.5 MB
    // after 5 000 connections), so the first round may leave a bounded amount behind; a leak would make
    // the second round add to it.
    const [firstHeap = 0, secondHeap = 0] = heaps;
    expect(firstHeap - baseHeap).toBeLessThan(16 * 1024 * 1024);
    expect(secondHeap - firstHeap).toBeLessThan(1024 * 1024);
    // RSS keeps pages V8 has not handed back yet; it stays bounded all the same.
    for (const rss of released) expect(rss - baseRss).toBeLessThan(96 * 1024 * 1024);
    expect((await httpRequest(`${url}/api/after`)).status).toBe(200);
  });
});
