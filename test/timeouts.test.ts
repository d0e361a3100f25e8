import { createServer as createNetServer } from 'node:net';
import { Agent, type IncomingMessage, type RequestListener, request } from 'node:http';
import { describe, expect, it, onTestFinished } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { type Proxy, httpRequest, sampleValue, startProxy, startServer, startUpstream, until, wsText } from './helpers.js';
import type { ProxyConfig } from '../src/index.js';
import { startBlackholeUpstream } from './ws-peers.js';

async function proxyTo(url: string, overrides: Partial<ProxyConfig>): Promise<Proxy> {
  const proxy = await startProxy(url, overrides);
  onTestFinished(proxy.close);
  return proxy;
}

async function apiErrors(proxy: Proxy): Promise<number | undefined> {
  return sampleValue(await proxy.metrics(), 'apiErrorCount', { type: 'api' });
}

function upstreamErrors(text: string, errorType: string): number | undefined {
  return sampleValue(text, 'metrics_proxy_upstream_errors_total', { error_type: errorType });
}

const CLOCK_PATH = '/api/clock';

/**
 * An exchange through the proxy that moves a byte every 10 ms until `runOut`, then falls silent
 * until the proxy's idle timeout cuts it. Waiting for that cut waits, without a sleep and whatever
 * the machine's load, until the proxy's own sweep has run at least the idle timeout after anything
 * that happened before `runOut`.
 */
interface IdleClock {
  /** The upstream's handler for CLOCK_PATH. */
  readonly handle: RequestListener;
  /** Sends the clock's request through the proxy; resolves once its response head has come. */
  readonly start: (proxyUrl: string) => Promise<void>;
  /** Stops the bytes; resolves once the proxy has cut the exchange. */
  readonly runOut: () => Promise<void>;
}

function createIdleClock(): IdleClock {
  let ticking = true;
  let cut: Promise<void> | undefined;
  return {
    handle(_req, res) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      const timer = setInterval(() => ticking && res.write('.'), 10);
      res.on('close', () => clearInterval(timer));
    },
    start: (proxyUrl) =>
      new Promise((resolve, reject) => {
        const req = request(`${proxyUrl}${CLOCK_PATH}`, { agent: false }, (res) => {
          res.on('error', () => {}); // the cut
          cut = new Promise((done) => res.once('close', done));
          res.resume();
          resolve();
        });
        req.on('error', reject);
        req.end();
      }),
    runOut: async () => {
      ticking = false;
      await cut;
    },
  };
}

