/**
 * gRPC through the proxy, with @grpc/grpc-js as both client and upstream server (h2c): the four call
 * types with many messages and flow control both ways, metadata and status relayed exactly (binary
 * metadata, percent-encoded messages, status details), deadlines and cancellation passed on, and how
 * calls are counted. The proxy's own failures (the gRPC way, never a JSON 502) are in grpc-failures.test.ts.
 */
import { type ServerWritableStream, Metadata, status } from '@grpc/grpc-js';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { ProxyConfig } from '../src/index.js';
import { type Proxy, plateau, settle, total, until } from './helpers.js';
import { collectResponse, h2Request, h2Session, proxyTo } from './h2-peers.js';
import {
  type EchoClient,
  type EchoReply,
  type StreamRequest,
  PATHS,
  callUnary,
  collectStream,
  echoClient,
  grpcFrame,
  grpcHeaders,
  patternedPayload,
  startGrpcUpstream,
  targetOf,
  writeReplies,
} from './grpc-peers.js';

const KiB = 1024;
/** StreamRequest{count: 5000, size: 1024} in protobuf. */
const STREAM_5000_X_1KIB = Buffer.from([0x08, 0x88, 0x27, 0x10, 0x80, 0x08]);

/** The encoded EchoReply{payload: patternedPayload(seq, 1 KiB), seq} as grpc-js writes it (fields in number order, seq 0 included). */
function encodedReply(seq: number): Buffer {
  const seqField = [0x18, ...(seq < 128 ? [seq] : [(seq & 0x7f) | 0x80, seq >> 7])];
  return Buffer.concat([Buffer.from([0x12, 0x80, 0x08]), patternedPayload(seq, KiB), Buffer.from(seqField)]);
}

/** The messages of a gRPC body (5-byte prefix + message each); throws on a cut message. */
function grpcMessages(body: Buffer): Buffer[] {
  const messages: Buffer[] = [];
  for (let at = 0; at < body.length; ) {
    const length = body.readUInt32BE(at + 1);
    if (at + 5 + length > body.length) throw new Error(`message cut at byte ${at}`);
    messages.push(body.subarray(at + 5, at + 5 + length));
    at += 5 + length;
  }
  return messages;
}

/** Resolves with 'cancelled' when the upstream's call is cancelled, or a description after `ms`. */
function cancelledWithin(call: { once(event: 'cancelled', listener: () => void): unknown }, ms: number): Promise<string> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(`not cancelled within ${ms} ms`), ms);
    call.once('cancelled', () => {
      clearTimeout(timer);
      resolve('cancelled');
    });
  });
}

/** A gRPC upstream with `handlers`, a proxy in front of it (the default prefix /api covers no gRPC path), and a client of the proxy. */
async function throughProxy(
  handlers: Parameters<typeof startGrpcUpstream>[0] = {},
  overrides: Partial<ProxyConfig> = {},
): Promise<{ proxy: Proxy; client: EchoClient; upstreamUrl: string }> {
  const upstream = await startGrpcUpstream(handlers);
  const proxy = await proxyTo(upstream.url, overrides);
  return { proxy, client: echoClient(targetOf(proxy.url)), upstreamUrl: upstream.url };
}

