import { createHash, randomBytes } from 'node:crypto';
import { request } from 'node:http';
import type { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { createServer as createNetServer } from 'node:net';
import {
  type Proxy,
  type Running,
  type Upstream,
  echoHandler,
  httpRequest,
  rawExchange,
  sampleValue,
  settle,
  startProxy,
  startServer,
  startUpstream,
  pumpBody,
} from './helpers.js';

describe('forwarding', () => {
  let upstream: Upstream;
  let proxy: Proxy;

  beforeAll(async () => {
    upstream = await startUpstream(echoHandler);
    proxy = await startProxy(upstream.url);
  });
  afterAll(async () => {
    await proxy.close();
    await upstream.close();
  });

  it('forwards path and query unchanged', async () => {
    const res = await httpRequest(`${proxy.url}/api/ping?x=1&y=%20z&x=2`);
    expect(res.status).toBe(200);
    expect(res.headers['x-echo-url']).toBe('/api/ping?x=1&y=%20z&x=2');
    expect(upstream.seen.at(-1)?.url).toBe('/api/ping?x=1&y=%20z&x=2');
  });

  it.each(['POST', 'PUT', 'PATCH', 'DELETE'])('echoes a binary %s body byte for byte', async (method) => {
    const body = randomBytes(256 * 1024);
    const res = await httpRequest(`${proxy.url}/api/echo`, { method, body, headers: { 'content-type': 'application/octet-stream' } });
    expect(res.status).toBe(200);
    expect(res.headers['x-echo-method']).toBe(method);
    expect(res.body.equals(body)).toBe(true);
  });

  it('adds X-Forwarded-* and strips hop-by-hop headers', async () => {
    await httpRequest(`${proxy.url}/api/headers`, {
      headers: {
        host: 'service.example:8443',
        connection: 'keep-alive, x-private',
        'x-private': 'secret',
        'keep-alive': 'timeout=5',
        'proxy-authorization': 'Basic Zm9vOmJhcg==',
        te: 'trailers',
        'x-forwarded-for': '203.0.113.7',
        'x-custom': 'kept',
      },
    });
    const seen = upstream.seen.at(-1)?.headers ?? {};
    expect(seen['x-forwarded-for']).toBe('203.0.113.7, 127.0.0.1');
    expect(seen['x-forwarded-proto']).toBe('http');
    expect(seen['x-forwarded-host']).toBe('service.example:8443');
    expect(seen.host).toBe('service.example:8443');
    expect(seen['x-custom']).toBe('kept');
    for (const name of ['x-private', 'keep-alive', 'proxy-authorization', 'te']) expect(seen[name], name).toBeUndefined();
  });

  it('keeps X-Forwarded-Proto and -Host set by an ingress in front', async () => {
    await httpRequest(`${proxy.url}/api/headers`, {
      headers: { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'public.example' },
    });
    const seen = upstream.seen.at(-1)?.headers ?? {};
    expect(seen['x-forwarded-proto']).toBe('https');
    expect(seen['x-forwarded-host']).toBe('public.example');
  });

  it('reuses upstream connections (keep-alive pool)', async () => {
    const before = upstream.seen.length;
    for (let i = 0; i < 5; i++) await httpRequest(`${proxy.url}/api/ka/${i}`);
    const ports = new Set(upstream.seen.slice(before).map((r) => r.socket.remotePort));
    expect(upstream.seen.length - before).toBe(5);
    expect(ports.size).toBe(1);
  });

  it('relays the upstream response headers and status', async () => {
    const custom = await startUpstream((_req, res) => {
      res.writeHead(418, { 'x-upstream': 'yes', 'set-cookie': ['a=1', 'b=2'], 'keep-alive': 'timeout=99' });
      res.end('teapot');
    });
    onTestFinished(custom.close);
    const p = await startProxy(custom.url);
    onTestFinished(p.close);
    const res = await httpRequest(`${p.url}/api/tea`);
    expect(res.status).toBe(418);
    expect(res.headers['x-upstream']).toBe('yes');
    expect(res.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    expect(res.headers['keep-alive']).toBeUndefined();
    expect(res.body.toString()).toBe('teapot');
  });

  it.each([
    ['HTTP/1.1 with Connection: close', 'GET /api/close HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'],
    ['HTTP/1.0', 'GET /api/close HTTP/1.0\r\nhost: x\r\n\r\n'],
  ])('honours a client that wants the connection closed (%s)', async (_name, raw) => {
    const started = Date.now();
    const answer = await rawExchange(proxy.port, raw, 10_000);
    expect(answer).toMatch(/^HTTP\/1\.[01] 200 /);
    expect(answer.toLowerCase()).toContain('\r\nconnection: close\r\n');
    // rawExchange resolves when the proxy closes the socket, long before its 10 s fallback
    expect(Date.now() - started).toBeLessThan(9_000);
  });

  it('keeps a keep-alive client connection open across requests', async () => {
    const answer = await rawExchange(
      proxy.port,
      'GET /api/one HTTP/1.1\r\nhost: x\r\n\r\nGET /api/two HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n',
      10_000,
    );
    expect(answer.match(/HTTP\/1\.1 200 /g)).toHaveLength(2);
    expect(answer.toLowerCase()).toContain('connection: keep-alive');
  });

  it('answers a deep pipeline in order, each request counted once, and finishes what a cut pipeline left queued', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => {
      warnings.push(w);
    };
    process.on('warning', onWarning);
    onTestFinished(() => {
      process.off('warning', onWarning);
    });
    const p = await startProxy(upstream.url);
    onTestFinished(p.close);
    const pipeline = (n: number, last: string) =>
      Array.from({ length: n }, (_v, i) => `GET /api/pipe/${i} HTTP/1.1\r\nhost: x\r\n${i === n - 1 ? last : ''}\r\n`).join('');
    const answer = await rawExchange(p.port, pipeline(30, 'connection: close\r\n'), 10_000);
    const urls = [...answer.matchAll(/x-echo-url: (\S+)/g)].map((m) => m[1]);
    expect(urls).toEqual(Array.from({ length: 30 }, (_v, i) => `/api/pipe/${i}`));
    // cut while most of a second pipeline is still queued behind its first response
    await rawExchange(p.port, pipeline(30, ''), 30);
    const text = await settle(p.metrics, (t) => sampleValue(t, 'http_server_active_requests', { http_request_method: 'GET' }) === 0);
    expect(sampleValue(text, 'http_server_active_requests', { http_request_method: 'GET' })).toBe(0);
    expect(sampleValue(text, 'apiCount', { method: 'GET' })).toBe(60);
    expect(warnings).toEqual([]);
  });

  it('answers a malformed request with 400 and keeps serving', async () => {
    const before = upstream.seen.length;
    expect(await rawExchange(proxy.port, 'GARBAGE\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    expect(await rawExchange(proxy.port, 'GET /api/x HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n')).toMatch(
      /^HTTP\/1\.1 400 /,
    );
    expect(upstream.seen.length).toBe(before);
    expect((await httpRequest(`${proxy.url}/api/after`)).status).toBe(200);
  });

  it('answers Expect: 100-continue itself and forwards the body without the Expect header', async () => {
    const body = randomBytes(64 * 1024);
    const answer = await new Promise<{ status: number; continued: boolean; body: Buffer }>((resolve, reject) => {
      let continued = false;
      const req = request(
        `${proxy.url}/api/continue`,
        { method: 'PUT', agent: false, headers: { expect: '100-continue', 'content-length': String(body.length) } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, continued, body: Buffer.concat(chunks) }));
        },
      );
      req.on('error', reject);
      // The body goes only once the proxy said 100 Continue.
      req.on('continue', () => {
        continued = true;
        req.end(body);
      });
    });
    expect(answer.continued).toBe(true);
    expect(answer.status).toBe(200);
    expect(answer.body.equals(body)).toBe(true);
    expect(upstream.seen.at(-1)?.headers.expect).toBeUndefined();
  });

  it('prepends the path of an upstream base URL', async () => {
    const p = await startProxy(`${upstream.url}/base`);
    onTestFinished(p.close);
    const res = await httpRequest(`${p.url}/api/x?q=1`);
    expect(res.headers['x-echo-url']).toBe('/base/api/x?q=1');
  });
});

