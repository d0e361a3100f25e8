import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { request } from 'node:http';
import { type Socket, createServer as createNetServer } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { type Proxy, deadUpstreamUrl, httpRequest, reservePort, sampleValue, startProxy, startServer, startUpstream, until } from './helpers.js';

async function apiErrors(proxy: Proxy): Promise<number | undefined> {
  return sampleValue(await proxy.metrics(), 'apiErrorCount', { type: 'api' });
}

async function apiCount(proxy: Proxy, method = 'GET'): Promise<number | undefined> {
  return sampleValue(await proxy.metrics(), 'apiCount', { method });
}

/** An upstream speaking raw TCP, to misbehave in ways an HTTP server will not. */
async function startRawUpstream(onConnection: (socket: Socket) => void) {
  const server = createNetServer((socket) => {
    socket.on('error', () => {});
    onConnection(socket);
  });
  const running = await startServer(server);
  onTestFinished(running.close);
  return running;
}

async function proxyTo(url: string): Promise<Proxy> {
  const proxy = await startProxy(url);
  onTestFinished(proxy.close);
  return proxy;
}

describe('upstream faults', () => {
  it('passes an upstream 500 through and counts it as an api error', async () => {
    const upstream = await startUpstream((_req, res) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('boom');
    });
    onTestFinished(upstream.close);
    const proxy = await proxyTo(upstream.url);
    const res = await httpRequest(`${proxy.url}/api/fail`);
    expect(res.status).toBe(500);
    expect(res.body.toString()).toBe('boom');
    expect(await apiErrors(proxy)).toBe(1);
    expect(await apiCount(proxy)).toBe(1);
  });

  it('does not count 4xx as errors', async () => {
    const upstream = await startUpstream((_req, res) => {
      res.writeHead(404);
      res.end();
    });
    onTestFinished(upstream.close);
    const proxy = await proxyTo(upstream.url);
    expect((await httpRequest(`${proxy.url}/api/missing`)).status).toBe(404);
    expect(await apiErrors(proxy)).toBe(0);
    expect(await apiCount(proxy)).toBe(1);
  });

  it('answers 502 JSON when the upstream is down, counts it, and recovers when it is back', async () => {
    // The port stays reserved while the upstream is down: no parallel test's listener can take it.
    const port = await reservePort();
    onTestFinished(port.close);
    const upstream = await startUpstream((_req, res) => res.end('up'), port.port);
    const proxy = await proxyTo(upstream.url);
    expect((await httpRequest(`${proxy.url}/api/a`)).body.toString()).toBe('up');
    await upstream.close();

    for (let i = 0; i < 3; i++) {
      const res = await httpRequest(`${proxy.url}/api/a`);
      expect(res.status).toBe(502);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(JSON.parse(res.body.toString())).toEqual({ ok: false, msg: 'upstream unreachable: connection refused' });
    }
    expect(await apiErrors(proxy)).toBe(3);

    // back on the old port: the proxy's target is valid again
    const revived = await startUpstream((_req, res) => res.end('back on the same port'), port.port);
    onTestFinished(revived.close);
    expect((await httpRequest(`${proxy.url}/api/a`)).body.toString()).toBe('back on the same port');
    expect(await apiCount(proxy)).toBe(5);
    expect(await apiErrors(proxy)).toBe(3);
  });

  it('answers 502 when the upstream host does not resolve', async () => {
    const proxy = await proxyTo('http://metrics-proxy-test.invalid:80');
    const res = await httpRequest(`${proxy.url}/api/x`);
    expect(res.status).toBe(502);
    expect(JSON.parse(res.body.toString())).toEqual({ ok: false, msg: 'upstream host could not be resolved' });
    expect(await apiErrors(proxy)).toBe(1);
  });

  it('answers 502 when the upstream TLS certificate is not trusted', async () => {
    const dir = new URL('./fixtures/', import.meta.url);
    const tls = createHttpsServer(
      { key: readFileSync(new URL('self-signed.key', dir)), cert: readFileSync(new URL('self-signed.crt', dir)) },
      (_req, res) => res.end('secret'),
    );
    const running = await startServer(tls);
    onTestFinished(running.close);
    const proxy = await proxyTo(`https://localhost:${running.port}`);
    const res = await httpRequest(`${proxy.url}/api/x`);
    expect(res.status).toBe(502);
    expect(JSON.parse(res.body.toString())).toEqual({ ok: false, msg: 'TLS handshake with upstream failed' });
    expect(await apiErrors(proxy)).toBe(1);
  });

  it('answers 502 when the upstream sends garbage instead of HTTP', async () => {
    const raw = await startRawUpstream((socket) => socket.once('data', () => socket.end('SSH-2.0-OpenSSH_9.2\r\n\r\n')));
    const proxy = await proxyTo(raw.url);
    const res = await httpRequest(`${proxy.url}/api/x`);
    expect(res.status).toBe(502);
    expect(JSON.parse(res.body.toString())).toEqual({ ok: false, msg: 'upstream sent an invalid HTTP response' });
    expect(await apiErrors(proxy)).toBe(1);
  });

  it('answers 502 when the upstream closes without answering', async () => {
    const raw = await startRawUpstream((socket) => socket.once('data', () => socket.end()));
    const proxy = await proxyTo(raw.url);
    const res = await httpRequest(`${proxy.url}/api/x`);
    expect(res.status).toBe(502);
    expect(JSON.parse(res.body.toString())).toEqual({ ok: false, msg: 'upstream closed the connection' });
    expect(await apiErrors(proxy)).toBe(1);
  });

  it('breaks the client connection when the upstream resets mid-body, and counts it once', async () => {
    const raw = await startRawUpstream((socket) =>
      socket.once('data', () => {
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n');
        socket.write(Buffer.alloc(1000, 1), () => socket.resetAndDestroy());
      }),
    );
    const proxy = await proxyTo(raw.url);
    await expect(httpRequest(`${proxy.url}/api/x`)).rejects.toThrow();
    await until(() => proxy.logs.some((l) => l.msg === 'upstream closed the connection mid-response'), 'the proxy log');
    expect(await apiErrors(proxy)).toBe(1);
    expect(await apiCount(proxy)).toBe(1);
  });

  it('breaks a chunked response cut short by the upstream, so the client cannot take it as complete', async () => {
    const raw = await startRawUpstream((socket) =>
      socket.once('data', () => {
        socket.end('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n');
      }),
    );
    const proxy = await proxyTo(raw.url);
    await expect(httpRequest(`${proxy.url}/api/x`)).rejects.toThrow();
    expect(await apiErrors(proxy)).toBe(1);
  });
});