describe('the four call types', () => {
  it('relays unary calls whatever the API prefix, 200 of them on one channel, payloads intact', async () => {
    const { client } = await throughProxy({}, { apiPrefix: '/v1' });
    for (let seq = 0; seq < 200; seq++) {
      const payload = patternedPayload(seq, seq === 0 ? 256 * KiB : 100);
      const outcome = await callUnary(client, { text: `call ${seq}`, payload, seq });
      expect(outcome.error?.message).toBeUndefined();
      expect(outcome.reply?.text).toBe(`call ${seq}`);
      expect(outcome.reply?.seq).toBe(seq);
      expect(outcome.reply?.payload.equals(payload)).toBe(true);
    }
  });

  it('relays a server stream of 5 000 × 1 KiB to a slow grpc-js reader, in order and intact', { timeout: 60_000 }, async () => {
    const count = 5_000;
    const { client } = await throughProxy();
    const call = client.ServerStream({ count, size: KiB }, new Metadata(), {});
    call.on('error', () => {});
    const received: EchoReply[] = [];
    call.on('data', (m: EchoReply) => {
      received.push(m);
      // A slow reader: a pause every 250 messages.
      if (received.length % 250 === 0) {
        call.pause();
        setTimeout(() => call.resume(), 5);
      }
    });
    const code = await new Promise<number>((resolve) => call.on('status', (s: { code: number }) => resolve(s.code)));
    expect(code).toBe(status.OK);
    expect(received).toHaveLength(count);
    expect(received.findIndex((m, i) => m.seq !== i || !m.payload.equals(patternedPayload(i, KiB)))).toBe(-1);
  });

  it('holds a server stream back at the upstream while the client does not read, then relays all 5 000 messages', { timeout: 60_000 }, async () => {
    // node:http2 as the client: a paused grpc-js call still reads its stream into memory (measured), so it
    // would hide the proxy's backpressure; a paused node:http2 stream stops acknowledging data.
    const count = 5_000;
    let written = 0;
    const upstream = await startGrpcUpstream({
      ServerStream(call) {
        void writeReplies(call, call.request.count, call.request.size, (n) => (written = n));
      },
    });
    const proxy = await proxyTo(upstream.url);
    const session = await h2Session(proxy.url);
    const stream = session.request(grpcHeaders(PATHS.serverStream), { endStream: false });
    const answer = collectResponse(stream);
    stream.pause();
    stream.end(grpcFrame(STREAM_5000_X_1KIB));
    await until(() => written > 0, 'the first replies written');
    const stalled = await plateau(() => written);
    // Windows and buffers on each hop hold a few hundred KiB; without backpressure all 5 000 go at once.
    expect(stalled).toBeLessThan(count / 2);
    stream.resume();
    const res = await answer;
    expect(res.trailers?.['grpc-status']).toBe('0');
    const messages = grpcMessages(res.body);
    expect(messages).toHaveLength(count);
    expect(messages.findIndex((m, seq) => !m.equals(encodedReply(seq)))).toBe(-1);
  });

  it('relays a client stream of 5 000 × 1 KiB, holding the client back while the upstream does not read', { timeout: 60_000 }, async () => {
    const count = 5_000;
    let resumeUpstream: (() => void) | undefined;
    const { client } = await throughProxy({
      ClientStream(call, callback) {
        call.pause();
        resumeUpstream = () => call.resume();
        let seen = 0;
        let bytes = 0;
        let inOrder = true;
        call.on('data', (m: { seq: number; payload: Buffer }) => {
          if (m.seq !== seen || !m.payload.equals(patternedPayload(m.seq, KiB))) inOrder = false;
          seen++;
          bytes += m.payload.length;
        });
        call.on('end', () => callback(null, { count: seen, bytes, text: inOrder ? 'in order' : 'out of order' }));
      },
    });
    let accepted = 0;
    const reply = new Promise<{ err: unknown; reply: EchoReply | undefined }>((resolve) => {
      const call = client.ClientStream(new Metadata(), {}, (err, value) => resolve({ err, reply: value }));
      const pump = (): void => {
        while (accepted < count) {
          const more = call.write({ seq: accepted, payload: patternedPayload(accepted, KiB) });
          accepted++;
          if (!more) {
            call.once('drain', pump);
            return;
          }
        }
        call.end();
      };
      pump();
    });
    await until(() => resumeUpstream !== undefined, 'the call at the upstream');
    const stalled = await plateau(() => accepted);
    expect(stalled).toBeLessThan(count * 0.6);
    resumeUpstream?.();
    const { err, reply: value } = await reply;
    expect(err).toBeNull();
    expect(value).toMatchObject({ count, bytes: count * KiB, text: 'in order' });
  });

  it('relays a bidirectional stream of 2 000 messages each way, in order, while both sides write', { timeout: 60_000 }, async () => {
    const { client } = await throughProxy();
    const count = 2_000;
    const call = client.Bidi(new Metadata(), {});
    const done = collectStream(call);
    const pump = (seq: number): void => {
      for (; seq < count; seq++) {
        if (!call.write({ seq, text: `m${seq}`, payload: patternedPayload(seq, 512) })) {
          const next = seq + 1;
          call.once('drain', () => pump(next));
          return;
        }
      }
      call.end();
    };
    pump(0);
    const { messages, status: end } = await done;
    expect(end.code).toBe(status.OK);
    expect(messages).toHaveLength(count);
    expect(messages.findIndex((m, i) => m.seq !== i || m.text !== `m${i}` || !m.payload.equals(patternedPayload(i, 512)))).toBe(-1);
  });
});

