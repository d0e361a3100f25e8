/**
 * The load: `concurrency` workers, each running one operation at a time from
 * a weighted mix until the deadline, with exact client-side tallies of what
 * reached the proxy and how it ended. Aborts only target endpoints that
 * answer 200 (so an abort can never race with a 5xx), and only once the
 * request has provably reached the proxy: mid-response after the first body
 * chunk, or before the headers once the upstream has seen the request.
 */
import { type Agent, type IncomingMessage, request } from 'node:http';
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { PATHS, SLOW_BODY_BYTES, type SoakUpstream, WS_CLOSE_REQUEST } from './upstream.js';

export const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE'] as const;
export type Method = (typeof METHODS)[number];

const REQUEST_TIMEOUT_MS = 30_000;
const WS_SESSION_TIMEOUT_MS = 30_000;
const WS_MESSAGES = 3;
const KEEP_UNEXPECTED = 20;

export interface MethodTally {
  /** Requests that reached the proxy (each should be counted once in apiCount). */
  sent: number;
  /** Responses read to the end, any status. */
  completed: number;
  /** Destroyed by us on purpose (client aborts). */
  aborted: number;
  /** Responses with a 5xx status. */
  status5xx: number;
  /** Client-side errors we did not cause. */
  failed: number;
}

export interface Tallies {
  readonly http: Record<Method, MethodTally>;
  readonly ws: { attempted: number; opened: number; completed: number; closedByUpstream: number; failed: number; messages: number };
  /** 500s from /api/fail, the only endpoint that should answer 5xx. */
  fail500: number;
  /** Any other 5xx (the proxy's own 502/504, or a 500 from elsewhere). */
  unexpected5xx: number;
  abortedMidResponse: number;
  abortedBeforeHeaders: number;
  /** Operations finished, HTTP and WebSocket. */
  ops: number;
  readonly unexpected: { count: number; readonly first: string[] };
}

export function createTallies(): Tallies {
  const http = {} as Record<Method, MethodTally>;
  for (const method of METHODS) http[method] = { sent: 0, completed: 0, aborted: 0, status5xx: 0, failed: 0 };
  return {
    http,
    ws: { attempted: 0, opened: 0, completed: 0, closedByUpstream: 0, failed: 0, messages: 0 },
    fail500: 0,
    unexpected5xx: 0,
    abortedMidResponse: 0,
    abortedBeforeHeaders: 0,
    ops: 0,
    unexpected: { count: 0, first: [] },
  };
}

export interface TrafficContext {
  readonly proxyUrl: string;
  readonly upstream: SoakUpstream;
  readonly tallies: Tallies;
  /** Keep-alive agent for HTTP; replaced between phases (destroying it closes our connections). */
  agent: Agent;
}

function noteUnexpected(tallies: Tallies, what: string): void {
  tallies.unexpected.count += 1;
  if (tallies.unexpected.first.length < KEEP_UNEXPECTED) tallies.unexpected.first.push(what);
}

function randomInt(min: number, max: number): number {
  return min + Math.floor(Math.random() * (max - min + 1));
}

interface RequestSpec {
  readonly method: Method;
  readonly path: string;
  readonly body?: Buffer;
  readonly expectStatus: number;
  /** The exact body expected, or just its length. */
  readonly expectBody?: Buffer | number;
  readonly abort?: 'mid-response' | 'before-headers';
}

let stallIds = 0;

