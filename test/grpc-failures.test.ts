/**
 * gRPC calls the proxy itself has to fail, and how: the gRPC way (HTTP 200, `grpc-status` in a
 * trailers-only answer, or in trailers once the response has started), never a JSON 502. Checked with
 * grpc-js for what a client reads and with node:http2 on the wire; upstreams that are gone, slow,
 * reset the stream or die mid-call. Also which gRPC-looking requests are not forwarded.
 */
import { type ServerWritableStream, Metadata, status } from '@grpc/grpc-js';
import { constants } from 'node:http2';
import { describe, expect, it } from 'vitest';
import { type Proxy, deadUpstreamUrl, settle, total, until } from './helpers.js';
import {
  type H2Response,
  describeFrames,
  endsStream,
  h2Request,
  h2Session,
  proxyTo,
  startH2Upstream,
  startRawH2Upstream,
  startedThenReset,
  upstreamWith,
} from './h2-peers.js';
import {
  type EchoReply,
  type StreamRequest,
  PATHS,
  callUnary,
  collectStream,
  echoClient,
  grpcFrame,
  grpcHeaders,
  startGrpcUpstream,
  targetOf,
} from './grpc-peers.js';

/** One gRPC call by hand through `proxy`, on a session of its own. */
async function wireCall(proxy: Proxy, path: string = PATHS.unary, extra: Record<string, string> = {}): Promise<H2Response> {
  return h2Request(await h2Session(proxy.url), grpcHeaders(path, extra), grpcFrame());
}

/** A trailers-only failure: HTTP 200, gRPC content type, the status in the one HEADERS frame, no body, no trailers. */
function expectTrailersOnly(res: H2Response, code: number): void {
  expect(res.status).toBe(200);
  expect(res.headers['content-type']).toMatch(/^application\/grpc/);
  expect(res.headers['grpc-status']).toBe(String(code));
  expect(res.endedWithHeaders).toBe(true);
  expect(res.trailers).toBeUndefined();
  expect(res.body.length).toBe(0);
}

describe('failures before the upstream answered: trailers-only', () => {
  it('answers UNAVAILABLE when the upstream refuses the connection, and counts an upstream error', async () => {
    const proxy = await proxyTo(await deadUpstreamUrl());
    const before = await proxy.metrics();
    const outcome = await callUnary(echoClient(targetOf(proxy.url)), {});
    expect(outcome.status.code).toBe(status.UNAVAILABLE);
    expectTrailersOnly(await wireCall(proxy), status.UNAVAILABLE);
    const after = await settle(proxy.metrics, (t) => total(t, 'apiCount', { method: 'POST' }) - total(before, 'apiCount', { method: 'POST' }) >= 2);
    expect(total(after, 'apiCount', { method: 'POST' }) - total(before, 'apiCount', { method: 'POST' })).toBe(2);
    expect(total(after, 'apiErrorCount', { type: 'api' }) - total(before, 'apiErrorCount', { type: 'api' })).toBe(2);
  });

  it.each([
    ['REFUSED_STREAM', constants.NGHTTP2_REFUSED_STREAM],
    ['INTERNAL_ERROR', constants.NGHTTP2_INTERNAL_ERROR],
    ['CANCEL', constants.NGHTTP2_CANCEL],
  ])('answers UNAVAILABLE when the upstream resets the stream (%s) before answering', async (_name, code) => {
    const upstream = await startH2Upstream((stream) => stream.close(code));
    const proxy = await proxyTo(upstream.url);
    expect((await callUnary(echoClient(targetOf(proxy.url)), {})).status.code).toBe(status.UNAVAILABLE);
    expectTrailersOnly(await wireCall(proxy), status.UNAVAILABLE);
  });

  it('answers UNAVAILABLE when the upstream closes the connection before answering', async () => {
    const upstream = await startH2Upstream((stream) => stream.session?.destroy());
    const proxy = await proxyTo(upstream.url);
    expect((await callUnary(echoClient(targetOf(proxy.url)), {})).status.code).toBe(status.UNAVAILABLE);
    expectTrailersOnly(await wireCall(proxy), status.UNAVAILABLE);
  });

  it('answers DEADLINE_EXCEEDED when --upstream-timeout passes first, and cancels the upstream call', async () => {
    const cancelled: string[] = [];
    const upstream = await startGrpcUpstream({
      Unary(call) {
        call.once('cancelled', () => cancelled.push('cancelled')); // never answers
      },
    });
    const proxy = await proxyTo(upstream.url, { upstreamTimeoutMs: 300 });
    const started = Date.now();
    const outcome = await callUnary(echoClient(targetOf(proxy.url)), {});
    expect(outcome.status.code).toBe(status.DEADLINE_EXCEEDED);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expectTrailersOnly(await wireCall(proxy), status.DEADLINE_EXCEEDED);
    await until(() => cancelled.length === 2, 'both calls cancelled at the upstream');
  });

  it('does not cut a stream whose headers came within --upstream-timeout, however long it then runs', async () => {
    const upstream = await startGrpcUpstream({
      ServerStream(call) {
        call.sendMetadata(new Metadata());
        let seq = 0;
        const timer = setInterval(() => {
          call.write({ seq });
          if (++seq === 6) {
            clearInterval(timer);
            call.end();
          }
        }, 100);
        call.once('cancelled', () => clearInterval(timer));
      },
    });
    const proxy = await proxyTo(upstream.url, { upstreamTimeoutMs: 250 });
    const { messages, status: end } = await collectStream(echoClient(targetOf(proxy.url)).ServerStream({}, new Metadata(), {}));
    expect(end.code).toBe(status.OK);
    expect(messages.map((m) => m.seq)).toEqual([0, 1, 2, 3, 4, 5]);
  });
});

