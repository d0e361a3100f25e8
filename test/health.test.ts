import { describe, expect, it, onTestFinished } from 'vitest';
import WebSocket from 'ws';
import type { ProxyConfig } from '../src/index.js';
import { type Proxy, echoHandler, httpRequest, parseExposition, rawExchange, sampleValue, startProxy, startUpstream, until, deadUpstreamUrl } from './helpers.js';

async function setup(overrides: Partial<ProxyConfig> = {}, handler = echoHandler) {
  const upstream = await startUpstream(handler);
  onTestFinished(upstream.close);
  const proxy = await startProxy(upstream.url, overrides);
  onTestFinished(proxy.close);
  return { upstream, proxy };
}

function json(body: Buffer): unknown {
  return JSON.parse(body.toString());
}

describe('health endpoints', () => {
  it('answers /healthz and /readyz itself, never forwarding or counting them, even under prefix /', async () => {
    const { upstream, proxy } = await setup({ apiPrefix: '/' });
    const live = await httpRequest(`${proxy.url}/healthz`);
    expect(live.status).toBe(200);
    expect(json(live.body)).toEqual({ ok: true });
    const ready = await httpRequest(`${proxy.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(json(ready.body)).toEqual({ ok: true });
    expect(upstream.seen).toHaveLength(0);
    expect(parseExposition(await proxy.metrics()).filter((s) => s.name === 'apiCount')).toEqual([]);
  });

  it('reports not ready with a reason when the upstream is unreachable', async () => {
    const goneUrl = await deadUpstreamUrl();
    const proxy = await startProxy(goneUrl);
    onTestFinished(proxy.close);
    const ready = await httpRequest(`${proxy.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(json(ready.body)).toEqual({ ok: false, msg: 'upstream unreachable: ECONNREFUSED' });
    expect((await httpRequest(`${proxy.url}/healthz`)).status).toBe(200);
  });

  it('checks --ready-path over HTTP and caches the answer for a second', async () => {
    let checks = 0;
    const { proxy } = await setup({ readyPath: '/ready' }, (req, res) => {
      if (req.url === '/ready') checks++;
      res.writeHead(req.url === '/ready' ? 503 : 200);
      res.end();
    });
    for (let i = 0; i < 5; i++) {
      const ready = await httpRequest(`${proxy.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(json(ready.body)).toEqual({ ok: false, msg: 'upstream ready path answered 503' });
    }
    expect(checks).toBeGreaterThanOrEqual(1);
    expect(checks).toBeLessThan(5);
  });

  it('turns not ready at once when draining, keeps serving through the drain delay, and asks clients to close', async () => {
    const { proxy } = await setup({ drainDelayMs: 400, shutdownTimeoutMs: 1_000 });
    expect((await httpRequest(`${proxy.url}/readyz`)).status).toBe(200);
    const stopped = proxy.app.shutdown();
    const ready = await httpRequest(`${proxy.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(json(ready.body)).toEqual({ ok: false, msg: 'draining' });
    const during = await httpRequest(`${proxy.url}/api/still-served`);
    expect(during.status).toBe(200);
    expect(during.headers.connection).toBe('close');
    await stopped;
    expect(proxy.app.server.listening).toBe(false);
  });
});

describe('separate admin listener (--metrics-port)', () => {
  it('serves metrics and health only on the admin port; the main port reserves the metrics path', async () => {
    const { upstream, proxy } = await setup({ metricsPort: 0, apiPrefix: '/' });
    expect(proxy.adminUrl).toBeDefined();
    const admin = proxy.adminUrl as string;

    const onMain = await httpRequest(`${proxy.url}/metrics`);
    expect(onMain.status).toBe(404);
    expect(upstream.seen).toHaveLength(0);

    const scraped = await httpRequest(`${admin}/metrics`);
    expect(scraped.status).toBe(200);
    expect(scraped.body.toString()).toContain('# TYPE apiCount counter');
    expect((await httpRequest(`${admin}/healthz`)).status).toBe(200);
    expect((await httpRequest(`${admin}/readyz`)).status).toBe(200);

    // the admin port forwards nothing, not even under the prefix
    expect((await httpRequest(`${admin}/api/x`)).status).toBe(404);
    expect(await rawExchange(Number(new URL(admin).port), 'GET /api/ws HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n')).toMatch(
      /^HTTP\/1\.1 404 /,
    );
    expect(upstream.seen).toHaveLength(0);

    // with prefix "/" the main port forwards health paths to the service: they belong to the admin port now
    expect((await httpRequest(`${proxy.url}/healthz`)).headers['x-echo-url']).toBe('/healthz');
  });
});

describe('metrics bearer token', () => {
  it('requires the token on the metrics path only, compared exactly', async () => {
    const { proxy } = await setup({ metricsToken: 's3cret-token' });
    const none = await httpRequest(`${proxy.url}/metrics`);
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toBe('Bearer realm="metrics"');
    expect(none.body.toString()).not.toContain('apiCount');
    for (const authorization of ['Bearer wrong', 'Bearer s3cret-toke', 'Bearer s3cret-token2', 'Basic czNjcmV0LXRva2Vu', 's3cret-token']) {
      expect((await httpRequest(`${proxy.url}/metrics`, { headers: { authorization } })).status, authorization).toBe(401);
    }
    const ok = await httpRequest(`${proxy.url}/metrics`, { headers: { authorization: 'Bearer s3cret-token' } });
    expect(ok.status).toBe(200);
    expect(sampleValue(ok.body.toString(), 'apiErrorCount', { type: 'api' })).toBe(0);
    expect((await httpRequest(`${proxy.url}/healthz`)).status).toBe(200);
  });
});

describe('drain of WebSocket sessions', () => {
  it('closes open sessions with 1001 on shutdown', async () => {
    const { WebSocketServer } = await import('ws');
    const { createServer } = await import('node:http');
    const { startServer } = await import('./helpers.js');
    const server = createServer();
    const wss = new WebSocketServer({ server });
    const upstreamCodes: number[] = [];
    wss.on('connection', (ws) => ws.on('close', (code) => upstreamCodes.push(code)));
    const running = await startServer(server);
    onTestFinished(async () => {
      wss.close();
      await running.close();
    });
    const proxy: Proxy = await startProxy(running.url, { shutdownTimeoutMs: 2_000 });
    const ws = new WebSocket(`${proxy.url.replace('http', 'ws')}/api/socket`);
    await new Promise((resolve) => ws.once('open', resolve));
    const code = new Promise<number>((resolve) => ws.once('close', (c) => resolve(c)));
    await proxy.app.shutdown();
    expect(await code).toBe(1001);
    await until(() => upstreamCodes.length === 1, 'the upstream to see the close');
    expect(upstreamCodes).toEqual([1001]);
  });
});