describe('client faults', () => {
  it('cancels the upstream request when the client disconnects while waiting', async () => {
    let upstreamClosed = false;
    const upstream = await startUpstream((_req, res) => {
      res.on('close', () => {
        upstreamClosed = true;
      });
    });
    onTestFinished(upstream.close);
    const proxy = await proxyTo(upstream.url);

    const req = request(`${proxy.url}/api/slow`, { agent: false });
    req.on('error', () => {});
    req.end();
    await until(() => upstream.seen.length === 1, 'the upstream to receive the request');
    req.destroy();
    await until(() => upstreamClosed, 'the proxy to release the upstream request');

    expect(await apiCount(proxy)).toBe(1);
    expect(await apiErrors(proxy)).toBe(0);
    expect((await httpRequest(`${proxy.url}/metrics`)).status).toBe(200);
  });

  it('cancels the upstream request when the client disconnects mid-upload', async () => {
    let upstreamBytes = 0;
    let upstreamAborted = false;
    const upstream = await startUpstream((req, res) => {
      req.on('data', (c: Buffer) => {
        upstreamBytes += c.length;
      });
      res.on('close', () => {
        upstreamAborted = !res.writableFinished;
      });
    });
    onTestFinished(upstream.close);
    const proxy = await proxyTo(upstream.url);

    const req = request(`${proxy.url}/api/upload`, { method: 'POST', agent: false, headers: { 'content-length': '1000000' } });
    req.on('error', () => {});
    req.write(Buffer.alloc(10_000, 1));
    await until(() => upstreamBytes === 10_000, 'the first bytes to reach the upstream');
    req.destroy();
    await until(() => upstreamAborted, 'the upstream request to be aborted');
    expect(await apiCount(proxy, 'POST')).toBe(1);
    expect(await apiErrors(proxy)).toBe(0);
  });

  it('survives a client that disconnects mid-download', async () => {
    const upstream = await startUpstream((_req, res) => {
      res.writeHead(200);
      const timer = setInterval(() => res.write(Buffer.alloc(64 * 1024)), 1);
      res.on('close', () => clearInterval(timer));
    });
    onTestFinished(upstream.close);
    const proxy = await proxyTo(upstream.url);
    await new Promise<void>((resolve) => {
      const req = request(`${proxy.url}/api/download`, { agent: false }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => {});
      req.end();
    });
    await until(() => upstream.seen[0]?.socket.destroyed === true, 'the upstream connection to close');
    expect(await apiCount(proxy)).toBe(1);
    expect(await apiErrors(proxy)).toBe(0);
  });
});

