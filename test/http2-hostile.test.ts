/**
 * Hostile HTTP/2 clients on the proxy's one port: prefaces cut short, dribbled or followed by garbage,
 * first bytes that only look like a preface, streams reset mid-upload and mid-download, and the rapid
 * reset attack (CVE-2023-44487). Each must leave the proxy serving everyone else, forward nothing it
 * should not, and leave no connection or request behind.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { constants } from 'node:http2';
import { connect } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { type Proxy, echoHandler, httpRequest, rawExchange, settle, total, until, within } from './helpers.js';
import {
  FLAG,
  FRAME,
  PREFACE,
  dataFrame,
  describeFrames,
  encodeFrame,
  endsStream,
  errorCodeOf,
  expectServing,
  h2Get,
  h2Session,
  headersFrames,
  isStatus200,
  parseHttp1Answers,
  proxyTo,
  rapidReset,
  rawH2Client,
  requestHeaders,
  rstStreamFrame,
  settingsFrame,
  startRawH2Upstream,
  upstreamWith,
} from './h2-peers.js';

function connections(proxy: Proxy): Promise<number> {
  return new Promise((resolve, reject) => proxy.app.server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
}

/** Writes `bytes` one at a time, each in a write of its own a few milliseconds apart. */
async function dribble(write: (b: Buffer) => void, bytes: Buffer): Promise<void> {
  for (const byte of bytes) {
    write(Buffer.from([byte]));
    await new Promise((r) => setTimeout(r, 3));
  }
}

describe('connections that never finish the preface', () => {
  it.each([
    ['sent nothing', Buffer.alloc(0)],
    ['sent half the preface', PREFACE.subarray(0, 12)],
    ['sent all but the preface’s last byte', PREFACE.subarray(0, PREFACE.length - 1)],
    ['sent the preface but no SETTINGS', PREFACE],
  ])('closes a connection that %s and stopped, within the head timeout', async (_what, greeting) => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url, { requestHeaderTimeoutMs: 300, http2IdleTimeoutMs: 300 });
    const started = Date.now();
    const client = await rawH2Client(proxy.port, greeting);
    const outcome = await within(client.closed.then(() => 'closed'), 10_000, 'still open');
    expect(outcome).toBe('closed');
    // --request-header-timeout (300 ms) covers the preface and the first SETTINGS: well under 10 s.
    expect(Date.now() - started).toBeLessThan(9_000);
    expect(upstream.seen).toHaveLength(0);
    await expectServing(proxy);
  });
});

describe('garbage after the preface', () => {
  const settings = settingsFrame();
  it.each([
    ['bytes that are no frame at all', Buffer.from('this is not an HTTP/2 frame, not even close, really.')],
    ['HTTP/1.1 instead of frames', Buffer.from('GET /api/x HTTP/1.1\r\nhost: x\r\n\r\n')],
    ['a request on an even (server-side) stream id', Buffer.concat([settings, headersFrames(2, requestHeaders('/api/even'))])],
  ])('closes the connection on %s, forwards nothing, and keeps serving', async (_what, garbage) => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url);
    const client = await rawH2Client(proxy.port, Buffer.concat([PREFACE, garbage]));
    const outcome = await within(client.closed.then(() => 'closed'), 5_000, 'still open');
    // RFC 9113 §5.4.1: after a GOAWAY for a connection error the endpoint MUST close the TCP connection.
    expect(outcome, `frames from the proxy: ${describeFrames(client.frames)}`).toBe('closed');
    expect(upstream.seen).toHaveLength(0);
    await expectServing(proxy);
    expect(await settle(() => connections(proxy), (n) => n === 0)).toBe(0);
  });

  // A connection error nghttp2 finds in a frame once the preface is through: it sends GOAWAY with the
  // error's code. Node 24 then closes the connection; Node 20 keeps it open, and tells nothing of the
  // GOAWAY it sent. There the proxy's bound is --http2-idle-timeout (no open stream: GOAWAY and close).
  const IDLE_MS = 300;
  it.each([
    ['a SETTINGS frame of a wrong length', encodeFrame(FRAME.SETTINGS, 0, 0, Buffer.alloc(5)), constants.NGHTTP2_FRAME_SIZE_ERROR],
    ['a header block that does not decode', Buffer.concat([settings, encodeFrame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]))]), constants.NGHTTP2_COMPRESSION_ERROR],
    ['a frame header announcing 16 MiB', Buffer.concat([settings, Buffer.from([0xff, 0xff, 0xff, FRAME.DATA, 0, 0, 0, 0, 1])]), constants.NGHTTP2_FRAME_SIZE_ERROR],
  ])('closes the connection on %s after its GOAWAY (at the latest at the idle timeout), forwards nothing, and keeps serving', async (_what, garbage, code) => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url, { http2IdleTimeoutMs: IDLE_MS });
    const client = await rawH2Client(proxy.port, Buffer.concat([PREFACE, garbage]));
    // The idle timer runs from the connection's start: closed by then whichever way, give or take a loaded machine.
    const outcome = await within(client.closed.then(() => 'closed'), IDLE_MS + 2_000, 'still open');
    expect(outcome, `frames from the proxy: ${describeFrames(client.frames)}`).toBe('closed');
    const goaway = await client.waitFor((f) => f.type === FRAME.GOAWAY, 'a GOAWAY');
    expect(errorCodeOf(goaway)).toBe(code);
    expect(upstream.seen).toHaveLength(0);
    await expectServing(proxy);
    expect(await settle(() => connections(proxy), (n) => n === 0)).toBe(0);
  });
});

