/**
 * Upstreams that break a response they started, seen by an HTTP/2 client: the client's stream is
 * reset (never ended as if the body were whole), its connection stays, and an upstream error is
 * counted. gRPC's version of the same (UNAVAILABLE in trailers) is in grpc-failures.test.ts.
 */
import { constants } from 'node:http2';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { ProxyConfig } from '../src/index.js';
import { type Proxy, type Upstream, echoHandler, parseExposition, settle, startProxy, startUpstream } from './helpers.js';
import { h2Request, h2Session, startH2Upstream } from './h2-peers.js';

async function upstreamWith(handler: Parameters<typeof startUpstream>[0] = echoHandler): Promise<Upstream> {
  const upstream = await startUpstream(handler);
  onTestFinished(upstream.close);
  return upstream;
}

async function proxyTo(url: string, overrides: Partial<ProxyConfig> = {}): Promise<Proxy> {
  const proxy = await startProxy(url, overrides);
  onTestFinished(proxy.close);
  return proxy;
}

function total(text: string, name: string, labels: Record<string, string> = {}): number {
  return parseExposition(text)
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}

describe('an HTTP/1.1 upstream that dies mid-response', () => {
  it.each([
    ['a Content-Length response', { 'content-length': '1000' }],
    ['a chunked response', {}],
  ])('resets the HTTP/2 client’s stream for %s cut short, and counts an upstream error', async (_what, headers) => {
    const upstream = await upstreamWith((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain', ...headers });
      res.write('the first part of a longer body', () => setTimeout(() => res.socket?.destroy(), 50));
    });
    const proxy = await proxyTo(upstream.url);
    const before = await proxy.metrics();
    const session = await h2Session(proxy.url);
    const outcome = await h2Request(session, { ':path': '/api/cut' }).then(
      (res) => `completed with ${res.body.length} bytes`,
      (err: { rstCode?: number }) => `reset with code ${err.rstCode}`,
    );
    expect(outcome).toMatch(/^reset with code [1-9]/);
    const after = await settle(proxy.metrics, (t) => total(t, 'apiErrorCount', { type: 'api' }) > total(before, 'apiErrorCount', { type: 'api' }));
    expect(total(after, 'apiErrorCount', { type: 'api' }) - total(before, 'apiErrorCount', { type: 'api' })).toBe(1);
    expect(session.destroyed).toBe(false); // only the stream, not the client's connection
  });
});

describe('an HTTP/2 upstream (--upstream-protocol http2) that breaks a response it started', () => {
  it.each([
    ['INTERNAL_ERROR', constants.NGHTTP2_INTERNAL_ERROR],
    ['CANCEL', constants.NGHTTP2_CANCEL],
  ])('breaks the client’s stream too (%s): a cut body must not look complete', async (_name, code) => {
    const upstream = await startH2Upstream((stream) => {
      // No content-length: the client's own length check would reset the stream and hide what the proxy did.
      stream.respond({ ':status': 200, 'content-type': 'text/plain' });
      stream.write('the first part of a longer body', () => setTimeout(() => stream.close(code), 50));
    });
    const proxy = await proxyTo(upstream.url, { upstreamProtocol: 'http2' });
    const session = await h2Session(proxy.url);
    const outcome = await h2Request(session, { ':path': '/api/cut' }).then(
      (res) => `completed with ${res.body.length} bytes`,
      (err: { rstCode?: number }) => `reset with code ${err.rstCode}`,
    );
    expect(outcome).toMatch(/^reset with code [1-9]/);
  });
});
