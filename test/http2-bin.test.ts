/**
 * HTTP/2 and gRPC against the real bin (node bin/metrics-proxy.js): the flags reach the HTTP/2
 * server, SIGTERM drains HTTP/2 connections (GOAWAY, streams in flight finish, then exit), a rapid
 * reset attack leaves its memory bounded and other clients served, and nothing of it prints a Node
 * warning. It runs under whichever Node runs vitest: .ci/run runs the suite on Node 20 and on Node 24.
 */
import { Metadata, status } from '@grpc/grpc-js';
import type { IncomingMessage } from 'node:http';
import { constants } from 'node:http2';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { LIVE_MEMORY_ARGS, LOOPBACK, exitWithin, liveMemory, startListening, stopWithSigterm } from './bin.js';
import { failOrEchoHandler, httpRequest, until } from './helpers.js';
import {
  FLAG,
  FRAME,
  SETTING,
  dataFrame,
  h2Get,
  h2Request,
  h2Session,
  headersFrames,
  rapidReset,
  rawH2Client,
  requestHeaders,
  rstStreamFrame,
  settingsOf,
  startDualUpstream,
  startH2Upstream,
  startRawH2Upstream,
  upstreamWith,
} from './h2-peers.js';
import { type EchoReply, callUnary, collectStream, echoClient, startGrpcUpstream, targetOf } from './grpc-peers.js';
import { rssBytes } from './proc.js';

const MiB = 1024 * 1024;

describe('the HTTP/2 flags, through the bin', () => {
  it('advertises --http2-max-concurrent-streams, closes idle connections after --http2-idle-timeout, and honours --upstream-protocol http2', async () => {
    const upstream = await startH2Upstream((stream) => {
      stream.respond({ ':status': 200 });
      stream.end('over h2');
    });
    const { url, port } = await startListening([
      ...LOOPBACK,
      '--port', '0',
      '--upstream', upstream.url,
      '--http2-max-concurrent-streams', '3',
      '--http2-idle-timeout', '300',
      '--upstream-protocol', 'http2',
    ]);
    const client = await rawH2Client(port);
    const settings = await client.waitFor((f) => f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0, 'the SETTINGS');
    expect(settingsOf(settings).get(SETTING.MAX_CONCURRENT_STREAMS)).toBe(3);
    await client.waitFor((f) => f.type === FRAME.GOAWAY, 'the idle GOAWAY');
    await client.closed;
    expect((await httpRequest(`${url}/api/x`)).body.toString()).toBe('over h2');
    expect(upstream.seen.map((h) => h[':path'])).toEqual(['/api/x']);
  });
});

describe('streams reset mid-upload, against the bin', () => {
  it.each([
    ['a POST, HTTP/1.1 upstream leg', [], '/api/upload', []],
    ['a POST, --upstream-protocol http2', ['--upstream-protocol', 'http2'], '/api/upload', []],
    ['a gRPC call', [], '/echo.Echo/ClientStream', [['content-type', 'application/grpc'], ['te', 'trailers']]],
  ] as const)('survives %s reset by the client after its first bytes went upstream', async (_what, flags, path, extra) => {
    const seen: IncomingMessage[] = [];
    const h2 = await startRawH2Upstream();
    const dual = await startDualUpstream((req) => {
      seen.push(req);
      req.on('error', () => {});
      req.resume(); // and never answers
    }, h2.port);
    const { bin, url, port } = await startListening([...LOOPBACK, '--port', '0', '--upstream', dual.url, ...flags]);
    const client = await rawH2Client(port);
    await client.waitFor((f) => f.type === FRAME.SETTINGS, 'the SETTINGS');
    client.send(headersFrames(1, requestHeaders(path, 'POST', extra), { endStream: false }));
    client.send(dataFrame(1, Buffer.alloc(16 * 1024, 1), false));
    await until(() => seen.length > 0 || h2.frames.some((f) => f.type === FRAME.DATA), 'the upload upstream');
    client.send(rstStreamFrame(1, constants.NGHTTP2_CANCEL));
    // Another client right after: the bin must still be there to answer it.
    const after = await h2Get(url, '/healthz').then(
      (res) => `answered ${res.status}`,
      (err: Error) => `failed: ${err.message}`,
    );
    await until(() => seen.length > 0 || h2.frames.some((f) => f.type === FRAME.RST_STREAM), 'the upstream request cancelled');
    expect({ after, exitCode: bin.child.exitCode, stderr: bin.stderr() }).toEqual({ after: 'answered 200', exitCode: null, stderr: '' });
    expect(bin.stdout()).not.toContain('uncaught exception');
  });
});

