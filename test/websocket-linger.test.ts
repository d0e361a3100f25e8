/**
 * The linger of an ending WebSocket session (proxy/websocket/linger.ts) counts bytes that moved, not
 * bytes queued: a reader that stopped is cut after the linger however much is still being queued
 * for it, and a slow reader that keeps reading gets a tail far larger than the kernel's buffers,
 * however long it takes. Over real loopback sockets, then through the proxy.
 */
import { type AddressInfo, type Socket, connect, createServer } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Duplex, PassThrough } from 'node:stream';
import { describe, expect, it, onTestFinished } from 'vitest';
import { createFrameInspector } from '../src/proxy/websocket/inspector.js';
import { CLOSE_GRACE_MS, Linger } from '../src/proxy/websocket/linger.js';
import { Relay } from '../src/proxy/websocket/relay.js';
import { type Proxy, settle, startProxy, total, within } from './helpers.js';
import { OP_BINARY, createFrameReader, encodeFrame, patterned, rawClient, startRawUpstream, switchingProtocols } from './ws-peers.js';

const KiB = 1024;
const MiB = 1024 * KiB;
/** Far more than loopback's kernel buffers take from a socket whose peer does not read (about 4 MiB here). */
const TAIL = 32 * MiB;
const CHUNK = 64 * KiB;

/** A connected pair over loopback: `near` is the side under test, `far` its peer, which reads nothing until told. */
async function loopbackPair(): Promise<{ near: Socket; far: Socket }> {
  const server = createServer({ pauseOnConnect: true });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const near = connect((server.address() as AddressInfo).port, '127.0.0.1');
  const far = await accepted;
  await new Promise((resolve) => (near.connecting ? near.once('connect', resolve) : resolve(null)));
  for (const socket of [near, far]) socket.on('error', () => {});
  onTestFinished(() => {
    near.destroy();
    far.destroy();
    server.close();
  });
  return { near, far };
}

/** Writes `total` bytes in chunks at once, ignoring backpressure: a tail queued in the socket. */
function queueTail(socket: Socket, total: number): void {
  for (let sent = 0; sent < total; sent += CHUNK) socket.write(patterned(sent / CHUNK, CHUNK));
}

/** Reads `socket` at about `bytesPerSecond` (in bursts every 50 ms); counts what came and whether it ended. */
function readSlowly(socket: Socket, bytesPerSecond: number): { readonly received: () => number; readonly ended: Promise<number> } {
  const perTick = bytesPerSecond / 20;
  let allowance = perTick;
  let received = 0;
  socket.on('data', (chunk: Buffer) => {
    received += chunk.length;
    allowance -= chunk.length;
    if (allowance <= 0) socket.pause();
  });
  const timer = setInterval(() => {
    allowance = perTick;
    socket.resume();
  }, 50);
  onTestFinished(() => clearInterval(timer));
  const ended = new Promise<number>((resolve) => {
    socket.once('end', () => resolve(received));
    socket.once('close', () => resolve(received));
  });
  return { received: () => received, ended };
}

function closed(socket: Socket): Promise<number> {
  const since = performance.now();
  return new Promise((resolve) => {
    if (socket.destroyed) resolve(0);
    else socket.once('close', () => resolve(performance.now() - since));
  });
}

describe('the linger, on a socket', () => {
  it('keeps a socket while a slow reader drains a tail queued all at once, to its last byte', { timeout: 30_000 }, async () => {
    const { near, far } = await loopbackPair();
    queueTail(near, TAIL);
    near.end();
    const linger = new Linger([near]);
    onTestFinished(() => linger.stop());
    linger.start();
    // About 4 s for the tail: the whole of it was queued before the linger began, so `bytesWritten`
    // stood still from the start and the old count cut the socket after one or two seconds.
    const reader = readSlowly(far, 8 * MiB);
    expect(await within(reader.ended, 20_000, 'the tail to end')).toBe(TAIL);
  });

  it('cuts a socket whose peer stopped reading within two intervals, though more keeps being queued for it', { timeout: 15_000 }, async () => {
    const { near } = await loopbackPair();
    queueTail(near, TAIL);
    // The peer never reads; something keeps queueing for it (bytesWritten grows, nothing moves).
    const trickle = setInterval(() => near.writable && near.write(Buffer.alloc(KiB)), 50);
    onTestFinished(() => clearInterval(trickle));
    const linger = new Linger([near]);
    onTestFinished(() => linger.stop());
    const cut = closed(near);
    linger.start();
    const ms = await within(cut, 2 * CLOSE_GRACE_MS + 1_500, 'still open after 3.5 s');
    expect(ms).toBeTypeOf('number');
    expect(ms).toBeGreaterThanOrEqual(CLOSE_GRACE_MS - 50);
  });
});