/**
 * A raw upstream answering each request head (no bodies here) with the response for its path, byte
 * for byte, so framing and trailers are exactly what a test says.
 */
async function startScriptedUpstream(responses: Record<string, string>): Promise<Running> {
  const server = createNetServer((socket) => {
    socket.on('error', () => {});
    let buffered = '';
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1');
      for (let end = buffered.indexOf('\r\n\r\n'); end !== -1; end = buffered.indexOf('\r\n\r\n')) {
        const path = /^\S+ (\S+) /.exec(buffered)?.[1] ?? '';
        buffered = buffered.slice(end + 4);
        socket.write(responses[path] ?? 'HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n');
      }
    });
  });
  const running = await startServer(server);
  onTestFinished(running.close);
  return running;
}

describe('trailers', () => {
  const CHUNKED_WITH_TRAILERS =
    'HTTP/1.1 200 OK\r\ntrailer: x-checksum, x-status\r\ntransfer-encoding: chunked\r\n\r\n' +
    '5\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: abc123\r\nx-status: done\r\n\r\n';

  it('relays the Trailer header and the trailer fields of a chunked response', async () => {
    const upstream = await startScriptedUpstream({ '/api/trailers': CHUNKED_WITH_TRAILERS });
    const proxy = await startProxy(upstream.url);
    onTestFinished(proxy.close);
    const answer = await new Promise<{ headers: Record<string, unknown>; body: string; trailers: Record<string, unknown> }>((resolve, reject) => {
      request(`${proxy.url}/api/trailers`, { agent: false, headers: { te: 'trailers' } }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ headers: res.headers, body, trailers: res.trailers }));
        res.on('error', reject);
      })
        .on('error', reject)
        .end();
    });
    expect(answer.body).toBe('hello world');
    expect(answer.headers.trailer).toBe('x-checksum, x-status');
    expect(answer.headers['transfer-encoding']).toBe('chunked');
    expect(answer.trailers).toEqual({ 'x-checksum': 'abc123', 'x-status': 'done' });
    const raw = await rawExchange(proxy.port, 'GET /api/trailers HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    expect(raw).toMatch(/\r\n0\r\nx-checksum: abc123\r\nx-status: done\r\n\r\n$/);
  });

  it.each([
    ['a HEAD request', 'HEAD /api/trailers HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n', 200],
    ['a 204', 'GET /api/no-content HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n', 204],
    ['a Content-Length response', 'GET /api/sized HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n', 200],
    ['an HTTP/1.0 client', 'GET /api/trailers HTTP/1.0\r\nhost: x\r\n\r\n', 200],
  ])('drops a Trailer header that cannot be honoured (%s) and relays the rest', async (_name, head, status) => {
    const upstream = await startScriptedUpstream({
      '/api/trailers': CHUNKED_WITH_TRAILERS,
      '/api/no-content': 'HTTP/1.1 204 No Content\r\ntrailer: x-checksum\r\n\r\n',
      '/api/sized': 'HTTP/1.1 200 OK\r\ntrailer: x-checksum\r\ncontent-length: 5\r\n\r\nhello',
    });
    const proxy = await startProxy(upstream.url);
    onTestFinished(proxy.close);
    const raw = await rawExchange(proxy.port, head);
    expect(raw.startsWith(`HTTP/1.1 ${status} `)).toBe(true);
    expect(raw.toLowerCase()).not.toContain('\r\ntrailer:');
    expect(raw).not.toContain('x-checksum: abc123');
    expect(sampleValue(await proxy.metrics(), 'apiErrorCount', { type: 'api' })).toBe(0);
  });
});

