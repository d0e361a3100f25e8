/**
 * Upstreams that break a response they started, seen by an HTTP/2 client: the client's stream is
 * reset (never ended as if the body were whole), its connection stays, and an upstream error is
 * counted. gRPC's version of the same (UNAVAILABLE in trailers) is in grpc-failures.test.ts.
 */
import { constants } from 'node:http2';
import { describe, expect, it } from 'vitest';
import { settle, total } from './helpers.js';
import { describeFrames, endsStream, h2Request, h2Session, proxyTo, startRawH2Upstream, startedThenReset, upstreamWith } from './h2-peers.js';

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
    // Frames by hand: node:http2's `close(code)` on a started response sends END_STREAM, not RST_STREAM.
    // No content-length: the client's own length check would reset the stream and hide what the proxy did.
    const upstream = await startRawH2Upstream(startedThenReset(code, [['content-type', 'text/plain']], Buffer.from('the first part of a longer body')));
    const proxy = await proxyTo(upstream.url, { upstreamProtocol: 'http2' });
    const session = await h2Session(proxy.url);
    const outcome = await h2Request(session, { ':path': '/api/cut' }).then(
      (res) => `completed with ${res.body.length} bytes`,
      (err: { rstCode?: number }) => `reset with code ${err.rstCode}`,
    );
    expect(outcome).toMatch(/^reset with code [1-9]/);
    // What the upstream really sent: a response begun, then reset, never ended.
    const answer = upstream.sent.filter((f) => f.streamId !== 0);
    expect(describeFrames(answer)).toBe(`HEADERS(s1) DATA(s1) RST_STREAM(s1 code ${code})`);
    expect(answer.filter(endsStream)).toEqual([]);
  });
});