describe('first bytes that arrive slowly, or only look like a preface', () => {
  it('recognises a preface dribbled one byte at a time as HTTP/2', async () => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url);
    const client = await rawH2Client(proxy.port, Buffer.alloc(0));
    await dribble((b) => client.send(b), PREFACE);
    client.send(settingsFrame());
    await client.waitFor((f) => f.type === FRAME.SETTINGS, 'the proxy’s SETTINGS');
    client.send(headersFrames(1, requestHeaders('/api/dribbled')));
    const answer = await client.waitFor((f) => f.streamId === 1 && (f.type === FRAME.HEADERS || f.type === FRAME.RST_STREAM), 'the answer');
    expect(isStatus200(answer)).toBe(true);
    expect(upstream.seen.map((r) => r.url)).toEqual(['/api/dribbled']);
  });

  it('answers an HTTP/1.1 request dribbled one byte at a time, body included', async () => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url);
    const socket = connect(proxy.port, '127.0.0.1');
    socket.setNoDelay(true);
    onTestFinished(() => {
      socket.destroy();
    });
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    const closed = new Promise((resolve) => socket.once('close', resolve));
    await new Promise((resolve) => socket.once('connect', resolve));
    await dribble((b) => socket.write(b), Buffer.from('POST /api/dribbled HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello'));
    await closed;
    const [answer] = parseHttp1Answers(Buffer.concat(chunks));
    expect(answer?.status).toBe(200);
    expect(answer?.body.toString()).toBe('hello');
  });

  it.each([
    ['a PRI request that is not the preface', 'PRI /api/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'],
    ['a first line sharing the preface’s first 8 bytes', 'PRI * HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'],
  ])('answers %s over HTTP/1.1, never as HTTP/2', async (_what, raw) => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url);
    const answer = await rawExchange(proxy.port, raw, 5_000);
    expect(answer).toMatch(/^HTTP\/1\.1 \d{3} /);
    await expectServing(proxy);
  });

  it('forwards an HTTP/1.1 POST whose head and body came in one TCP write, every byte', async () => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url);
    const body = randomBytes(16 * 1024).toString('base64');
    const head = `POST /api/one-write HTTP/1.1\r\nhost: x\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n`;
    const answers = parseHttp1Answers(Buffer.from(await rawExchange(proxy.port, head + body, 5_000), 'latin1'));
    expect(answers.map((a) => a.status)).toEqual([200]);
    expect(answers[0]?.body.toString()).toBe(body);
  });
});

