/**
 * WebSocket sessions from first byte to last, over real sockets: every byte
 * both ways (also the ones that arrive with the 101), bounded handshakes, one
 * end per session however it ends (and nothing left open), and a shutdown
 * drain that clients can read (1001 at a frame boundary).
 */
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { describe, expect, it, onTestFinished } from 'vitest';
import WebSocket from 'ws';
import type { ProxyConfig } from '../src/index.js';
import { LOOPBACK, type RunningBin, exitWithin, startListening } from './bin.js';
import { type Proxy, httpRequest, parseExposition, settle, startProxy, until, wsText } from './helpers.js';
import { openFds } from './proc.js';
import {
  type Peer,
  OP_BINARY,
  OP_CLOSE,
  OP_TEXT,
  closeCodeOf,
  encodeFrame,
  handshakeOutcome,
  patterned,
  peerLetGo,
  rawClient,
  startBlackholeUpstream,
  startRawUpstream,
  startWsUpstream,
  switchingProtocols,
  watchPeer,
} from './ws-peers.js';

const MiB = 1024 * 1024;
const SESSIONS_ACTIVE = 'metrics_proxy_websocket_sessions_active';
const SESSION_COUNT = 'metrics_proxy_websocket_session_duration_seconds_count';
const MESSAGES = 'metrics_proxy_websocket_messages_total';
const MESSAGE_BYTES = 'metrics_proxy_websocket_bytes_total';
const UPSTREAM_ERRORS = 'metrics_proxy_upstream_errors_total';

async function proxyTo(url: string, overrides: Partial<ProxyConfig> = {}): Promise<Proxy> {
  const proxy = await startProxy(url, overrides);
  onTestFinished(proxy.close);
  return proxy;
}

const wsUrl = (httpUrl: string, path: string): string => `${httpUrl.replace('http', 'ws')}${path}`;

/** The sum of every sample named `name` whose labels include `labels` (any route). */
function total(text: string, name: string, labels: Record<string, string> = {}): number {
  return parseExposition(text)
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}

/** Session-end readings: live sessions, and ended sessions by close-code label. */
function sessionReadings(text: string): { active: number; ended: number; byCode: Record<string, number> } {
  const byCode: Record<string, number> = {};
  for (const s of parseExposition(text)) {
    if (s.name !== SESSION_COUNT) continue;
    const code = s.labels.close_code ?? '?';
    byCode[code] = (byCode[code] ?? 0) + s.value;
  }
  return { active: total(text, SESSIONS_ACTIVE), ended: total(text, SESSION_COUNT), byCode };
}

/** Sessions ended between two readings, by close-code label (labels that did not move are left out). */
function endedByCode(before: ReturnType<typeof sessionReadings>, after: ReturnType<typeof sessionReadings>): Record<string, number> {
  const moved: Record<string, number> = {};
  for (const [code, count] of Object.entries(after.byCode)) {
    const delta = count - (before.byCode[code] ?? 0);
    if (delta !== 0) moved[code] = delta;
  }
  return moved;
}

async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Returns a starter that sends `size`-byte patterned messages (seq from `firstSeq`) on `ws` for as long as it
 * is open, as fast as backpressure allows: a window of messages is always queued, so the receiver reads
 * frames split at arbitrary points. Each refill waits for setImmediate: a socket that takes every write at
 * once completes writes on the next tick, and a next-tick chain would starve this process's I/O.
 */
function streamMessages(ws: WebSocket, firstSeq: number, size: number, window = 8): () => void {
  let seq = firstSeq;
  let inFlight = 0;
  const fill = (): void => {
    while (inFlight < window && ws.readyState === WebSocket.OPEN) {
      inFlight++;
      ws.send(patterned(seq++, size), { binary: true }, (err) => {
        inFlight--;
        if (err === undefined || err === null) setImmediate(fill);
      });
    }
  };
  return fill;
}

/** Sends an upgrade request by hand and returns the status and body of the answer (until the proxy closes, or `waitMs`). */
function rawUpgrade(port: number, path: string, waitMs: number): Promise<{ status: number; body: string; raw: string }> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    onTestFinished(() => {
      socket.destroy();
    });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(), waitMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      const raw = Buffer.concat(chunks).toString('latin1');
      const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(raw)?.[1] ?? 0);
      const at = raw.indexOf('\r\n\r\n');
      resolve({ status, body: at === -1 ? '' : raw.slice(at + 4), raw });
    });
    socket.write(
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
  });
}

