/**
 * The bearer check's 401 is one of the proxy's own JSON answers (respond.ts): a Content-Length like
 * every other, the challenge header, and a keep-alive connection that carries the next request.
 */
import { Agent, request } from 'node:http';
import { describe, expect, it, onTestFinished } from 'vitest';
import { echoHandler, startProxy, startUpstream } from './helpers.js';

describe('the 401 of a missing or wrong bearer token', () => {
  it('has a Content-Length, the Bearer challenge and a JSON error body, and keeps the connection', async () => {
    const upstream = await startUpstream(echoHandler);
    onTestFinished(upstream.close);
    const proxy = await startProxy(upstream.url, { metricsToken: 's3cret-token' });
    onTestFinished(proxy.close);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    onTestFinished(() => agent.destroy());
    const get = (authorization?: string) =>
      new Promise<{ status: number; headers: Record<string, unknown>; body: string; socket: unknown }>((resolve, reject) => {
        const headers = authorization === undefined ? {} : { authorization };
        request(`${proxy.url}/metrics`, { agent, headers }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString(), socket: res.socket }));
        })
          .on('error', reject)
          .end();
      });
    const refused = await get('Bearer wrong');
    expect({ status: refused.status, headers: refused.headers, body: JSON.parse(refused.body) as unknown }).toMatchObject({
      status: 401,
      headers: {
        'www-authenticate': 'Bearer realm="metrics"',
        'content-type': 'application/json; charset=utf-8',
        'content-length': String(Buffer.byteLength(refused.body)),
      },
      body: { ok: false, msg: 'missing or wrong bearer token' },
    });
    expect(refused.headers['transfer-encoding']).toBeUndefined();
    const ok = await get('Bearer s3cret-token');
    expect(ok.status).toBe(200);
    expect(ok.socket).toBe(refused.socket);
  });
});