describe('streaming', () => {
  it('streams both directions without buffering whole bodies (ping-pong over one request)', async () => {
    // The upstream echoes each chunk as it arrives; the client sends the next chunk only after
    // the previous one came back. A proxy that buffered either body would deadlock here.
    const upstream = await startUpstream((req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      req.pipe(res);
    });
    onTestFinished(upstream.close);
    const proxy = await startProxy(upstream.url);
    onTestFinished(proxy.close);

    const rounds = 20;
    const received = await new Promise<number>((resolve, reject) => {
      const req = request(`${proxy.url}/api/stream`, { method: 'POST', agent: false }, (res) => {
        let got = 0;
        let sent = 1;
        res.on('data', (chunk: Buffer) => {
          got += chunk.length;
          if (got === sent * 1024) {
            if (sent === rounds) req.end();
            else {
              sent++;
              req.write(Buffer.alloc(1024, sent));
            }
          }
        });
        res.on('end', () => resolve(got));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.flushHeaders();
      req.write(Buffer.alloc(1024, 1));
    });
    expect(received).toBe(rounds * 1024);
  });

  it('holds a fast side back while the other does not read (backpressure both ways, memory bounded)', async () => {
    const total = 64 * 1024 * 1024;
    let written = 0;
    let uploadRead = 0;
    let readUpload: () => void = () => {};
    const upstream = await startUpstream((req, res) => {
      if (req.url === '/api/download') {
        res.writeHead(200, { 'content-length': String(total) });
        pumpBody(res, total, (bytes) => (written += bytes));
        return;
      }
      // the upload: read nothing until told to
      req.pause();
      readUpload = () => {
        req.on('data', (c: Buffer) => (uploadRead += c.length));
        req.on('end', () => res.end('stored'));
        req.resume();
      };
    });
    onTestFinished(upstream.close);
    const proxy = await startProxy(upstream.url);
    onTestFinished(proxy.close);

    // Download: the client takes nothing for a while; the upstream must be held back far below 64 MiB.
    let writtenWhilePaused = -1;
    const downloaded = await new Promise<number>((resolve, reject) => {
      request(`${proxy.url}/api/download`, { agent: false }, (res) => {
        res.pause();
        setTimeout(() => {
          writtenWhilePaused = written;
          let bytes = 0;
          res.on('data', (c: Buffer) => (bytes += c.length));
          res.on('end', () => resolve(bytes));
          res.resume();
        }, 400);
      })
        .on('error', reject)
        .end();
    });
    expect(writtenWhilePaused).toBeGreaterThan(0);
    expect(writtenWhilePaused).toBeLessThan(16 * 1024 * 1024);
    expect(downloaded).toBe(total);

    // Upload: the upstream reads nothing for a while; the client's writes must stall far below 64 MiB.
    let sent = 0;
    let sentWhileUnread = -1;
    const stored = await new Promise<string>((resolve, reject) => {
      const req = request(`${proxy.url}/api/upload`, { method: 'POST', agent: false, headers: { 'content-length': String(total) } }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve(body));
      });
      req.on('error', reject);
      const chunk = Buffer.alloc(64 * 1024, 2);
      const pump = (): void => {
        while (sent < total) {
          sent += chunk.length;
          if (!req.write(chunk)) {
            req.once('drain', pump);
            return;
          }
        }
        req.end();
      };
      pump();
      setTimeout(() => {
        sentWhileUnread = sent;
        readUpload();
      }, 400);
    });
    expect(sentWhileUnread).toBeGreaterThan(0);
    expect(sentWhileUnread).toBeLessThan(16 * 1024 * 1024);
    expect(stored).toBe('stored');
    expect(uploadRead).toBe(total);
  });

  it('moves a large upload and download intact', async () => {
    const size = 64 * 1024 * 1024;
    const upstream = await startUpstream((req, res) => {
      const hash = createHash('sha256');
      let bytes = 0;
      req.on('data', (c: Buffer) => {
        hash.update(c);
        bytes += c.length;
      });
      req.on('end', () => {
        res.writeHead(200, { 'x-upload-sha256': hash.digest('hex'), 'x-upload-bytes': String(bytes) });
        // then a download of the same size, generated chunk by chunk
        const chunk = Buffer.alloc(1024 * 1024, 7);
        writeRepeated(res, chunk, size / chunk.length);
      });
    });
    onTestFinished(upstream.close);
    const proxy = await startProxy(upstream.url);
    onTestFinished(proxy.close);

    const chunk = randomBytes(1024 * 1024);
    const expected = createHash('sha256');
    for (let i = 0; i < size / chunk.length; i++) expected.update(chunk);

    const result = await new Promise<{ headers: Record<string, unknown>; bytes: number; hash: string }>((resolve, reject) => {
      const req = request(`${proxy.url}/api/big`, { method: 'POST', agent: false }, (res) => {
        const down = createHash('sha256');
        let bytes = 0;
        res.on('data', (c: Buffer) => {
          down.update(c);
          bytes += c.length;
        });
        res.on('end', () => resolve({ headers: res.headers, bytes, hash: down.digest('hex') }));
        res.on('error', reject);
      });
      req.on('error', reject);
      writeRepeated(req, chunk, size / chunk.length);
    });
    expect(result.headers['x-upload-bytes']).toBe(String(size));
    expect(result.headers['x-upload-sha256']).toBe(expected.digest('hex'));
    const download = createHash('sha256');
    for (let i = 0; i < size / (1024 * 1024); i++) download.update(Buffer.alloc(1024 * 1024, 7));
    expect(result.bytes).toBe(size);
    expect(result.hash).toBe(download.digest('hex'));
    expect(sampleValue(await proxy.metrics(), 'apiCount', { method: 'POST' })).toBe(1);
  });
});

/** Writes `chunk` `times` times with backpressure, then ends the stream. */
function writeRepeated(stream: Writable, chunk: Buffer, times: number): void {
  let left = times;
  const pump = (): void => {
    while (left > 0) {
      left--;
      if (!stream.write(chunk)) {
        stream.once('drain', pump);
        return;
      }
    }
    stream.end();
  };
  pump();
}