/** One HTTP exchange through the proxy; resolves (never rejects) once its outcome is tallied. */
function send(ctx: TrafficContext, spec: RequestSpec): Promise<void> {
  const { tallies } = ctx;
  const tally = tallies.http[spec.method];
  const stallId = spec.abort === 'before-headers' ? String((stallIds += 1)) : undefined;
  const path = stallId === undefined ? spec.path : `${spec.path}?id=${stallId}`;
  tally.sent += 1;
  return new Promise<void>((resolve) => {
    let settled = false;
    const finish = (outcome: 'completed' | 'aborted' | 'failed', detail?: string): void => {
      if (settled) return;
      settled = true;
      if (stallId !== undefined) ctx.upstream.forgetStall(stallId);
      tally[outcome] += 1;
      if (outcome === 'failed') noteUnexpected(tallies, `${spec.method} ${path}: ${detail ?? 'failed'}`);
      resolve();
    };
    const headers: Record<string, string> = {};
    if (spec.body !== undefined) headers['content-length'] = String(spec.body.length);
    const req = request(`${ctx.proxyUrl}${path}`, { method: spec.method, agent: ctx.agent, headers }, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 500) {
        tally.status5xx += 1;
        if (spec.path === PATHS.fail && status === 500) tallies.fail500 += 1;
        else tallies.unexpected5xx += 1;
      }
      if (status !== spec.expectStatus) noteUnexpected(tallies, `${spec.method} ${path}: status ${status}, expected ${spec.expectStatus}`);
      if (spec.abort === 'mid-response') abortAfterFirstChunk(res, () => {
        tallies.abortedMidResponse += 1;
        finish('aborted');
        req.destroy();
      });
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        checkBody(tallies, `${spec.method} ${path}`, Buffer.concat(chunks), spec.expectBody);
        finish('completed');
      });
      res.on('error', (err) => finish('failed', `response error: ${err.message}`));
    });
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`no progress for ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', (err) => finish('failed', err.message));
    if (stallId !== undefined) {
      void ctx.upstream.whenStallSeen(stallId).then(() => {
        if (settled) return;
        tallies.abortedBeforeHeaders += 1;
        finish('aborted');
        req.destroy();
      });
    }
    req.end(spec.body);
  });
}

/** Destroys the exchange a little after the first body chunk, unless the body was already complete by then. */
function abortAfterFirstChunk(res: IncomingMessage, abort: () => void): void {
  res.once('data', () => {
    setTimeout(() => {
      if (!res.complete) abort();
    }, randomInt(0, 60));
  });
}

function checkBody(tallies: Tallies, what: string, body: Buffer, expected: Buffer | number | undefined): void {
  if (expected === undefined) return;
  const ok = typeof expected === 'number' ? body.length === expected : body.equals(expected);
  if (!ok) noteUnexpected(tallies, `${what}: body of ${body.length} bytes differs from what was expected`);
}

/**
 * Open a WebSocket through the proxy, exchange a few echoed messages, then close cleanly: the client
 * closes, or (`upstreamCloses`) asks the upstream to, which then closes by the book (1000).
 */
function wsSession(ctx: TrafficContext, upstreamCloses: boolean): Promise<void> {
  const { tallies } = ctx;
  tallies.ws.attempted += 1;
  return new Promise<void>((resolve) => {
    const ws = new WebSocket(`${ctx.proxyUrl.replace(/^http/, 'ws')}${PATHS.ws}`);
    let settled = false;
    let expected: Buffer | undefined;
    let sent = 0;
    const finish = (failure?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (failure === undefined) {
        tallies.ws.completed += 1;
      } else {
        tallies.ws.failed += 1;
        noteUnexpected(tallies, `websocket: ${failure}`);
        ws.terminate();
      }
      resolve();
    };
    const timer = setTimeout(() => finish(`session not done within ${WS_SESSION_TIMEOUT_MS} ms`), WS_SESSION_TIMEOUT_MS);
    const sendNext = (): void => {
      sent += 1;
      // Alternate binary and text frames; a text frame must be valid UTF-8 (or the upstream closes with 1007).
      const binary = sent % 2 === 0;
      const bytes = randomBytes(randomInt(16, 512));
      expected = binary ? bytes : Buffer.from(bytes.toString('base64'));
      ws.send(binary ? expected : expected.toString('utf8'), { binary });
    };
    ws.on('open', () => {
      tallies.ws.opened += 1;
      sendNext();
    });
    ws.on('message', (data: WebSocket.RawData) => {
      const got = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer);
      tallies.ws.messages += 1;
      if (expected === undefined || !got.equals(expected)) {
        finish('echo differs from the message sent');
        return;
      }
      if (sent < WS_MESSAGES) sendNext();
      else if (upstreamCloses) ws.send(WS_CLOSE_REQUEST);
      else ws.close(1000, 'soak done');
    });
    ws.on('unexpected-response', (_req, res) => finish(`handshake answered ${res.statusCode}`));
    ws.on('error', (err) => finish(err.message));
    ws.on('close', (code, reason) => {
      if (code !== 1000 || sent !== WS_MESSAGES) {
        finish(`closed with ${code} after ${sent} messages`);
        return;
      }
      const byUpstream = reason.toString() === 'upstream done';
      if (byUpstream !== upstreamCloses) {
        finish(`closed by the ${byUpstream ? 'upstream' : 'client'}, expected the ${upstreamCloses ? 'upstream' : 'client'}`);
        return;
      }
      if (byUpstream) tallies.ws.closedByUpstream += 1;
      finish();
    });
  });
}

type Operation = (ctx: TrafficContext) => Promise<void>;

const body = (): Buffer => randomBytes(randomInt(1, 16 * 1024));
const FAST_BODY = Buffer.from('{"ok":true}');

/** The mix, by relative weight. */
const MIX: ReadonlyArray<readonly [number, Operation]> = [
  [26, (ctx) => send(ctx, { method: 'GET', path: PATHS.fast, expectStatus: 200, expectBody: FAST_BODY })],
  [5, (ctx) => send(ctx, { method: 'HEAD', path: PATHS.fast, expectStatus: 200, expectBody: 0 })],
  [5, (ctx) => send(ctx, { method: 'DELETE', path: PATHS.fast, expectStatus: 200, expectBody: FAST_BODY })],
  [14, (ctx) => { const b = body(); return send(ctx, { method: 'POST', path: PATHS.echo, body: b, expectStatus: 200, expectBody: b }); }],
  [5, (ctx) => { const b = body(); return send(ctx, { method: 'PUT', path: PATHS.echo, body: b, expectStatus: 200, expectBody: b }); }],
  [6, (ctx) => send(ctx, { method: 'GET', path: PATHS.fail, expectStatus: 500 })],
  [4, (ctx) => send(ctx, { method: 'POST', path: PATHS.fail, body: body(), expectStatus: 500 })],
  [5, (ctx) => send(ctx, { method: 'GET', path: PATHS.slow, expectStatus: 200, expectBody: SLOW_BODY_BYTES })],
  [10, (ctx) => send(ctx, { method: 'GET', path: PATHS.slow, expectStatus: 200, abort: 'mid-response' })],
  [6, (ctx) => send(ctx, { method: 'GET', path: PATHS.stall, expectStatus: 200, abort: 'before-headers' })],
  [5, (ctx) => wsSession(ctx, false)],
  [3, (ctx) => wsSession(ctx, true)],
];
const TOTAL_WEIGHT = MIX.reduce((sum, [weight]) => sum + weight, 0);

function pickOperation(): Operation {
  let roll = Math.random() * TOTAL_WEIGHT;
  for (const [weight, operation] of MIX) {
    roll -= weight;
    if (roll < 0) return operation;
  }
  return (MIX[0] as readonly [number, Operation])[1];
}

/** Runs `concurrency` workers until `deadline` (epoch ms) or `signal` aborts; resolves when every operation has ended. */
export async function runTraffic(ctx: TrafficContext, concurrency: number, deadline: number, signal: AbortSignal): Promise<void> {
  const worker = async (): Promise<void> => {
    while (Date.now() < deadline && !signal.aborted) {
      await pickOperation()(ctx);
      ctx.tallies.ops += 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

export function httpTotals(tallies: Tallies): MethodTally {
  const total: MethodTally = { sent: 0, completed: 0, aborted: 0, status5xx: 0, failed: 0 };
  for (const method of METHODS) {
    for (const key of Object.keys(total) as Array<keyof MethodTally>) total[key] += tallies.http[method][key];
  }
  return total;
}