describe('streams reset by the client', () => {
  it('cancels the upstream request of a stream reset mid-upload (HTTP/1.1 upstream), counts it once and not as an upstream error', async () => {
    // Frames by hand: Node's client sends END_STREAM just before its RST_STREAM, which on the wire is an
    // upload the client finished. Here the body never ends: HEADERS, DATA, then RST_STREAM(CANCEL).
    let upstreamReq: IncomingMessage | undefined;
    let upstreamBytes = 0;
    const upstream = await upstreamWith((req, res) => {
      if (req.url !== '/api/upload') {
        echoHandler(req, res);
        return;
      }
      upstreamReq = req;
      req.on('data', (c: Buffer) => (upstreamBytes += c.length));
      req.on('error', () => {});
    });
    const proxy = await proxyTo(upstream.url);
    const before = await proxy.metrics();
    const client = await rawH2Client(proxy.port);
    await client.waitFor((f) => f.type === FRAME.SETTINGS, 'the proxy’s SETTINGS');
    client.send(headersFrames(1, requestHeaders('/api/upload', 'POST'), { endStream: false }));
    client.send(dataFrame(1, randomBytes(16 * 1024), false));
    await until(() => upstreamBytes === 16 * 1024, 'the first 16 KiB upstream');
    const cut = new Promise((resolve) => upstreamReq?.once('aborted', () => resolve('upstream request cut')));
    const completeAtUpstream = new Promise((resolve) => upstreamReq?.once('end', () => resolve('the upload looked complete')));
    client.send(rstStreamFrame(1, constants.NGHTTP2_CANCEL));
    const outcome = await within(Promise.race([cut, completeAtUpstream]), 5_000, 'upstream request still open after 5 s');
    expect(outcome).toBe('upstream request cut');
    const after = await settle(proxy.metrics, (t) => total(t, 'apiCount', { method: 'POST' }) > total(before, 'apiCount', { method: 'POST' }));
    expect(total(after, 'apiCount', { method: 'POST' }) - total(before, 'apiCount', { method: 'POST' })).toBe(1);
    expect(total(after, 'apiErrorCount', { type: 'api' })).toBe(total(before, 'apiErrorCount', { type: 'api' }));
    expect(total(after, 'http_server_active_requests')).toBe(0);
    await expectServing(proxy);
  });

  it('resets the upstream stream of a stream reset mid-upload, never ending its body (--upstream-protocol http2)', async () => {
    const upstream = await startRawH2Upstream();
    const proxy = await proxyTo(upstream.url, { upstreamProtocol: 'http2' });
    const client = await rawH2Client(proxy.port);
    await client.waitFor((f) => f.type === FRAME.SETTINGS, 'the proxy’s SETTINGS');
    client.send(headersFrames(1, requestHeaders('/api/upload', 'POST'), { endStream: false }));
    client.send(dataFrame(1, randomBytes(16 * 1024), false));
    const upstreamBytes = (): number => upstream.frames.filter((f) => f.type === FRAME.DATA).reduce((n, f) => n + f.payload.length, 0);
    await until(() => upstreamBytes() === 16 * 1024, 'the first 16 KiB upstream');
    const request = upstream.frames.find((f) => f.type === FRAME.HEADERS);
    const id = request?.streamId ?? 0;
    client.send(rstStreamFrame(1, constants.NGHTTP2_CANCEL));
    await until(() => upstream.frames.some((f) => f.type === FRAME.RST_STREAM && f.streamId === id), 'the reset upstream');
    // END_STREAM on the upstream stream would tell the service the upload was complete.
    const ended = upstream.frames.filter((f) => f.streamId === id && endsStream(f));
    expect(describeFrames(ended)).toBe('');
  });

  it('cancels the upstream response of a stream reset mid-download', async () => {
    let upstreamRes: ServerResponse | undefined;
    const upstream = await upstreamWith((req, res) => {
      if (req.url !== '/api/endless') {
        echoHandler(req, res);
        return;
      }
      upstreamRes = res;
      req.resume();
      res.writeHead(200);
      const chunk = Buffer.alloc(64 * 1024, 1);
      const pump = (): void => {
        while (!res.destroyed && res.write(chunk));
        if (!res.destroyed) res.once('drain', pump);
      };
      pump();
    });
    const proxy = await proxyTo(upstream.url);
    const session = await h2Session(proxy.url);
    const stream = session.request({ ':path': '/api/endless' });
    stream.on('error', () => {});
    await new Promise((resolve) => stream.once('data', resolve));
    const upstreamClosed = new Promise((resolve) => upstreamRes?.once('close', resolve));
    stream.close(constants.NGHTTP2_CANCEL);
    const outcome = await within(upstreamClosed.then(() => 'upstream response cut'), 5_000, 'upstream still sending after 5 s');
    expect(outcome).toBe('upstream response cut');
    await expectServing(proxy);
  });
});

describe('rapid reset (CVE-2023-44487)', () => {
  it('forwards almost none of thousands of cancelled streams, and keeps serving another client meanwhile', { timeout: 60_000 }, async () => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url);
    const attacker = await h2Session(proxy.url);
    let attacking = true;
    const bystander = (async () => {
      let served = 0;
      const failures: string[] = [];
      while (attacking && served < 500) {
        try {
          const [h2, h1] = await Promise.all([h2Get(proxy.url, `/api/bystander/${served}`), httpRequest(`${proxy.url}/api/bystander/${served}`)]);
          if (h2.status !== 200 || h1.status !== 200) failures.push(`statuses ${h2.status} ${h1.status}`);
        } catch (err) {
          failures.push(String(err));
        }
        served++;
      }
      return { served, failures };
    })();
    // nghttp2 ends a session after about a thousand resets: the attacker comes back on new connections.
    let opened = await rapidReset(attacker, 5_000, 10_000);
    const deadline = Date.now() + 10_000;
    while (opened < 5_000 && Date.now() < deadline) opened += await rapidReset(await h2Session(proxy.url), 5_000 - opened, deadline - Date.now());
    attacking = false;
    const { served, failures } = await bystander;
    expect(opened).toBeGreaterThanOrEqual(3_000);
    expect(failures).toEqual([]);
    expect(served).toBeGreaterThan(0);
    const forwarded = upstream.seen.filter((r) => r.url?.startsWith('/api/attack/') === true).length;
    expect(forwarded, `${forwarded} of ${opened} cancelled streams reached the upstream`).toBeLessThan(100);
    await expectServing(proxy);
    const text = await settle(proxy.metrics, (t) => total(t, 'http_server_active_requests') === 0);
    expect(total(text, 'http_server_active_requests')).toBe(0);
  });
});