describe('failures after the response started: trailers', () => {
  /** A server stream that writes `before` messages, then lets the test break it. */
  function breakingStream(before: number, onReady: (call: ServerWritableStream<StreamRequest, Partial<EchoReply>>) => void) {
    return {
      ServerStream(call: ServerWritableStream<StreamRequest, Partial<EchoReply>>) {
        for (let seq = 0; seq < before; seq++) call.write({ seq });
        // The messages must be on their way before the break.
        setTimeout(() => onReady(call), 100);
      },
    };
  }

  it('ends the call with UNAVAILABLE, the messages before it intact, when the upstream server is killed mid-stream', async () => {
    const killer: { kill?: () => void } = {};
    const upstream = await startGrpcUpstream(breakingStream(5, () => killer.kill?.()));
    killer.kill = upstream.kill;
    const proxy = await proxyTo(upstream.url);
    const before = await proxy.metrics();
    const { messages, status: end } = await collectStream(echoClient(targetOf(proxy.url)).ServerStream({}, new Metadata(), {}));
    expect(messages.map((m) => m.seq)).toEqual([0, 1, 2, 3, 4]);
    expect(end.code).toBe(status.UNAVAILABLE);
    const after = await settle(proxy.metrics, (t) => total(t, 'apiCount', { method: 'POST' }) > total(before, 'apiCount', { method: 'POST' }));
    expect(total(after, 'apiErrorCount', { type: 'api' }) - total(before, 'apiErrorCount', { type: 'api' })).toBe(1);
  });

  it.each([
    ['INTERNAL_ERROR', constants.NGHTTP2_INTERNAL_ERROR],
    ['CANCEL', constants.NGHTTP2_CANCEL],
    ['PROTOCOL_ERROR', constants.NGHTTP2_PROTOCOL_ERROR],
  ])('ends the call with UNAVAILABLE in trailers on the wire when the upstream resets a started stream (%s)', async (_name, code) => {
    // Frames by hand: node:http2's `close(code)` on a started response sends END_STREAM, not RST_STREAM.
    const message = grpcFrame(Buffer.from([0x18, 0x07])); // EchoReply{seq: 7}
    const upstream = await startRawH2Upstream(startedThenReset(code, [['content-type', 'application/grpc']], message));
    const proxy = await proxyTo(upstream.url);
    const res = await wireCall(proxy, PATHS.serverStream);
    expect(res.status).toBe(200);
    expect(res.endedWithHeaders).toBe(false);
    expect(res.body.equals(message)).toBe(true);
    expect(res.trailers?.['grpc-status']).toBe(String(status.UNAVAILABLE));
    // What the upstream really sent: a response begun, then reset, never ended.
    const answer = upstream.sent.filter((f) => f.streamId !== 0);
    expect(describeFrames(answer)).toBe(`HEADERS(s1) DATA(s1) RST_STREAM(s1 code ${code})`);
    expect(answer.filter(endsStream)).toEqual([]);
    const { messages, status: end } = await collectStream(echoClient(targetOf(proxy.url)).ServerStream({}, new Metadata(), {}));
    expect(messages.map((m) => m.seq)).toEqual([7]);
    expect(end.code).toBe(status.UNAVAILABLE);
  });

  it('keeps serving other calls on the same client connection after one call broke', async () => {
    const upstream = await startH2Upstream((stream, headers) => {
      if (headers[':path'] === PATHS.serverStream) {
        stream.close(constants.NGHTTP2_INTERNAL_ERROR);
        return;
      }
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(grpcFrame());
    });
    const proxy = await proxyTo(upstream.url);
    const session = await h2Session(proxy.url);
    const broken = await h2Request(session, grpcHeaders(PATHS.serverStream), grpcFrame());
    expect(broken.headers['grpc-status']).toBe(String(status.UNAVAILABLE));
    expect(session.destroyed).toBe(false);
    const fine = await h2Request(session, grpcHeaders(PATHS.unary), grpcFrame());
    expect(fine.status).toBe(200);
    expect(fine.trailers?.['grpc-status']).toBe('0');
  });
});

