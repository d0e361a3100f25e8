/**
 * An upstream that answers before it has read the whole request body (an early 401 or 413, as
 * auth gateways and size limits do): the answer reaches the client at once, the client's
 * connection is closed after it (the rest of the upload is never read into a reused connection),
 * and the upstream request is dropped, so nothing waits on a half-sent body. Before this, the
 * next request on the client's keep-alive connection stalled until a timeout.
 */
import { Agent, request } from 'node:http';
import { describe, expect, it, onTestFinished } from 'vitest';
import { sampleValue, startProxy, startUpstream } from './helpers.js';

const UPLOAD_BYTES = 8 * 1024 * 1024;

/** What the client saw: the response (as much of it as came), or the error that came instead. */
type Outcome =
  | { readonly status: number; readonly connection: string | undefined; readonly body: string; readonly complete: boolean }
  | { readonly error: string };

/**
 * POSTs `bytes` with backpressure, and resolves with what really reached the client: the response
 * once it has ended or been cut (an error on the unsent rest of the upload after the answer came
 * changes nothing), or the error when no response came at all.
 */
function upload(url: string, agent: Agent, bytes: number): Promise<Outcome> {
  return new Promise((resolve) => {
    let answered = false;
    const req = request(url, { method: 'POST', agent, headers: { 'content-length': String(bytes) } }, (res) => {
      answered = true;
      let body = '';
      res.setEncoding('latin1');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('error', () => {});
      res.on('close', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, body, complete: res.complete }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (!answered) resolve({ error: err.code ?? err.message });
    });
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    let left = bytes;
    const pump = (): void => {
      while (left > 0 && !req.destroyed) {
        const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
        left -= piece.length;
        if (!req.write(piece)) {
          req.once('drain', pump);
          return;
        }
      }
      req.end();
    };
    pump();
  });
}

describe('an upstream that answers before the upload ends', () => {
  it('relays the early answer, closes that client connection, and serves the next request at once', async () => {
    const upstream = await startUpstream((req, res) => {
      if (req.url === '/api/too-big') {
        res.writeHead(413, { 'content-type': 'text/plain' });
        res.end('too large');
        return;
      }
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    onTestFinished(upstream.close);
    const proxy = await startProxy(upstream.url);
    onTestFinished(proxy.close);
    // One socket at a time: a stalled connection would block the next request for good.
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    onTestFinished(() => agent.destroy());

    for (let round = 0; round < 3; round++) {
      const early = await upload(`${proxy.url}/api/too-big`, agent, UPLOAD_BYTES);
      expect(early).toEqual({ status: 413, connection: 'close', body: 'too large', complete: true });
      const next = await upload(`${proxy.url}/api/fine`, agent, 1024);
      expect(next).toEqual({ status: 200, connection: 'keep-alive', body: 'ok', complete: true });
    }
    const text = await proxy.metrics();
    expect(sampleValue(text, 'apiCount', { method: 'POST' })).toBe(6);
    expect(sampleValue(text, 'apiErrorCount', { type: 'api' })).toBe(0);
  });

  it('keeps reusing upstream connections for uploads the upstream reads whole', async () => {
    const upstream = await startUpstream((req, res) => {
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    onTestFinished(upstream.close);
    const proxy = await startProxy(upstream.url);
    onTestFinished(proxy.close);
    const agent = new Agent({ keepAlive: true, maxSockets: 4 });
    onTestFinished(() => agent.destroy());
    for (let round = 0; round < 5; round++) {
      const answers = await Promise.all(Array.from({ length: 4 }, () => upload(`${proxy.url}/api/sink`, agent, 256 * 1024)));
      for (const answer of answers) expect(answer).toEqual({ status: 200, connection: 'keep-alive', body: 'ok', complete: true });
    }
    // 20 uploads over at most 4 upstream connections: none was dropped after a complete exchange.
    expect(new Set(upstream.seen.map((req) => req.socket)).size).toBeLessThanOrEqual(4);
  });
});
