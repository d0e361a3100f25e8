/**
 * The built-in demo upstream behind `--demo`: enough of a service to see
 * metrics move without having one at hand. Listens on loopback only.
 */
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathOf } from '../proxy/url-parts.js';
import { errorBody, sendJson } from '../respond.js';

export interface DemoUpstream {
  readonly url: URL;
  close(): Promise<void>;
}

export function createDemoServer(): Server {
  return createServer((req, res) => {
    const path = pathOf(req.url);
    if (path === '/api/ping' && (req.method === 'GET' || req.method === 'HEAD')) {
      sendJson(res, 200, { message: 'hello world' });
    } else if (path === '/api/fail') {
      sendJson(res, 500, errorBody('the demo upstream failed on purpose'));
    } else {
      sendJson(res, 404, errorBody('not found'));
    }
  });
}

export async function startDemoUpstream(): Promise<DemoUpstream> {
  const server = createDemoServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: new URL(`http://127.0.0.1:${port}`),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
