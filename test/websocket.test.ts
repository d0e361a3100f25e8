import { createServer } from 'node:http';
import type { Socket } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { type Proxy, rawExchange, sampleValue, settle, startProxy, startServer, startUpstream, until, deadUpstreamUrl } from './helpers.js';

/** A WebSocket echo upstream; `sessions` holds the server side of each open session. */
async function startWsUpstream() {
  const server = createServer((_req, res) => {
    res.writeHead(426);
    res.end();
  });
  const wss = new WebSocketServer({ server });
  const sessions: WebSocket[] = [];
  const paths: string[] = [];
  wss.on('connection', (ws, req) => {
    // protocol errors (e.g. invalid UTF-8 sent on purpose) close the session; they are not test failures
    ws.on('error', () => {});
    sessions.push(ws);
    paths.push(req.url ?? '');
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  const running = await startServer(server);
  onTestFinished(async () => {
    wss.close();
    await running.close();
  });
  return { ...running, sessions, paths };
}

async function proxyTo(url: string): Promise<Proxy> {
  const proxy = await startProxy(url);
  onTestFinished(proxy.close);
  return proxy;
}

function open(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** Resolves with the status of a refused handshake. */
function refusedStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.once('open', () => reject(new Error('the handshake should have failed')));
    ws.once('error', () => {});
  });
}

function nextMessage(ws: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  return new Promise((resolve) => ws.once('message', (data, isBinary) => resolve({ data: data as Buffer, isBinary })));
}