describe('the linger, through the proxy', () => {
  /**
   * A session the client half-closes at once; the upstream answers the FIN with `TAIL` bytes of binary
   * frames (64 KiB each) and its own FIN. Resolves with the client's socket once the tail is on its way.
   */
  async function tailAfterClientFin(): Promise<{ client: Socket; upstream: Socket; proxy: Proxy }> {
    const upstream = await startRawUpstream((req, socket) => {
      socket.write(switchingProtocols(req));
      socket.once('end', () => {
        for (let seq = 0; seq * CHUNK < TAIL; seq++) socket.write(encodeFrame(OP_BINARY, patterned(seq, CHUNK - 10), false));
        socket.end();
      });
      socket.resume();
    });
    const proxy = await startProxy(upstream.url);
    onTestFinished(proxy.close);
    const { socket: client, rest } = await rawClient(proxy.port, '/api/tail');
    expect(rest.length).toBe(0);
    client.end();
    const upstreamSocket = upstream.sockets[0];
    if (upstreamSocket === undefined) throw new Error('no upstream session');
    return { client, upstream: upstreamSocket, proxy };
  }

  it('relays the whole tail to a client that half-closed and reads it slowly', { timeout: 30_000 }, async () => {
    const { client } = await tailAfterClientFin();
    const reader = createFrameReader();
    const frames: number[] = [];
    client.on('data', (chunk: Buffer) => {
      for (const frame of reader.push(chunk)) frames.push(frame.payload.equals(patterned(frames.length, CHUNK - 10)) ? 1 : 0);
    });
    const slow = readSlowly(client, 8 * MiB);
    await within(slow.ended, 20_000, 'the end of the tail');
    expect({ frames: frames.length, intact: frames.every((ok) => ok === 1) }).toEqual({ frames: TAIL / CHUNK, intact: true });
  });

  it('lets go of both sides after the linger when the client stops reading the tail', { timeout: 20_000 }, async () => {
    const { client, upstream, proxy } = await tailAfterClientFin();
    // The client reads nothing: the proxy's writes to it stall, then its reads from the upstream, and nothing moves.
    expect(await within(closed(upstream), 10_000, 'the upstream still connected after 10 s')).toBeTypeOf('number');
    const sessions = await settle(proxy.metrics, (text) => total(text, 'metrics_proxy_websocket_sessions_active') === 0);
    expect(total(sessions, 'metrics_proxy_websocket_sessions_active')).toBe(0);
    expect(client.bytesRead).toBeLessThan(TAIL);
  });
});

describe('the relay of an ending session', () => {
  it('keeps backpressure while it finishes the frame in flight, so its rest does not pile up for a reader that stopped', () => {
    const from = new PassThrough();
    // A peer that has stopped reading: no write ever completes.
    const to = new Duplex({ writableHighWaterMark: 16 * KiB, write: () => {}, read: () => {} });
    const relay = new Relay(from, to, createFrameInspector(false, { onMessage: () => {}, onClose: () => {} }));
    relay.start();
    const frame = encodeFrame(OP_BINARY, Buffer.alloc(8 * MiB), false);
    // The frame has begun, and the peer's buffer is not full yet when the session starts ending.
    from.write(frame.subarray(0, KiB));
    expect(from.isPaused()).toBe(false);
    relay.stopAtFrameBoundary(encodeFrame(0x8, Buffer.from([0x03, 0xe9]), false));
    for (let at = KiB; at < frame.length; at += CHUNK) from.write(frame.subarray(at, at + CHUNK));
    expect({ paused: from.isPaused(), queuedBelow: to.writableLength <= 2 * CHUNK }).toEqual({ paused: true, queuedBelow: true });
  });
});