describe('what is and is not forwarded as gRPC', () => {
  it('answers a gRPC request for one of its own paths itself, never forwarding it', async () => {
    let calls = 0;
    const upstream = await startH2Upstream((stream) => {
      calls++;
      stream.respond({ ':status': 200 });
      stream.end();
    });
    const proxy = await proxyTo(upstream.url, { upstreamProtocol: 'http2', apiPrefix: '/' });
    for (const path of ['/metrics', '/healthz', '/readyz']) {
      const res = await wireCall(proxy, path);
      expect(res.status, path).not.toBe(502);
    }
    expect(calls).toBe(0);
  });

  it('does not forward a non-gRPC POST to a gRPC-looking path outside the prefix (404)', async () => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url);
    const session = await h2Session(proxy.url);
    const res = await h2Request(session, { ':method': 'POST', ':path': PATHS.unary, 'content-type': 'application/json' }, '{}');
    expect(res.status).toBe(404);
    expect(upstream.seen).toHaveLength(0);
  });

  it.each(['application/grpc', 'application/grpc+proto', 'application/grpc+json', 'application/grpc; charset=utf-8'])(
    'forwards a call with content-type %s over HTTP/2, with te: trailers and grpc-timeout as sent',
    async (contentType) => {
      const upstream = await startH2Upstream((stream) => {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '0' }, { endStream: true });
      });
      const proxy = await proxyTo(upstream.url);
      const res = await wireCall(proxy, PATHS.unary, { 'content-type': contentType, 'grpc-timeout': '2S', 'x-user': 'kept' });
      expect(res.headers['grpc-status']).toBe('0');
      const seen = upstream.seen[0];
      expect(seen?.[':path']).toBe(PATHS.unary);
      expect(seen?.['content-type']).toBe(contentType);
      expect(seen?.te).toBe('trailers');
      expect(seen?.['x-user']).toBe('kept');
      // Passed on as is, or shortened by the time already spent: never longer.
      const timeout = /^(\d+)([HMSmun])$/.exec(String(seen?.['grpc-timeout']));
      const unitMs: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 0.001, n: 0.000_001 };
      expect(timeout).not.toBeNull();
      const ms = Number(timeout?.[1]) * (unitMs[timeout?.[2] ?? 'S'] ?? 0);
      expect(ms).toBeGreaterThan(1_000);
      expect(ms).toBeLessThanOrEqual(2_000);
    },
  );
});