describe('SIGTERM with HTTP/2 connections open', () => {
  it('sends GOAWAY, lets a slow response and a gRPC stream in flight finish whole, refuses new connections, and exits 0', async () => {
    let release: (() => void) | undefined;
    let bidiAtUpstream = false;
    const grpc = await startGrpcUpstream({
      Bidi(call) {
        bidiAtUpstream = true;
        call.on('data', (m: EchoReply) => call.write({ seq: m.seq }));
        call.on('end', () => call.end());
      },
    });
    const upstream = await startDualUpstream((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first half, ');
      release = () => res.end('second half');
    }, grpc.port);
    const { bin, url } = await startListening([...LOOPBACK, '--port', '0', '--upstream', upstream.url, '--shutdown-timeout', '10000']);
    const session = await h2Session(url);
    const goaway = new Promise<void>((resolve) => session.once('goaway', () => resolve()));
    const slow = h2Request(session, { ':path': '/api/slow' });
    const bidi = echoClient(targetOf(url)).Bidi(new Metadata(), {});
    const bidiDone = collectStream(bidi);
    bidi.write({ seq: 0 });
    await until(() => release !== undefined && bidiAtUpstream, 'both calls at the upstream');

    process.kill(bin.pid, 'SIGTERM');
    await goaway;
    // In flight: the gRPC stream goes on both ways, the slow response completes.
    bidi.write({ seq: 1 });
    bidi.write({ seq: 2 });
    bidi.end();
    release?.();
    const res = await slow;
    expect(res.body.toString()).toBe('first half, second half');
    const { messages, status: end } = await bidiDone;
    expect(end.code).toBe(status.OK);
    expect(messages.map((m) => m.seq)).toEqual([0, 1, 2]);
    await expect(h2Session(url)).rejects.toThrow();
    expect(await exitWithin(bin, 5_000)).toEqual({ code: 0, signal: null });
  });
});