describe('metadata and status, relayed exactly', () => {
  const MESSAGE = 'not here: 100% sure ü\n\t — 日本 , ok';
  const DETAILS = Buffer.from([0x08, 0x05, 0x12, 0x00, 0xff, 0x80, 0x2c, 0x0a]);

  it('passes request metadata (binary values included) up, and response headers, trailers and an error status down', async () => {
    let seenMetadata: Metadata | undefined;
    const { client } = await throughProxy({
      Unary(call, callback) {
        seenMetadata = call.metadata;
        const headers = new Metadata();
        headers.set('x-init', 'initial');
        headers.set('x-init-bin', Buffer.from([0, 1, 2, 0xff]));
        call.sendMetadata(headers);
        const trailers = new Metadata();
        trailers.set('grpc-status-details-bin', DETAILS);
        trailers.set('x-trail-bin', Buffer.from([9, 0, 9]));
        trailers.set('x-trail', 'trailing');
        callback({ code: status.NOT_FOUND, details: MESSAGE, metadata: trailers });
      },
    });
    const metadata = new Metadata();
    metadata.set('x-req', 'plain value');
    metadata.set('x-req-bin', Buffer.from([0x00, 0xc8, 0x07, 0x2c]));
    metadata.add('x-multi-bin', Buffer.from([1]));
    metadata.add('x-multi-bin', Buffer.from([2, 3]));
    const outcome = await callUnary(client, { text: 'x' }, metadata);
    expect(seenMetadata?.get('x-req')).toEqual(['plain value']);
    expect(seenMetadata?.get('x-req-bin')).toEqual([Buffer.from([0x00, 0xc8, 0x07, 0x2c])]);
    expect(seenMetadata?.get('x-multi-bin')).toEqual([Buffer.from([1]), Buffer.from([2, 3])]);
    expect(outcome.headers?.get('x-init')).toEqual(['initial']);
    expect(outcome.headers?.get('x-init-bin')).toEqual([Buffer.from([0, 1, 2, 0xff])]);
    expect(outcome.status.code).toBe(status.NOT_FOUND);
    expect(outcome.status.details).toBe(MESSAGE);
    expect(outcome.status.metadata.get('grpc-status-details-bin')).toEqual([DETAILS]);
    expect(outcome.status.metadata.get('x-trail-bin')).toEqual([Buffer.from([9, 0, 9])]);
    expect(outcome.status.metadata.get('x-trail')).toEqual(['trailing']);
  });

  it('relays the upstream’s response headers and trailers byte for byte on the wire', async () => {
    const upstream = await startGrpcUpstream({
      Unary(call, callback) {
        const headers = new Metadata();
        headers.set('x-init-bin', Buffer.from([0, 1, 2, 0xff]));
        call.sendMetadata(headers);
        const trailers = new Metadata();
        trailers.set('x-trail-bin', DETAILS);
        callback(null, { text: 'answer' }, trailers);
      },
      ServerStream(call) {
        const trailers = new Metadata();
        trailers.set('grpc-status-details-bin', DETAILS);
        call.emit('error', { code: status.FAILED_PRECONDITION, details: MESSAGE, metadata: trailers });
      },
    });
    const proxy = await proxyTo(upstream.url);
    const request = grpcFrame(); // an empty EchoRequest or StreamRequest
    const wanted = ['grpc-status', 'grpc-message', 'grpc-status-details-bin', 'x-trail-bin'];
    for (const path of [PATHS.unary, PATHS.serverStream]) {
      const direct = await h2Request(await h2Session(upstream.url), grpcHeaders(path), request);
      const proxied = await h2Request(await h2Session(proxy.url), grpcHeaders(path), request);
      expect(proxied.status).toBe(200);
      expect(proxied.headers['content-type']).toBe(direct.headers['content-type']);
      expect(proxied.headers['x-init-bin']).toBe(direct.headers['x-init-bin']);
      expect(proxied.body.equals(direct.body)).toBe(true);
      // A trailers-only answer of the upstream stays one (its status in the headers), a normal one keeps its trailers.
      expect(proxied.endedWithHeaders).toBe(direct.endedWithHeaders);
      const statusFields = (r: typeof direct): Record<string, unknown> =>
        Object.fromEntries(wanted.map((name) => [name, (r.endedWithHeaders ? r.headers : r.trailers)?.[name]]));
      expect(statusFields(proxied)).toEqual(statusFields(direct));
      expect(statusFields(direct)['grpc-status']).toBe(path === PATHS.unary ? '0' : String(status.FAILED_PRECONDITION));
    }
  });

  it.each(
    (['trailers-only', 'headers, then trailers'] as const).flatMap((shape) =>
      (
        [
          ['OK', status.OK],
          ['INVALID_ARGUMENT', status.INVALID_ARGUMENT],
          ['NOT_FOUND', status.NOT_FOUND],
          ['PERMISSION_DENIED', status.PERMISSION_DENIED],
          ['RESOURCE_EXHAUSTED', status.RESOURCE_EXHAUSTED],
          ['INTERNAL', status.INTERNAL],
          ['UNAVAILABLE', status.UNAVAILABLE],
          ['UNAUTHENTICATED', status.UNAUTHENTICATED],
        ] as const
      ).map(([name, code]) => [name, shape, code] as const),
    ),
  )('hands the upstream’s %s (%s) to the client unchanged, message included', async (_name, shape, code) => {
    const { client } = await throughProxy({
      Unary(call, callback) {
        if (shape !== 'trailers-only') call.sendMetadata(new Metadata());
        if (code === status.OK) callback(null, { text: 'fine' });
        else callback({ code, details: `upstream says ${code}` });
      },
    });
    const outcome = await callUnary(client, {});
    expect(outcome.status.code).toBe(code);
    expect(outcome.status.details).toBe(code === status.OK ? 'OK' : `upstream says ${code}`);
    if (code === status.OK) expect(outcome.reply?.text).toBe('fine');
  });
});