describe('log lines', () => {
  const SECRET = 'token=s3cr3t';
  const answer = (socket: Socket): void => {
    socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
  };
  // Every line the HTTP exchange writes, at each level, for a request whose query carries a secret.
  const cases: Array<{ line: string; method: string; run: () => Promise<Proxy> }> = [
    {
      line: 'upstream request failed',
      method: 'GET',
      run: async () => {
        const proxy = await proxyTo(await deadUpstreamUrl());
        expect((await httpRequest(`${proxy.url}/api/x?${SECRET}`)).status).toBe(502);
        return proxy;
      },
    },
    {
      line: 'upstream closed the connection mid-response',
      method: 'GET',
      run: async () => {
        const raw = await startRawUpstream((socket) =>
          socket.once('data', () => {
            socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npart', () => socket.resetAndDestroy());
          }),
        );
        const proxy = await proxyTo(raw.url);
        await expect(httpRequest(`${proxy.url}/api/x?${SECRET}`)).rejects.toThrow();
        return proxy;
      },
    },
    {
      line: 'retrying on a fresh upstream connection',
      method: 'GET',
      run: async () => {
        // The first connection answers once, then closes under the next request.
        let connections = 0;
        const raw = await startRawUpstream((socket) => {
          if (++connections > 1) {
            socket.on('data', () => answer(socket));
            return;
          }
          socket.once('data', () => {
            answer(socket);
            socket.once('data', () => socket.destroy());
          });
        });
        const proxy = await proxyTo(raw.url);
        expect((await httpRequest(`${proxy.url}/api/x`)).status).toBe(200);
        expect((await httpRequest(`${proxy.url}/api/x?${SECRET}`)).status).toBe(200);
        return proxy;
      },
    },
    {
      line: 'client stalled: idle timeout',
      method: 'POST',
      run: async () => {
        const upstream = await startUpstream((req) => req.resume());
        onTestFinished(upstream.close);
        const proxy = await startProxy(upstream.url, { idleTimeoutMs: 100 });
        onTestFinished(proxy.close);
        await new Promise<void>((resolve) => {
          const req = request(`${proxy.url}/api/x?${SECRET}`, { method: 'POST', agent: false, headers: { 'content-length': '1000' } });
          req.on('error', () => resolve());
          req.on('close', () => resolve());
          req.write('only part of it');
        });
        return proxy;
      },
    },
  ];

  it.each(cases)('keep the query string out of $line', async ({ line, method, run }) => {
    const proxy = await run();
    await until(() => proxy.logs.some((l) => l.msg === line), `the line "${line}"`);
    expect(proxy.logs.find((l) => l.msg === line)).toMatchObject({ method, path: '/api/x' });
    expect(JSON.stringify(proxy.logs)).not.toContain('s3cr3t');
  });
});