describe('websocket', () => {
  it('relays text and binary frames both ways and counts the handshake once', async () => {
    const upstream = await startWsUpstream();
    const proxy = await proxyTo(upstream.url);
    const ws = await open(`${proxy.url.replace('http', 'ws')}/api/socket?room=1`);
    expect(upstream.paths).toEqual(['/api/socket?room=1']);

    ws.send('hello');
    const text = await nextMessage(ws);
    expect(text.isBinary).toBe(false);
    expect(text.data.toString()).toBe('hello');

    const blob = Buffer.from(Array.from({ length: 70_000 }, (_, i) => i % 256));
    ws.send(blob);
    const binary = await nextMessage(ws);
    expect(binary.isBinary).toBe(true);
    expect(binary.data.equals(blob)).toBe(true);

    // and the upstream can push unprompted
    upstream.sessions[0]?.send('pushed');
    expect((await nextMessage(ws)).data.toString()).toBe('pushed');

    const metrics = await proxy.metrics();
    expect(sampleValue(metrics, 'apiCount', { method: 'GET' })).toBe(1);
    expect(sampleValue(metrics, 'apiDuration_count', { method: 'GET' })).toBe(1);
    expect(sampleValue(metrics, 'apiErrorCount', { type: 'ws' })).toBe(0);

    const closed = new Promise<number>((resolve) => upstream.sessions[0]?.once('close', (code) => resolve(code)));
    ws.close(1000, 'bye');
    expect(await closed).toBe(1000);
    await until(() => proxy.app.server.listening && upstream.sessions[0]?.readyState === WebSocket.CLOSED, 'close');
  });

  it('closes the client side when the upstream closes the session', async () => {
    const upstream = await startWsUpstream();
    const proxy = await proxyTo(upstream.url);
    const ws = await open(`${proxy.url.replace('http', 'ws')}/api/socket`);
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    upstream.sessions[0]?.close(4000, 'done');
    expect(await closed).toBe(4000);
    expect(sampleValue(await proxy.metrics(), 'apiErrorCount', { type: 'ws' })).toBe(0);
  });

  it('answers 502 to an upgrade when the upstream is down, and counts a ws error', async () => {
    const goneUrl = await deadUpstreamUrl();
    const proxy = await proxyTo(goneUrl);
    expect(await refusedStatus(`${proxy.url.replace('http', 'ws')}/api/socket`)).toBe(502);
    const metrics = await proxy.metrics();
    expect(sampleValue(metrics, 'apiErrorCount', { type: 'ws' })).toBe(1);
    expect(sampleValue(metrics, 'apiErrorCount', { type: 'api' })).toBe(0);
    expect(sampleValue(metrics, 'apiCount', { method: 'GET' })).toBe(1);
    expect(sampleValue(metrics, 'apiDuration_count', { method: 'GET' })).toBe(1);
  });

  it('relays a refused upgrade (no 101) and counts a ws error', async () => {
    const upstream = await startUpstream((_req, res) => {
      res.writeHead(403, { 'content-type': 'text/plain' });
      res.end('no sockets for you');
    });
    onTestFinished(upstream.close);
    const proxy = await proxyTo(upstream.url);
    expect(await refusedStatus(`${proxy.url.replace('http', 'ws')}/api/socket`)).toBe(403);
    const metrics = await proxy.metrics();
    expect(sampleValue(metrics, 'apiErrorCount', { type: 'ws' })).toBe(1);
    expect(sampleValue(metrics, 'apiCount', { method: 'GET' })).toBe(1);
  });

  it('counts a ws error when the upstream side of an open session fails, and closes the client', async () => {
    const upstream = await startWsUpstream();
    const proxy = await proxyTo(upstream.url);
    const ws = await open(`${proxy.url.replace('http', 'ws')}/api/socket`);
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    ws.on('error', () => {});
    const upstreamSocket = (upstream.sessions[0] as unknown as { _socket: Socket })._socket;
    upstreamSocket.resetAndDestroy();
    expect(await closed).toBe(1006);
    await until(() => proxy.logs.some((l) => l.msg === 'websocket upstream connection failed'), 'the error log');
    expect(sampleValue(await proxy.metrics(), 'apiErrorCount', { type: 'ws' })).toBe(1);
  });

  it('closes the upstream session when the client vanishes', async () => {
    const upstream = await startWsUpstream();
    const proxy = await proxyTo(upstream.url);
    const ws = await open(`${proxy.url.replace('http', 'ws')}/api/socket`);
    const upstreamClosed = new Promise<void>((resolve) => upstream.sessions[0]?.once('close', () => resolve()));
    ws.terminate();
    await upstreamClosed;
    expect(sampleValue(await proxy.metrics(), 'apiErrorCount', { type: 'ws' })).toBe(0);
  });

  it('leaks no socket when the upstream closes a session while the client is still sending', async () => {
    const upstream = await startWsUpstream();
    const proxy = await proxyTo(upstream.url);
    const clients = await Promise.all(Array.from({ length: 20 }, () => open(`${proxy.url.replace('http', 'ws')}/api/socket`)));
    const closed = clients.map((ws) => new Promise<void>((resolve) => ws.once('close', () => resolve())));
    for (const ws of clients) {
      ws.on('error', () => {});
      // invalid UTF-8 in a text frame: the upstream answers 1007 and closes at once…
      ws.send(Buffer.from([0xff, 0xfe]), { binary: false });
      // …while the client keeps talking
      const chatter = setInterval(() => ws.readyState === WebSocket.OPEN && ws.send('more'), 1);
      ws.once('close', () => clearInterval(chatter));
    }
    await Promise.all(closed);
    const connections = (): Promise<number> =>
      new Promise((resolve, reject) => proxy.app.server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
    const remaining = await settle(connections, (n) => n === 0);
    expect(remaining).toBe(0);
    expect(sampleValue(await proxy.metrics(), 'apiErrorCount', { type: 'ws' })).toBe(0);
  });

  it('refuses upgrades outside the prefix, and answers non-websocket upgrades as plain requests (never 400 or 101)', async () => {
    const upstream = await startWsUpstream();
    const proxy = await proxyTo(upstream.url);
    expect(await refusedStatus(`${proxy.url.replace('http', 'ws')}/socket`)).toBe(404);
    expect(await refusedStatus(`${proxy.url.replace('http', 'ws')}/api/..%2fsocket`)).toBe(400);
    const h2c = await rawExchange(
      proxy.port,
      'GET /api/x HTTP/1.1\r\nhost: x\r\nconnection: upgrade, http2-settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAAP__\r\n\r\n',
    );
    // RFC 9110 §7.8: an upgrade the proxy does not take is ignored, and the request forwarded as plain HTTP/1.1.
    expect(h2c).not.toMatch(/^HTTP\/1\.1 (400|101) /);
    expect(upstream.paths).toEqual([]);
    expect(sampleValue(await proxy.metrics(), 'apiCount', { method: 'GET' })).toBe(1);
  });

  it('lets a server shutdown end open sessions', async () => {
    const upstream = await startWsUpstream();
    const proxy = await startProxy(upstream.url);
    const ws = await open(`${proxy.url.replace('http', 'ws')}/api/socket`);
    const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
    await proxy.close();
    await closed;
    expect(proxy.app.server.listening).toBe(false);
  });
});