describe('deadlines and cancellation', () => {
  it('passes the client’s deadline on as grpc-timeout, and none when the client set none', async () => {
    const deadlines: number[] = [];
    const { client } = await throughProxy({
      Unary(call, callback) {
        const deadline = call.getDeadline();
        deadlines.push(deadline instanceof Date ? deadline.getTime() : deadline);
        callback(null, {});
      },
    });
    const sentAt = Date.now();
    await callUnary(client, {}, new Metadata(), { deadline: sentAt + 5_000 });
    await callUnary(client, {});
    expect(deadlines).toHaveLength(2);
    expect(deadlines[0]).toBeGreaterThan(sentAt);
    expect(deadlines[0]).toBeLessThanOrEqual(sentAt + 5_000 + 50);
    expect(deadlines[1]).toBe(Infinity);
  });

  it('ends a call whose deadline passed with DEADLINE_EXCEEDED, and the upstream sees its call cancelled', async () => {
    let cancelled: Promise<string> | undefined;
    const { client } = await throughProxy({
      Unary(call) {
        cancelled = cancelledWithin(call, 5_000); // never answers
      },
    });
    const started = Date.now();
    const outcome = await callUnary(client, {}, new Metadata(), { deadline: Date.now() + 300 });
    expect(outcome.status.code).toBe(status.DEADLINE_EXCEEDED);
    expect(Date.now() - started).toBeLessThan(3_000);
    await until(() => cancelled !== undefined, 'the call at the upstream');
    expect(await cancelled).toBe('cancelled');
  });

  it.each(['ServerStream', 'ClientStream', 'Bidi'] as const)('cancels the upstream %s call at once when the client cancels', async (method) => {
    let cancelled: Promise<string> | undefined;
    const keepWriting = (call: ServerWritableStream<StreamRequest, Partial<EchoReply>>): void => {
      cancelled = cancelledWithin(call, 3_000);
      const timer = setInterval(() => call.write({ text: 'tick' }), 20);
      call.once('cancelled', () => clearInterval(timer));
      onTestFinished(() => clearInterval(timer));
    };
    const { client } = await throughProxy({
      ServerStream: keepWriting,
      ClientStream(call) {
        cancelled = cancelledWithin(call, 3_000);
        call.on('data', () => {});
      },
      Bidi(call) {
        cancelled = cancelledWithin(call, 3_000);
        call.on('data', () => call.write({ text: 'echo' }));
      },
    });
    const call =
      method === 'ServerStream'
        ? client.ServerStream({}, new Metadata(), {})
        : method === 'ClientStream'
          ? client.ClientStream(new Metadata(), {}, () => {})
          : client.Bidi(new Metadata(), {});
    call.on('error', () => {});
    if (method !== 'ServerStream') (call as { write(m: object): boolean }).write({ text: 'first' });
    await until(() => cancelled !== undefined, 'the call at the upstream');
    call.cancel();
    expect(await cancelled).toBe('cancelled');
  });
});