function connections(proxy: Proxy): Promise<number> {
  return new Promise((resolve, reject) => proxy.app.server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
}

describe('every byte, both ways (all metric families on)', () => {
  it.each([
    ['in the same TCP write as the 101', true],
    ['in a write right after the 101', false],
  ])('relays an upstream greeting written %s, session after session', async (_how, sameWrite) => {
    const sessions = 6;
    const greetingFor = (path: string): string => `greeting for ${path}`;
    const upstream = await startRawUpstream((req, socket) => {
      const greeting = encodeFrame(OP_TEXT, greetingFor(req.url ?? ''), false);
      if (sameWrite) {
        socket.write(Buffer.concat([Buffer.from(switchingProtocols(req)), greeting]));
      } else {
        socket.write(switchingProtocols(req));
        socket.write(greeting);
      }
      socket.resume();
    });
    const proxy = await proxyTo(upstream.url);
    const before = await proxy.metrics();
    /** The first message of a session, or what happened instead (a lost greeting can only show as a deadline). */
    const firstMessage = (path: string): Promise<string> =>
      new Promise<string>((resolve) => {
        const ws = new WebSocket(wsUrl(proxy.url, path));
        onTestFinished(() => ws.terminate());
        const done = (what: string): void => {
          clearTimeout(timer);
          resolve(what);
          ws.terminate();
        };
        const timer = setTimeout(() => done('LOST: no message within 3 s'), 3_000);
        ws.on('error', (err) => done(`ERROR: ${err.message}`));
        ws.once('close', (code) => done(`CLOSED: ${code}`));
        ws.once('message', (data) => done(wsText(data)));
      });
    const paths = Array.from({ length: sessions }, (_v, i) => `/api/greet/${i}`);
    const got = await Promise.all(paths.map(firstMessage));
    expect(got).toEqual(paths.map(greetingFor));
    const downstream = { direction: 'downstream' };
    const after = await settle(proxy.metrics, (t) => total(t, MESSAGES, downstream) - total(before, MESSAGES, downstream) >= sessions);
    expect(total(after, MESSAGES, downstream) - total(before, MESSAGES, downstream)).toBe(sessions);
    expect(total(after, MESSAGE_BYTES, downstream) - total(before, MESSAGE_BYTES, downstream)).toBe(
      paths.reduce((sum, path) => sum + greetingFor(path).length, 0),
    );
  });

  it('relays a burst of 8 × 1 MiB binary messages the upstream sends on connection, intact and in order', { timeout: 30_000 }, async () => {
    const messages = Array.from({ length: 8 }, (_v, i) => patterned(i, MiB));
    const upstream = await startWsUpstream((ws) => {
      for (const message of messages) ws.send(message, { binary: true });
    });
    const proxy = await proxyTo(upstream.url);
    const before = await proxy.metrics();
    const ws = new WebSocket(wsUrl(proxy.url, '/api/burst'), { maxPayload: 64 * MiB });
    onTestFinished(() => ws.terminate());
    const errors: string[] = [];
    const received: Buffer[] = [];
    let closeCode: number | undefined;
    ws.on('error', (err) => errors.push(err.message));
    ws.on('message', (data, isBinary) => received.push(isBinary ? (data as Buffer) : Buffer.from('TEXT?')));
    ws.on('close', (code) => (closeCode = code));
    await until(() => received.length >= messages.length || closeCode !== undefined, 'the 8 messages', 10_000).catch(() => {});
    expect({ received: received.length, closeCode, errors }).toEqual({ received: messages.length, closeCode: undefined, errors: [] });
    const intact = received.map((buf, i) => buf.equals(messages[i] as Buffer));
    expect(intact).toEqual(messages.map(() => true));
    const after = await settle(proxy.metrics, (t) => total(t, MESSAGES, { direction: 'downstream' }) - total(before, MESSAGES, { direction: 'downstream' }) >= 8);
    expect(total(after, MESSAGES, { direction: 'downstream' }) - total(before, MESSAGES, { direction: 'downstream' })).toBe(8);
    expect(total(after, MESSAGE_BYTES, { direction: 'downstream' }) - total(before, MESSAGE_BYTES, { direction: 'downstream' })).toBe(8 * MiB);
  });

  it('relays a burst of 8 × 1 MiB binary messages the client sends on open, intact and in order', { timeout: 30_000 }, async () => {
    const messages = Array.from({ length: 8 }, (_v, i) => patterned(100 + i, MiB));
    const received: Buffer[] = [];
    const upstreamErrors: string[] = [];
    const upstream = await startWsUpstream((ws) => {
      ws.on('message', (data, isBinary) => received.push(isBinary ? (data as Buffer) : Buffer.from('TEXT?')));
      ws.on('error', (err) => upstreamErrors.push(err.message));
    });
    const proxy = await proxyTo(upstream.url);
    const before = await proxy.metrics();
    const ws = new WebSocket(wsUrl(proxy.url, '/api/upload'), { maxPayload: 64 * MiB });
    onTestFinished(() => ws.terminate());
    const errors: string[] = [];
    ws.on('error', (err) => errors.push(err.message));
    ws.once('open', () => {
      for (const message of messages) ws.send(message, { binary: true });
    });
    await until(() => received.length >= messages.length || ws.readyState === WebSocket.CLOSED, 'the 8 messages upstream', 10_000).catch(() => {});
    expect({ received: received.length, errors, upstreamErrors }).toEqual({ received: messages.length, errors: [], upstreamErrors: [] });
    expect(received.map((buf, i) => buf.equals(messages[i] as Buffer))).toEqual(messages.map(() => true));
    const after = await settle(proxy.metrics, (t) => total(t, MESSAGES, { direction: 'upstream' }) - total(before, MESSAGES, { direction: 'upstream' }) >= 8);
    expect(total(after, MESSAGES, { direction: 'upstream' }) - total(before, MESSAGES, { direction: 'upstream' })).toBe(8);
    expect(total(after, MESSAGE_BYTES, { direction: 'upstream' }) - total(before, MESSAGE_BYTES, { direction: 'upstream' })).toBe(8 * MiB);
  });

  it('relays a frame the client sent in the same TCP write as its upgrade request, before the frames after the 101', async () => {
    const received: string[] = [];
    const upstream = await startWsUpstream((ws) => ws.on('message', (data) => received.push(wsText(data))));
    const proxy = await proxyTo(upstream.url);
    const client = await rawClient(proxy.port, '/api/eager', encodeFrame(OP_TEXT, 'sent with the request', true));
    client.socket.resume();
    client.socket.write(encodeFrame(OP_TEXT, 'sent after the 101', true));
    await until(() => received.length >= 2, 'both messages upstream').catch(() => {});
    expect(received).toEqual(['sent with the request', 'sent after the 101']);
  });
});

describe('bounded handshakes', () => {
  it('answers 504 to an upgrade whose upstream never accepts the TCP connection, after connectTimeoutMs', async () => {
    const blackhole = await startBlackholeUpstream();
    const proxy = await proxyTo(blackhole.url, { connectTimeoutMs: 200 });
    const before = await proxy.metrics();
    const started = performance.now();
    const answer = await rawUpgrade(proxy.port, '/api/socket', 4_000);
    const elapsed = performance.now() - started;
    expect(answer.status, answer.raw).toBe(504);
    expect(JSON.parse(answer.body)).toEqual({ ok: false, msg: 'upstream connect timed out' });
    expect(elapsed).toBeGreaterThanOrEqual(150);
    expect(elapsed).toBeLessThan(3_000);
    const after = await settle(proxy.metrics, (t) => total(t, 'apiErrorCount', { type: 'ws' }) > total(before, 'apiErrorCount', { type: 'ws' }));
    expect(total(after, 'apiErrorCount', { type: 'ws' }) - total(before, 'apiErrorCount', { type: 'ws' })).toBe(1);
    expect(total(after, 'apiErrorCount', { type: 'api' }) - total(before, 'apiErrorCount', { type: 'api' })).toBe(0);
    expect(total(after, UPSTREAM_ERRORS, { error_type: 'connect_timeout' }) - total(before, UPSTREAM_ERRORS, { error_type: 'connect_timeout' })).toBe(1);
    expect(total(after, UPSTREAM_ERRORS) - total(before, UPSTREAM_ERRORS)).toBe(1);
  });

  it('answers 504 to an upgrade the upstream accepts but never answers, after upstreamTimeoutMs, and lets go of the upstream', async () => {
    const upstream = await startRawUpstream((_req, socket) => socket.resume()); // reads the request, never answers
    const proxy = await proxyTo(upstream.url, { upstreamTimeoutMs: 200 });
    const before = await proxy.metrics();
    const started = performance.now();
    const answer = await rawUpgrade(proxy.port, '/api/socket', 4_000);
    const elapsed = performance.now() - started;
    expect(answer.status, answer.raw).toBe(504);
    expect(JSON.parse(answer.body)).toEqual({ ok: false, msg: 'upstream response timed out' });
    expect(elapsed).toBeGreaterThanOrEqual(150);
    expect(elapsed).toBeLessThan(3_000);
    expect(upstream.sockets).toHaveLength(1);
    await within(peerLetGo(upstream.sockets[0] as Socket), 3_000, 'the proxy to close the upstream connection');
    const after = await settle(proxy.metrics, (t) => total(t, 'apiErrorCount', { type: 'ws' }) > total(before, 'apiErrorCount', { type: 'ws' }));
    expect(total(after, 'apiErrorCount', { type: 'ws' }) - total(before, 'apiErrorCount', { type: 'ws' })).toBe(1);
    expect(total(after, UPSTREAM_ERRORS, { error_type: 'response_timeout' }) - total(before, UPSTREAM_ERRORS, { error_type: 'response_timeout' })).toBe(1);
    expect(total(after, UPSTREAM_ERRORS) - total(before, UPSTREAM_ERRORS)).toBe(1);
  });
});

interface Ending {
  readonly name: string;
  /** The close_code label the session's duration must be recorded under. */
  readonly label: string;
  readonly overrides?: Partial<ProxyConfig>;
  /** Ends the session; resolves when the side that did not end it has been let go by the proxy. */
  end(session: { client: Peer; upstream: Peer; proxy: Proxy }): Promise<void>;
}

const letGo = (peer: Peer, what: string): Promise<void> => within(peerLetGo(peer.socket), 5_000, what);

const ENDINGS: readonly Ending[] = [
  {
    name: 'a close frame from the client',
    label: '1000',
    async end({ client, upstream }) {
      client.close(1000);
      await until(() => upstream.closeCodes.length > 0, 'the close frame upstream');
      expect(upstream.closeCodes).toEqual([1000]);
      await until(() => client.closeCodes.length > 0, 'the echoed close frame at the client');
      expect(client.closeCodes).toEqual([1000]);
      await letGo(client, 'the proxy to close the client connection');
    },
  },
  {
    name: 'a close frame from the upstream',
    label: '1011',
    async end({ client, upstream }) {
      upstream.close(1011);
      await until(() => client.closeCodes.length > 0, 'the close frame at the client');
      expect(client.closeCodes).toEqual([1011]);
      await letGo(client, 'the proxy to close the client connection');
      await letGo(upstream, 'the proxy to close the upstream connection');
    },
  },
  {
    name: 'a FIN from the client (no close frame)',
    label: '1006',
    async end({ client, upstream }) {
      client.socket.end();
      await letGo(upstream, 'the proxy to let go of the upstream, which keeps its side open');
      await within(new Promise((r) => (client.closed() ? r(null) : client.socket.once('close', r))), 5_000, 'the client connection to close');
    },
  },
  {
    name: 'an RST from the client',
    label: '1006',
    async end({ client, upstream }) {
      client.socket.resetAndDestroy();
      await letGo(upstream, 'the proxy to let go of the upstream, which keeps its side open');
    },
  },
  {
    name: 'a FIN from the upstream (no close frame)',
    label: '1006',
    async end({ client, upstream }) {
      upstream.socket.end();
      await letGo(client, 'the proxy to let go of the client, which keeps its side open');
    },
  },
  {
    name: 'an RST from the upstream',
    label: '1006',
    async end({ client, upstream }) {
      upstream.socket.resetAndDestroy();
      await letGo(client, 'the proxy to let go of the client, which keeps its side open');
    },
  },
  {
    name: 'the idle timeout',
    label: '1001',
    overrides: { wsIdleTimeoutMs: 800 },
    async end({ client, upstream }) {
      await until(() => client.closeCodes.length > 0 && upstream.closeCodes.length > 0, 'close frames on both sides');
      expect({ client: client.closeCodes, upstream: upstream.closeCodes }).toEqual({ client: [1001], upstream: [1001] });
      await letGo(client, 'the proxy to close the client connection');
      await letGo(upstream, 'the proxy to close the upstream connection');
    },
  },
  {
    name: 'a shutdown',
    label: '1001',
    overrides: { drainDelayMs: 0, shutdownTimeoutMs: 2_000 },
    async end({ client, upstream, proxy }) {
      await within(proxy.app.shutdown(), 5_000, 'the shutdown');
      expect({ client: client.closeCodes, upstream: upstream.closeCodes }).toEqual({ client: [1001], upstream: [1001] });
      await letGo(client, 'the proxy to close the client connection');
      await letGo(upstream, 'the proxy to close the upstream connection');
    },
  },
];

describe('every session ends, exactly once', () => {
  it.each(ENDINGS.map((e) => [e.name, e] as const))('ends on %s: both sockets let go, recorded once', async (_name, ending) => {
    const upstreamPeers: Peer[] = [];
    const upstream = await startRawUpstream((req, socket) => {
      socket.write(switchingProtocols(req));
      upstreamPeers.push(watchPeer(socket, 'server'));
    });
    const proxy = await proxyTo(upstream.url, ending.overrides ?? {});
    const read = (): Promise<string> => proxy.app.registry.metrics();
    const before = sessionReadings(await read());
    const raw = await rawClient(proxy.port, '/api/lifecycle');
    const client = watchPeer(raw.socket, 'client', raw.rest);
    await until(() => upstreamPeers.length === 1, 'the upstream session');
    const upstreamPeer = upstreamPeers[0] as Peer;
    // One round trip each way: the session is up and relaying before it ends.
    client.send('ping');
    await until(() => upstreamPeer.texts().length > 0, 'ping upstream');
    upstreamPeer.send('pong');
    await until(() => client.texts().length > 0, 'pong at the client');
    expect({ up: upstreamPeer.texts(), down: client.texts() }).toEqual({ up: ['ping'], down: ['pong'] });
    expect(sessionReadings(await read()).active - before.active).toBe(1);

    await ending.end({ client, upstream: upstreamPeer, proxy });

    const after = sessionReadings(await settle(read, (t) => sessionReadings(t).ended > before.ended && sessionReadings(t).active === before.active));
    expect({ active: after.active - before.active, ended: endedByCode(before, after) }).toEqual({ active: 0, ended: { [ending.label]: 1 } });
    if (proxy.app.server.listening) expect(await settle(() => connections(proxy), (n) => n === 0)).toBe(0);
  });

  it('leaves no descriptor and no live session behind after 200 abrupt ends (FIN, RST, either side)', { timeout: 45_000 }, async () => {
    type Kind = 'client-fin' | 'client-rst' | 'upstream-fin' | 'upstream-rst';
    const kinds: readonly Kind[] = ['client-fin', 'client-rst', 'upstream-fin', 'upstream-rst'];
    const perKind = 50;
    const upstreamSockets = new Map<string, Socket>();
    const upstream = await startRawUpstream((req, socket) => {
      const url = new URL(req.url ?? '/', 'http://x');
      const kind = url.pathname.split('/').pop() as Kind | 'warmup';
      upstreamSockets.set(url.searchParams.get('id') ?? '', socket);
      socket.write(switchingProtocols(req));
      // The client's first frame: the session is up. The upstream then ends it, or answers and keeps its side open.
      socket.once('data', () => {
        if (kind === 'upstream-fin') socket.end();
        else if (kind === 'upstream-rst') socket.resetAndDestroy();
        else socket.write(encodeFrame(OP_TEXT, 'ok', false));
      });
    });
    const { bin, url, port } = await startListening(['--upstream', upstream.url, ...LOOPBACK, '--port', '0', '--log-level', 'error']);
    const scrape = async (): Promise<string> => {
      try {
        return (await httpRequest(`${url}/metrics`)).body.toString();
      } catch (err) {
        // Most likely the proxy died (a crash also lets go of every socket): say why.
        const exit = await within(bin.exited, 2_000, 'the proxy to exit').catch(() => undefined);
        throw new Error(`scrape failed (${String(err)}); proxy exit ${JSON.stringify(exit)}; stdout: ${bin.stdout()}`, { cause: err });
      }
    };
    const stableFds = async (): Promise<number> => {
      let last = -1;
      let now = openFds(bin.pid);
      while (now !== last) {
        last = now;
        await new Promise((r) => setTimeout(r, 100));
        now = openFds(bin.pid);
      }
      return now;
    };
    await scrape(); // metrics code paths warmed up before the baseline
    const baselineFds = await stableFds();
    const before = sessionReadings(await scrape());

    let id = 0;
    const oneSession = async (kind: Kind): Promise<void> => {
      const sessionId = String(id++);
      const raw = await rawClient(port, `/api/end/${kind}?id=${sessionId}`);
      const { socket } = raw;
      socket.on('error', () => {});
      socket.write(encodeFrame(OP_TEXT, 'hi', true));
      if (kind === 'client-fin' || kind === 'client-rst') {
        const answered = new Promise((r) => (raw.rest.length > 0 ? r(null) : socket.once('data', r)));
        socket.resume();
        await within(answered, 5_000, `the upstream's answer (${kind})`);
        await until(() => upstreamSockets.has(sessionId), 'the upstream socket');
        const upstreamSocket = upstreamSockets.get(sessionId) as Socket;
        if (kind === 'client-fin') socket.end();
        else socket.resetAndDestroy();
        await within(peerLetGo(upstreamSocket), 5_000, `the proxy to let go of the upstream (${kind})`);
      } else {
        await within(peerLetGo(socket), 5_000, `the proxy to let go of the client (${kind})`);
      }
    };
    const all: Array<Promise<void>> = [];
    for (let i = 0; i < perKind; i++) for (const kind of kinds) all.push(oneSession(kind));
    await Promise.all(all).catch(async (err: Error) => {
      // A reset mid-handshake usually means the proxy died: say so, with its last words.
      const exit = await within(bin.exited, 2_000, 'the proxy to exit').catch(() => undefined);
      throw new Error(`${err.message}; proxy ${exit === undefined ? 'still running' : `exited ${JSON.stringify(exit)}; stdout: ${bin.stdout()}`}`);
    });
    // A proxy that crashed would also have let go of every socket: it must still answer.
    await scrape();

    const fds = await settle(() => Promise.resolve(openFds(bin.pid)), (n) => n <= baselineFds, 10_000);
    expect(fds).toBeLessThanOrEqual(baselineFds);
    const sessions = kinds.length * perKind;
    const after = sessionReadings(await settle(scrape, (t) => sessionReadings(t).active === before.active && sessionReadings(t).ended - before.ended >= sessions));
    expect({ active: after.active - before.active, ended: endedByCode(before, after) }).toEqual({ active: 0, ended: { '1006': sessions } });
  });
});

describe('a drain that clients can read', () => {
  /** The bin with a short drain; SIGTERM and exit are the test's to drive. */
  async function drainingProxy(upstreamUrl: string, drainDelayMs: number, shutdownTimeoutMs: number): Promise<{ bin: RunningBin; url: string; port: number }> {
    return startListening([
      '--upstream', upstreamUrl, ...LOOPBACK, '--port', '0', '--log-level', 'error',
      '--drain-delay', String(drainDelayMs), '--shutdown-timeout', String(shutdownTimeoutMs),
    ]);
  }

  /** Resolves once the proxy refuses new TCP connections (it has stopped listening). */
  async function refusingConnections(port: number): Promise<void> {
    let refused = false;
    while (!refused) {
      refused = await new Promise<boolean>((resolve) => {
        const probe = connect(port, '127.0.0.1');
        probe.once('connect', () => {
          probe.destroy();
          resolve(false);
        });
        probe.once('error', () => resolve(true));
      });
      if (!refused) await new Promise((r) => setTimeout(r, 20));
    }
  }

  it('stops both directions of a streaming session at a frame boundary and sends 1001 to both sides', { timeout: 30_000 }, async () => {
    const size = 256 * 1024;
    const upstreamSide = { received: 0, bad: 0, closeCode: undefined as number | undefined };
    const upstream = await startWsUpstream((ws) => {
      // Streams from the client's first message on (bytes right after the 101 are another test's business).
      ws.once('message', streamMessages(ws, 0, size));
      ws.on('message', (data, isBinary) => {
        if (!isBinary || !(data as Buffer).equals(patterned(1_000_000 + upstreamSide.received, size))) upstreamSide.bad++;
        upstreamSide.received++;
      });
      ws.once('close', (code) => (upstreamSide.closeCode = code));
    });
    const drainDelayMs = 100;
    const shutdownTimeoutMs = 2_000;
    const { bin, url } = await drainingProxy(upstream.url, drainDelayMs, shutdownTimeoutMs);
    const ws = new WebSocket(wsUrl(url, '/api/stream'), { maxPayload: 64 * MiB });
    onTestFinished(() => ws.terminate());
    const clientSide = { received: 0, bad: 0, errors: [] as string[], closeCode: undefined as number | undefined };
    ws.on('error', (err) => clientSide.errors.push(err.message));
    ws.on('message', (data, isBinary) => {
      if (!isBinary || !(data as Buffer).equals(patterned(clientSide.received, size))) clientSide.bad++;
      clientSide.received++;
    });
    const closed = new Promise<void>((resolve) =>
      ws.once('close', (code) => {
        clientSide.closeCode = code;
        resolve();
      }),
    );
    ws.once('open', streamMessages(ws, 1_000_000, size));
    await until(() => clientSide.received >= 4 && upstreamSide.received >= 4, 'messages flowing both ways', 10_000);

    process.kill(bin.pid, 'SIGTERM');
    const deadline = drainDelayMs + shutdownTimeoutMs + 2_000;
    await within(closed, deadline, 'the client session to close');
    await until(() => upstreamSide.closeCode !== undefined, 'the upstream session to close', deadline);
    expect({ clientClose: clientSide.closeCode, upstreamClose: upstreamSide.closeCode }).toEqual({ clientClose: 1001, upstreamClose: 1001 });
    expect({ clientBad: clientSide.bad, upstreamBad: upstreamSide.bad, errors: clientSide.errors }).toEqual({ clientBad: 0, upstreamBad: 0, errors: [] });
    expect(await exitWithin(bin, deadline)).toEqual({ code: 0, signal: null });
  });

  it('finishes a frame caught half-sent in each direction at shutdown, then sends 1001 to both sides', { timeout: 20_000 }, async () => {
    const upstreamPeers: Peer[] = [];
    const upstream = await startRawUpstream((req, socket) => {
      socket.write(switchingProtocols(req));
      upstreamPeers.push(watchPeer(socket, 'server'));
    });
    const drainDelayMs = 100;
    const shutdownTimeoutMs = 2_000;
    const deadline = drainDelayMs + shutdownTimeoutMs + 2_000;
    const { bin, port } = await drainingProxy(upstream.url, drainDelayMs, shutdownTimeoutMs);
    const raw = await rawClient(port, '/api/half');
    const client = watchPeer(raw.socket, 'client', raw.rest);
    await until(() => upstreamPeers.length === 1, 'the upstream session');
    const upstreamPeer = upstreamPeers[0] as Peer;
    client.send('ping');
    await until(() => upstreamPeer.texts().length === 1, 'ping upstream');
    upstreamPeer.send('pong');
    await until(() => client.texts().length === 1, 'pong at the client');

    // Half of a 256 KiB frame each way reaches the other peer; the other half waits for the drain.
    const down = patterned(1, 256 * 1024);
    const up = patterned(2, 256 * 1024);
    const downFrame = encodeFrame(OP_BINARY, down, false);
    const upFrame = encodeFrame(OP_BINARY, up, true);
    const half = 128 * 1024;
    const clientRead = raw.socket.bytesRead;
    const upstreamRead = upstreamPeer.socket.bytesRead;
    upstreamPeer.socket.write(downFrame.subarray(0, half));
    client.socket.write(upFrame.subarray(0, half));
    await until(() => raw.socket.bytesRead >= clientRead + half && upstreamPeer.socket.bytesRead >= upstreamRead + half, 'the first halves across');

    process.kill(bin.pid, 'SIGTERM');
    await within(refusingConnections(port), deadline, 'the proxy to stop listening');
    upstreamPeer.socket.write(downFrame.subarray(half));
    client.socket.write(upFrame.subarray(half));

    await until(() => client.closeCodes.length > 0 && upstreamPeer.closeCodes.length > 0, 'close frames on both sides', deadline).catch(() => {});
    const summary = (peer: Peer) =>
      peer.frames.map((f) => (f.opcode === OP_BINARY ? `binary ${f.payload.length} ${f.payload.equals(peer === client ? down : up) ? 'intact' : 'CORRUPT'}` : f.opcode === OP_CLOSE ? `close ${closeCodeOf(f)}` : `text ${f.payload.toString()}`));
    expect({ client: summary(client), upstream: summary(upstreamPeer) }).toEqual({
      client: ['text pong', `binary ${down.length} intact`, 'close 1001'],
      upstream: ['text ping', `binary ${up.length} intact`, 'close 1001'],
    });
    expect(await exitWithin(bin, deadline)).toEqual({ code: 0, signal: null });
  });

  it('ends a handshake whose 101 comes after shutdown began with 1001 (or answers 503), and exits in time', { timeout: 20_000 }, async () => {
    const held: Array<{ req: Parameters<typeof switchingProtocols>[0]; peer: Peer }> = [];
    const upstream = await startRawUpstream((req, socket) => {
      held.push({ req, peer: watchPeer(socket, 'server') }); // 101 withheld until the test releases it
    });
    const drainDelayMs = 200;
    const shutdownTimeoutMs = 1_500;
    const deadline = drainDelayMs + shutdownTimeoutMs + 2_000;
    const { bin, url, port } = await drainingProxy(upstream.url, drainDelayMs, shutdownTimeoutMs);
    const { outcome } = handshakeOutcome(wsUrl(url, '/api/late'));
    await until(() => held.length === 1, 'the upgrade request upstream');

    process.kill(bin.pid, 'SIGTERM');
    await within(refusingConnections(port), deadline, 'the proxy to stop listening');
    const { req, peer } = held[0] as (typeof held)[number];
    if (peer.socket.writable) peer.socket.write(switchingProtocols(req));

    const result = await within(outcome, deadline, 'the handshake outcome').catch((err: Error) => ({ kind: 'error', message: err.message }));
    expect([{ kind: 'refused', status: 503 }, { kind: 'closed', code: 1001 }]).toContainEqual(result);
    if (result.kind === 'closed') {
      await until(() => peer.closeCodes.length > 0 || peer.closed(), 'a close frame upstream');
      expect(peer.closeCodes).toEqual([1001]);
    }
    expect(await exitWithin(bin, deadline)).toEqual({ code: 0, signal: null });
  });

  it('answers 503 to a handshake the upstream never answers, within the shutdown timeout', { timeout: 20_000 }, async () => {
    const upstream = await startRawUpstream((_req, socket) => socket.resume()); // never answers
    const shutdownTimeoutMs = 1_000;
    const deadline = shutdownTimeoutMs + 2_000;
    const { bin, url } = await drainingProxy(upstream.url, 0, shutdownTimeoutMs);
    const { outcome } = handshakeOutcome(wsUrl(url, '/api/never'));
    await until(() => upstream.sockets.length === 1, 'the upgrade request upstream');

    const started = performance.now();
    process.kill(bin.pid, 'SIGTERM');
    const result = await within(outcome, deadline, 'the handshake outcome').catch((err: Error) => ({ kind: 'error', message: err.message }));
    expect(result).toEqual({ kind: 'refused', status: 503 });
    expect(await exitWithin(bin, Math.max(1, deadline - (performance.now() - started)))).toEqual({ code: 0, signal: null });
    await within(peerLetGo(upstream.sockets[0] as Socket), 3_000, 'the upstream connection to be let go');
  });
});
