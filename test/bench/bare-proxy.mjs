// @ts-check
/**
 * "bare": the floor the bench compares metrics-proxy against. The same http-proxy, forwarding
 * everything (HTTP and WebSocket) to the upstream given as the only argument, with the same
 * upstream agent as src/app.ts (keep-alive, maxFreeSockets 256, LIFO, 4 s idle timeout) and
 * the same client keep-alive timeout, plus the one thing http-proxy needs to stay alive (an
 * 'error' listener). No metrics, no header rules, no path checks, no timeouts, no logging.
 * Plain JavaScript so that no TypeScript loader sits in the measured process.
 *
 * Usage: node test/bench/bare-proxy.mjs http://127.0.0.1:PORT
 * Prints `{"msg":"listening","port":N}` once it listens on 127.0.0.1:0.
 */
import { Agent, createServer } from 'node:http';
import httpProxy from 'http-proxy';

const target = process.argv[2];
if (target === undefined) {
  process.stderr.write('usage: node bare-proxy.mjs <upstream url>\n');
  process.exit(2);
}
const agent = new Agent({ keepAlive: true, maxFreeSockets: 256, scheduling: 'lifo', timeout: 4_000 });
const proxy = httpProxy.createProxyServer({ target, agent, ws: true });
proxy.on('error', (_err, _req, res) => {
  if ('writeHead' in res && !res.headersSent) {
    res.writeHead(502);
    res.end();
  } else {
    res.destroy();
  }
});

const server = createServer((req, res) => proxy.web(req, res));
server.on('upgrade', (req, socket, head) => proxy.ws(req, socket, head));
server.on('clientError', (_err, socket) => socket.destroy());
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