describe('counting calls', () => {
  it('counts each call once in apiCount{method="POST"}, a streaming call when it ends, and records rpc_server_call_duration_seconds', async () => {
    const { proxy, client } = await throughProxy();
    const before = await proxy.metrics();
    const posts = (t: string): number => total(t, 'apiCount', { method: 'POST' }) - total(before, 'apiCount', { method: 'POST' });
    await callUnary(client, {});
    await collectStream(client.ServerStream({ count: 3, size: 10 }, new Metadata(), {}));
    const bidi = client.Bidi(new Metadata(), {});
    const bidiDone = collectStream(bidi);
    for (let i = 0; i < 3; i++) {
      const echoed = new Promise((resolve) => bidi.once('data', resolve));
      bidi.write({ seq: i });
      await echoed;
    }
    const during = await settle(proxy.metrics, (t) => posts(t) >= 2);
    expect(posts(during)).toBe(2); // the bidi call is still open: not counted yet
    bidi.end();
    await bidiDone;
    const after = await settle(proxy.metrics, (t) => posts(t) >= 3);
    expect(posts(after)).toBe(3);
    expect(after).toContain('rpc_server_call_duration_seconds');
  });

  it.each(
    (['trailers-only', 'headers, then trailers'] as const).flatMap((shape) =>
      (
        [
          ['OK', 0, status.OK],
          ['NOT_FOUND', 0, status.NOT_FOUND],
          ['INVALID_ARGUMENT', 0, status.INVALID_ARGUMENT],
          ['PERMISSION_DENIED', 0, status.PERMISSION_DENIED],
          ['UNKNOWN', 1, status.UNKNOWN],
          ['DEADLINE_EXCEEDED', 1, status.DEADLINE_EXCEEDED],
          ['UNIMPLEMENTED', 1, status.UNIMPLEMENTED],
          ['INTERNAL', 1, status.INTERNAL],
          ['UNAVAILABLE', 1, status.UNAVAILABLE],
          ['DATA_LOSS', 1, status.DATA_LOSS],
        ] as const
      ).map(([name, errors, code]) => [name, shape, errors, code] as const),
    ),
  )('counts an upstream %s (%s) in apiErrorCount{type="api"} %d time(s), and in apiCount once', async (_name, shape, errors, code) => {
    const { proxy, client } = await throughProxy({
      Unary(call, callback) {
        // grpc-js answers an error without a message trailers-only, unless headers went first.
        if (shape !== 'trailers-only') call.sendMetadata(new Metadata());
        if (code === status.OK) callback(null, {});
        else callback({ code, details: 'as told' });
      },
    });
    const before = await proxy.metrics();
    await callUnary(client, {}); // what the client gets has tests of its own
    const after = await settle(proxy.metrics, (t) => total(t, 'apiCount', { method: 'POST' }) > total(before, 'apiCount', { method: 'POST' }));
    expect(total(after, 'apiCount', { method: 'POST' }) - total(before, 'apiCount', { method: 'POST' })).toBe(1);
    expect(total(after, 'apiErrorCount', { type: 'api' }) - total(before, 'apiErrorCount', { type: 'api' })).toBe(errors);
  });

  it('does not count a call the client cancelled as an error', async () => {
    let atUpstream = false;
    const { proxy, client } = await throughProxy({
      ServerStream(call) {
        atUpstream = true;
        call.write({ text: 'one' }); // and nothing more
      },
    });
    const before = await proxy.metrics();
    const call = client.ServerStream({}, new Metadata(), {});
    call.on('error', () => {});
    await new Promise((resolve) => call.once('data', resolve));
    expect(atUpstream).toBe(true);
    call.cancel();
    const after = await settle(proxy.metrics, (t) => total(t, 'apiCount', { method: 'POST' }) > total(before, 'apiCount', { method: 'POST' }));
    expect(total(after, 'apiCount', { method: 'POST' }) - total(before, 'apiCount', { method: 'POST' })).toBe(1);
    expect(total(after, 'apiErrorCount', { type: 'api' })).toBe(total(before, 'apiErrorCount', { type: 'api' }));
  });
});