describe('SIGTERM after HTTP/2 connections came and went', () => {
  it.each([
    ['closed by the client', ['--http2-idle-timeout', '60000']],
    ['closed by --http2-idle-timeout', ['--http2-idle-timeout', '300']],
  ] as const)('exits 0 at once after a connection %s', async (_how, flags) => {
    const upstream = await upstreamWith();
    const { bin, url } = await startListening([...LOOPBACK, '--port', '0', '--upstream', upstream.url, '--shutdown-timeout', '8000', ...flags]);
    const session = await h2Session(url);
    expect((await h2Request(session, { ':path': '/api/x' })).status).toBe(200);
    const closed = new Promise((resolve) => session.once('close', resolve));
    if (flags[1] === '60000') session.close();
    await closed;
    const started = Date.now();
    // Nothing is left to drain: well before the 8 s shutdown timeout.
    expect(await stopWithSigterm(bin)).toEqual({ code: 0, signal: null });
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});

describe('rapid reset (CVE-2023-44487) against the bin', () => {
  /** Opens and cancels streams on new sessions until `count` streams or `ms` passed; returns how many. */
  async function attack(url: string, count: number, ms: number): Promise<number> {
    const deadline = Date.now() + ms;
    let opened = 0;
    while (opened < count && Date.now() < deadline) {
      const session = await h2Session(url);
      opened += await rapidReset(session, count - opened, deadline - Date.now());
      session.destroy();
    }
    return opened;
  }

  it('forwards almost nothing, keeps its memory bounded over rounds, and serves another client throughout', { timeout: 120_000 }, async () => {
    const upstream = await upstreamWith();
    const { bin, url } = await startListening([...LOOPBACK, '--port', '0', '--upstream', upstream.url], {}, LIVE_MEMORY_ARGS);
    const rounds: number[] = [];
    const resident: number[] = [];
    let opened = 0;
    let attacking = true;
    const failures: string[] = [];
    let served = 0;
    const bystander = (async () => {
      while (attacking) {
        try {
          const [h2, h1] = await Promise.all([h2Get(url, `/api/bystander/${served}`), httpRequest(`${url}/api/bystander/${served}`)]);
          if (h2.status !== 200 || h1.status !== 200) failures.push(`statuses ${h2.status} ${h1.status}`);
        } catch (err) {
          failures.push(String(err));
        }
        served++;
      }
    })();
    for (let round = 0; round < 4; round++) {
      opened += await attack(url, 5_000, 15_000);
      rounds.push(await liveMemory(bin));
      resident.push(rssBytes(bin.pid));
    }
    attacking = false;
    await bystander;
    expect(opened).toBeGreaterThanOrEqual(12_000);
    expect(failures).toEqual([]);
    expect(served).toBeGreaterThan(0);
    const forwarded = upstream.seen.filter((r) => r.url?.startsWith('/api/attack/') === true).length;
    // A stream whose RST_STREAM arrives in a later read than its HEADERS is forwarded, then cancelled: about
    // ten per attacking connection (nghttp2 ends each after about a thousand resets), 1 % here. All of them is the bug.
    expect(forwarded, `${forwarded} of ${opened} cancelled streams reached the upstream`).toBeLessThan(opened / 50);
    // The first round may warm caches and pools; after it what the proxy keeps must stop growing. Live
    // memory after a settled GC, not RSS: Node 24 keeps freed pages resident (RSS grew 95 → 155 MiB over
    // four rounds with the live heap flat), which says nothing about what the attack leaves behind.
    const growth = (rounds.at(-1) ?? 0) - (rounds[0] ?? 0);
    const mib = (values: number[]): string => values.map((b) => (b / MiB).toFixed(1)).join(', ');
    const trace = `live memory by round (MiB): ${mib(rounds)}; RSS: ${mib(resident)}`;
    expect(growth, trace).toBeLessThan(4 * MiB);
    expect((await h2Get(url, '/api/after')).status).toBe(200);
  });
});

describe('Node warnings', () => {
  it(`the bin prints no warning on ${process.version} while serving HTTP/2: its own paths, forwarded requests, gRPC, then SIGTERM`, async () => {
    // Nothing from the test runner's environment may add or silence warnings in the child.
    vi.stubEnv('NODE_OPTIONS', undefined);
    vi.stubEnv('NODE_NO_WARNINGS', undefined);
    onTestFinished(() => {
      vi.unstubAllEnvs();
    });
    const grpc = await startGrpcUpstream();
    const upstream = await startDualUpstream(failOrEchoHandler, grpc.port);
    const { bin, url } = await startListening([...LOOPBACK, '--port', '0', '--upstream', upstream.url]);

    // More streams on one session than an emitter's default 10 listeners: a listener added per stream would warn.
    const session = await h2Session(url);
    for (let i = 0; i < 24; i++) expect((await h2Request(session, { ':path': `/api/items/${i}` })).status).toBe(200);
    const posted = await h2Request(session, { ':method': 'POST', ':path': '/api/items' }, 'a body');
    expect(posted.body.toString()).toBe('a body');
    expect((await h2Request(session, { ':path': '/api/fail' })).status).toBe(500);
    expect((await h2Request(session, { ':path': '/metrics' })).body.toString()).toContain('apiCount');
    expect((await h2Request(session, { ':path': '/healthz' })).status).toBe(200);
    const client = echoClient(targetOf(url));
    for (let i = 0; i < 24; i++) expect((await callUnary(client, { seq: i })).reply?.seq).toBe(i);
    const streamed = await collectStream(client.ServerStream({ count: 50, size: 100 }, new Metadata(), {}));
    expect(streamed.messages).toHaveLength(50);
    const cancelled = client.ServerStream({ count: 1_000_000, size: 100 }, new Metadata(), {});
    cancelled.on('error', () => {});
    await new Promise((resolve) => cancelled.once('data', resolve));
    cancelled.cancel();
    session.close();
    client.close();

    expect(await stopWithSigterm(bin)).toEqual({ code: 0, signal: null });
    await bin.closed; // stderr fully read
    const warnings = bin.stderr().split('\n').filter((line) => line.includes('Warning'));
    expect(warnings, `stderr of the bin on ${process.version}:\n${bin.stderr()}`).toEqual([]);
  });
});