describe('upstream timeouts', () => {
  it('answers 504 when the upstream does not accept the connection in time', async () => {
    // A listener in a stopped process with a full accept queue: a connect hangs as towards a black-holed host.
    const blackhole = await startBlackholeUpstream();

    const proxy = await proxyTo(blackhole.url, { connectTimeoutMs: 200 });
    const started = Date.now();
    const res = await httpRequest(`${proxy.url}/api/x`);
    expect(res.status).toBe(504);
    expect(JSON.parse(res.body.toString())).toEqual({ ok: false, msg: 'upstream connect timed out' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
    expect(await apiErrors(proxy)).toBe(1);
  });

  it('counts the TLS handshake as part of connecting', async () => {
    const silent = createNetServer((socket) => socket.on('error', () => {})); // accepts, never speaks TLS
    const running = await startServer(silent);
    onTestFinished(running.close);
    const proxy = await proxyTo(`https://127.0.0.1:${running.port}`, { connectTimeoutMs: 200 });
    const res = await httpRequest(`${proxy.url}/api/x`);
    expect(res.status).toBe(504);
    expect(JSON.parse(res.body.toString())).toEqual({ ok: false, msg: 'upstream connect timed out' });
  });

  it('answers 504 when the response headers do not come in time, and aborts the upstream request', async () => {
    let upstreamClosed = false;
    const upstream = await startUpstream((_req, res) => {
      res.on('close', () => {
        upstreamClosed = true;
      });
    });
    onTestFinished(upstream.close);
    const proxy = await proxyTo(upstream.url, { upstreamTimeoutMs: 150 });
    const res = await httpRequest(`${proxy.url}/api/slow`);
    expect(res.status).toBe(504);
    expect(JSON.parse(res.body.toString())).toEqual({ ok: false, msg: 'upstream response timed out' });
    await until(() => upstreamClosed, 'the upstream request to be aborted');
    expect(await apiErrors(proxy)).toBe(1);
    expect(sampleValue(await proxy.metrics(), 'apiCount', { method: 'GET' })).toBe(1);
  });

  it('does not reuse the socket of a timed-out request', async () => {
    const ports: number[] = [];
    let first = true;
    const upstream = await startUpstream((req, res) => {
      ports.push(req.socket.remotePort ?? 0);
      if (first) {
        first = false;
        return; // never answers
      }
      res.end('ok');
    });
    onTestFinished(upstream.close);
    const proxy = await proxyTo(upstream.url, { upstreamTimeoutMs: 100 });
    expect((await httpRequest(`${proxy.url}/api/a`)).status).toBe(504);
    expect((await httpRequest(`${proxy.url}/api/b`)).status).toBe(200);
    expect(ports).toHaveLength(2);
    expect(ports[0]).not.toBe(ports[1]);
  });

  it('starts the response clock only when the client has sent its whole body', async () => {
    const upstream = await startUpstream((req, res) => {
      req.resume();
      req.on('end', () => res.end('stored'));
    });
    onTestFinished(upstream.close);
    const proxy = await proxyTo(upstream.url, { upstreamTimeoutMs: 150 });
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(`${proxy.url}/api/upload`, { method: 'POST', agent: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      // an upload that takes ~4x the response timeout, in small steps
      let sent = 0;
      const timer = setInterval(() => {
        req.write('x'.repeat(1024));
        if (++sent === 12) {
          clearInterval(timer);
          req.end();
        }
      }, 50);
    });
    expect(answer).toEqual({ status: 200, body: 'stored' });
  });

  it('cuts a response that stalls mid-body (idle timeout) and counts it', async () => {
    const upstream = await startUpstream((_req, res) => {
      res.writeHead(200, { 'content-length': '100' });
      res.write('only part of it');
    });
    onTestFinished(upstream.close);
    const proxy = await proxyTo(upstream.url, { idleTimeoutMs: 150 });
    await expect(httpRequest(`${proxy.url}/api/stall`)).rejects.toThrow();
    await until(() => proxy.logs.some((l) => l.msg === 'upstream request failed' && l.kind === 'idle_timeout'), 'the log line');
    expect(await apiErrors(proxy)).toBe(1);
    // Its own error_type: not a late head (response_timeout); the client got the head, then a cut.
    const text = await proxy.metrics();
    expect(upstreamErrors(text, 'idle_timeout')).toBe(1);
    expect(upstreamErrors(text, 'response_timeout')).toBe(0);
    const labels = {
      http_request_method: 'GET',
      http_response_status_code: '200',
      http_route: '/api/stall',
      error_type: 'idle_timeout',
      network_protocol_version: '1.1',
    };
    expect(sampleValue(text, 'http_server_request_duration_seconds_count', labels)).toBe(1);
  });

  it('applies the timeouts to an upstream that answers byte by byte too slowly', async () => {
    const raw = createNetServer((socket) => {
      socket.on('error', () => {});
      socket.once('data', () => {
        const head = 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok';
        let i = 0;
        const timer = setInterval(() => {
          if (socket.destroyed || i >= head.length) {
            clearInterval(timer);
            return;
          }
          socket.write(head[i++] ?? '');
        }, 40);
        socket.on('close', () => clearInterval(timer));
      });
    });
    const running = await startServer(raw);
    onTestFinished(running.close);
    const proxy = await proxyTo(running.url, { upstreamTimeoutMs: 300 });
    const res = await httpRequest(`${proxy.url}/api/drip`);
    expect(res.status).toBe(504);
    expect(await apiErrors(proxy)).toBe(1);
  });

  it('blames a silent upstream for an idle exchange: 504, counted', async () => {
    let upstreamClosed = false;
    const upstream = await startUpstream((_req, res) => {
      res.on('close', () => {
        upstreamClosed = true;
      });
    });
    onTestFinished(upstream.close);
    const proxy = await proxyTo(upstream.url, { idleTimeoutMs: 150, upstreamTimeoutMs: 0 });
    expect((await httpRequest(`${proxy.url}/api/hang`)).status).toBe(504);
    await until(() => upstreamClosed, 'the upstream request to be released');
    expect(await apiErrors(proxy)).toBe(1);
    // No head came: a late head, whichever timer caught it.
    expect(upstreamErrors(await proxy.metrics(), 'response_timeout')).toBe(1);
  });

  it('blames a client whose upload stalls: its connection is cut, the upstream released, no api error', async () => {
    let upstreamClosed = false;
    let upstreamBytes = 0;
    const upstream = await startUpstream((req, res) => {
      req.on('data', (c: Buffer) => (upstreamBytes += c.length));
      res.on('close', () => {
        upstreamClosed = true;
      });
    });
    onTestFinished(upstream.close);
    const proxy = await proxyTo(upstream.url, { idleTimeoutMs: 150 });
    const clientClosed = new Promise<void>((resolve) => {
      const req = request(`${proxy.url}/api/upload`, { method: 'POST', agent: false, headers: { 'content-length': '100000' } });
      req.on('error', () => resolve());
      req.on('close', () => resolve());
      req.write(Buffer.alloc(1000));
    });
    await clientClosed;
    await until(() => upstreamClosed, 'the upstream request to be released');
    expect(upstreamBytes).toBe(1000);
    expect(await apiErrors(proxy)).toBe(0);
    expect(sampleValue(await proxy.metrics(), 'apiCount', { method: 'POST' })).toBe(1);
    expect(proxy.logs.some((l) => l.msg === 'client stalled: idle timeout')).toBe(true);
  });
});

describe('timeouts watched by the sweep', () => {
  it('lets a slow but steady response outlive the idle timeout: only silence counts', async () => {
    const upstream = await startUpstream((_req, res) => {
      res.writeHead(200, { 'content-length': '12' });
      let sent = 0;
      const drip = setInterval(() => {
        res.write('x');
        if (++sent === 12) {
          clearInterval(drip);
          res.end();
        }
      }, 50);
    });
    onTestFinished(upstream.close);
    const proxy = await proxyTo(upstream.url, { idleTimeoutMs: 200, upstreamTimeoutMs: 200 });
    const res = await httpRequest(`${proxy.url}/api/drip`);
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('x'.repeat(12));
    expect(await apiErrors(proxy)).toBe(0);
  });

  it('does not cut a keep-alive upstream socket that waits in the pool between requests', async () => {
    const clocks: IdleClock[] = [];
    let release: (() => void) | undefined;
    const upstream = await startUpstream((req, res) => {
      if (req.url === CLOCK_PATH) (clocks.at(-1) as IdleClock).handle(req, res);
      else release = () => res.end('ok');
    });
    onTestFinished(upstream.close);
    const proxy = await proxyTo(upstream.url, { idleTimeoutMs: 100, upstreamTimeoutMs: 100 });
    for (let i = 0; i < 3; i++) {
      const answer = httpRequest(`${proxy.url}/api/again`);
      await until(() => release !== undefined, 'the upstream to hold the request');
      // Started while /api/again holds its connection, the clock takes another one. undici's pool hands
      // the next request the first free connection, so /api/again gets its own again, if it is still there.
      const clock = createIdleClock();
      clocks.push(clock);
      await clock.start(proxy.url);
      release?.();
      release = undefined;
      expect((await answer).status).toBe(200);
      // Idle past both timeouts with the upstream socket parked in the proxy's pool.
      await clock.runOut();
    }
    const again = upstream.seen.filter((req) => req.url === '/api/again');
    expect(new Set(again.map((req) => req.socket)).size).toBe(1);
    expect(await apiErrors(proxy)).toBe(clocks.length);
    expect(upstreamErrors(await proxy.metrics(), 'idle_timeout')).toBe(clocks.length);
  });

  it('leaves an open WebSocket session to its own idle timeout, not the HTTP one', async () => {
    const server = (await import('node:http')).createServer();
    const wss = new WebSocketServer({ server });
    wss.on('connection', (ws) => ws.on('message', (data) => ws.send(data)));
    const clock = createIdleClock();
    server.on('request', clock.handle);
    const running = await startServer(server);
    onTestFinished(async () => {
      wss.close();
      await running.close();
    });
    const proxy = await proxyTo(running.url, { idleTimeoutMs: 100, upstreamTimeoutMs: 100, wsIdleTimeoutMs: 0 });
    await clock.start(proxy.url);
    const ws = new WebSocket(`${proxy.url.replace('http', 'ws')}/api/quiet`);
    onTestFinished(() => ws.terminate());
    await new Promise((resolve) => ws.once('open', resolve));
    // Quiet past both HTTP timeouts.
    await clock.runOut();
    expect(ws.readyState).toBe(WebSocket.OPEN);
    ws.send('still there');
    const echoed = await new Promise<string>((resolve) => ws.once('message', (data) => resolve(wsText(data))));
    expect(echoed).toBe('still there');
  });
});

describe('client idle timeout', () => {
  it('is armed on a client connection while the proxy answers it, and off while it forwards (watched upstream)', async () => {
    const upstream = await startUpstream((_req, res) => res.end('ok'));
    onTestFinished(upstream.close);
    const proxy = await proxyTo(upstream.url, { idleTimeoutMs: 100 });
    const seen: Array<[string, number | undefined]> = [];
    // Runs after the router's listener, so it sees the socket timeout the router left for this request.
    proxy.app.server.on('request', (req: IncomingMessage) => seen.push([req.url ?? '', req.socket.timeout]));
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    onTestFinished(() => agent.destroy());
    for (const path of ['/elsewhere', '/api/x', '/metrics', '/api/y']) {
      await new Promise<void>((resolve, reject) => {
        request(`${proxy.url}${path}`, { agent }, (res) => {
          res.resume();
          res.on('end', resolve);
        }).on('error', reject).end();
      });
    }
    expect(seen).toEqual([
      ['/elsewhere', 1_100],
      ['/api/x', 0],
      ['/metrics', 1_100],
      ['/api/y', 0],
    ]);
    expect(new Set(upstream.seen.map((req) => req.socket.remotePort)).size).toBe(1);
  });
});

describe('websocket idle timeout', () => {
  it('closes an idle session on both sides with 1001, and leaves busy sessions alone', async () => {
    const server = (await import('node:http')).createServer();
    const wss = new WebSocketServer({ server });
    const upstreamCloses: number[] = [];
    wss.on('connection', (ws) => {
      ws.on('message', (data) => ws.send(data));
      ws.on('close', (code) => upstreamCloses.push(code));
    });
    const running = await startServer(server);
    onTestFinished(async () => {
      wss.close();
      await running.close();
    });
    const proxy = await proxyTo(running.url, { wsIdleTimeoutMs: 300 });
    const wsUrl = `${proxy.url.replace('http', 'ws')}/api/socket`;

    const busy = new WebSocket(wsUrl);
    const idle = new WebSocket(wsUrl);
    await Promise.all([busy, idle].map((ws) => new Promise((resolve) => ws.once('open', resolve))));
    const pinger = setInterval(() => busy.send('still here'), 50);
    onTestFinished(() => clearInterval(pinger));

    const idleCode = await new Promise<number>((resolve) => idle.once('close', (code) => resolve(code)));
    expect(idleCode).toBe(1001);
    await until(() => upstreamCloses.includes(1001), 'the upstream side to see 1001');
    expect(busy.readyState).toBe(WebSocket.OPEN);
    clearInterval(pinger);
    busy.close();
  });
});
