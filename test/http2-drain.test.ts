/**
 * The drain (app.shutdown, as on SIGTERM) with HTTP/2 clients connected: GOAWAY, streams in flight
 * finish whole, streams opened after the GOAWAY are refused, and the drain ends even when a client's
 * session was already closing. The same through the real bin is in http2-bin.test.ts.
 */
import { constants } from 'node:http2';
import { describe, expect, it, onTestFinished } from 'vitest';
import { until, within } from './helpers.js';
import {
  FLAG,
  FRAME,
  goawayFrame,
  h2Request,
  h2Session,
  headersFrames,
  holdingUpstream,
  isStatus200,
  pingFrame,
  proxyTo,
  rawH2Client,
  requestHeaders,
  upstreamWith,
} from './h2-peers.js';

describe('drain (app.shutdown)', () => {
  it('sends GOAWAY, lets a stream in flight finish whole, then stops', async () => {
    let release: (() => void) | undefined;
    const upstream = await upstreamWith((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first half, ');
      release = () => res.end('second half');
    });
    const proxy = await proxyTo(upstream.url, { shutdownTimeoutMs: 5_000 });
    const session = await h2Session(proxy.url);
    const goaway = new Promise<void>((resolve) => session.once('goaway', () => resolve()));
    const inFlight = h2Request(session, { ':path': '/api/slow' });
    await until(() => release !== undefined, 'the request upstream');
    const stopped = proxy.app.shutdown();
    await goaway;
    release?.();
    const res = await inFlight;
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('first half, second half');
    await stopped;
    expect(proxy.app.server.listening).toBe(false);
  });

  it('finishes when a client had sent GOAWAY itself with a stream still open (a session already closing)', async () => {
    const hold = holdingUpstream();
    const upstream = await upstreamWith(hold.handler);
    onTestFinished(() => hold.releaseAll());
    const proxy = await proxyTo(upstream.url, { shutdownTimeoutMs: 2_000 });
    const client = await rawH2Client(proxy.port);
    await client.waitFor((f) => f.type === FRAME.SETTINGS, 'the proxy’s SETTINGS');
    client.send(headersFrames(1, requestHeaders('/api/held/open')));
    await until(() => upstream.seen.length === 1, 'stream 1 upstream');
    // The client is going away too; the PING's ACK says the proxy has read the GOAWAY.
    const opaque = Buffer.from('goawaydn');
    client.send(Buffer.concat([goawayFrame(0, constants.NGHTTP2_NO_ERROR), pingFrame(opaque)]));
    await client.waitFor((f) => f.type === FRAME.PING && (f.flags & FLAG.ACK) !== 0 && f.payload.equals(opaque), 'the PING ACK');
    const started = Date.now();
    const stopped = proxy.app.shutdown();
    hold.releaseAll();
    await client.waitFor((f) => f.streamId === 1 && isStatus200(f), 'the answer on stream 1');
    const outcome = await within(stopped.then(() => 'stopped'), 6_000, 'shutdown still pending 6 s on');
    expect(outcome).toBe('stopped');
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('refuses a stream a client opens after the GOAWAY, never forwarding it', async () => {
    const hold = holdingUpstream();
    const upstream = await upstreamWith(hold.handler);
    onTestFinished(() => hold.releaseAll());
    const proxy = await proxyTo(upstream.url, { shutdownTimeoutMs: 5_000 });
    const client = await rawH2Client(proxy.port);
    await client.waitFor((f) => f.type === FRAME.SETTINGS, 'the proxy’s SETTINGS');
    client.send(headersFrames(1, requestHeaders('/api/held/before')));
    await until(() => upstream.seen.length === 1, 'stream 1 upstream');
    const stopped = proxy.app.shutdown();
    // The final GOAWAY (a graceful server may send a first one with the largest id, as a notice).
    const lastStreamId = (f: { payload: Buffer }): number => f.payload.readUInt32BE(0) & 0x7fff_ffff;
    const goaway = await client.waitFor((f) => f.type === FRAME.GOAWAY && lastStreamId(f) < 0x7fff_ffff, 'the final GOAWAY');
    expect(lastStreamId(goaway)).toBe(1); // stream 1 will still be answered
    // A client that ignores the GOAWAY.
    client.send(headersFrames(3, requestHeaders('/api/held/after-goaway')));
    hold.releaseAll();
    await client.waitFor((f) => f.streamId === 1 && isStatus200(f), 'the answer on stream 1');
    await stopped;
    expect(upstream.seen.map((r) => r.url)).toEqual(['/api/held/before']);
    expect(client.frames.some((f) => f.streamId === 3 && f.type === FRAME.HEADERS)).toBe(false);
  });
});
