/**
 * WebSocket peers for lifecycle tests, at the byte level where the `ws`
 * package would hide what we need to control: an upstream that writes its own
 * 101 (and may write frames in the same TCP write), a client that does the
 * handshake by hand and can end with a FIN or an RST, a frame encoder and
 * reader, and upstreams that never accept or never answer. Everything started
 * here is closed in onTestFinished.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { type IncomingMessage, createServer } from 'node:http';
import { type Socket, connect } from 'node:net';
import { onTestFinished } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { type Running, startServer } from './helpers.js';

export const OP_TEXT = 0x1;
export const OP_BINARY = 0x2;
export const OP_CLOSE = 0x8;

const HANDSHAKE_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export function acceptFor(key: string): string {
  return createHash('sha1').update(key + HANDSHAKE_GUID).digest('base64');
}

/** One complete frame; masked (with a random key) when a client sends it. */
export function encodeFrame(opcode: number, payload: Buffer | string, masked: boolean): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const length = data.length;
  const extended = length < 126 ? 0 : length < 0x1_0000 ? 2 : 8;
  const head = Buffer.alloc(2 + extended + (masked ? 4 : 0));
  head[0] = 0x80 | opcode;
  head[1] = (masked ? 0x80 : 0) | (extended === 0 ? length : extended === 2 ? 126 : 127);
  if (extended === 2) head.writeUInt16BE(length, 2);
  if (extended === 8) head.writeBigUInt64BE(BigInt(length), 2);
  if (!masked) return Buffer.concat([head, data]);
  const mask = randomBytes(4);
  mask.copy(head, 2 + extended);
  const body = Buffer.from(data.map((byte, i) => byte ^ (mask[i % 4] as number)));
  return Buffer.concat([head, body]);
}

export function closeFrameOf(code: number, masked: boolean): Buffer {
  const payload = Buffer.alloc(2);
  payload.writeUInt16BE(code);
  return encodeFrame(OP_CLOSE, payload, masked);
}

export interface Frame {
  readonly opcode: number;
  readonly fin: boolean;
  /** Unmasked. */
  readonly payload: Buffer;
}

/** Parses a byte stream into frames (either direction; masked payloads are unmasked). */
export function createFrameReader(): { push(chunk: Buffer): Frame[] } {
  let pending = Buffer.alloc(0);
  return {
    push(chunk) {
      pending = Buffer.concat([pending, chunk]);
      const frames: Frame[] = [];
      for (;;) {
        if (pending.length < 2) break;
        const b0 = pending[0] as number;
        const b1 = pending[1] as number;
        const len7 = b1 & 0x7f;
        const masked = (b1 & 0x80) !== 0;
        let offset = 2;
        let length = len7;
        if (len7 === 126) {
          if (pending.length < 4) break;
          length = pending.readUInt16BE(2);
          offset = 4;
        } else if (len7 === 127) {
          if (pending.length < 10) break;
          length = Number(pending.readBigUInt64BE(2));
          offset = 10;
        }
        const maskAt = offset;
        if (masked) offset += 4;
        if (pending.length < offset + length) break;
        let payload = Buffer.from(pending.subarray(offset, offset + length));
        if (masked) {
          const mask = pending.subarray(maskAt, maskAt + 4);
          payload = Buffer.from(payload.map((byte, i) => byte ^ (mask[i % 4] as number)));
        }
        frames.push({ opcode: b0 & 0x0f, fin: (b0 & 0x80) !== 0, payload });
        pending = pending.subarray(offset + length);
      }
      return frames;
    },
  };
}

/** The close code a close frame carries (1005 when it has none). */
export function closeCodeOf(frame: Frame): number {
  return frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : 1005;
}

/** The raw 101 answer to an upgrade request. */
export function switchingProtocols(req: IncomingMessage): string {
  const key = req.headers['sec-websocket-key'];
  if (typeof key !== 'string') throw new Error('upgrade request without Sec-WebSocket-Key');
  return `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(key)}\r\n\r\n`;
}

export interface RawUpstream extends Running {
  /** Every upgraded socket the upstream holds, in arrival order. */
  readonly sockets: Socket[];
}

/**
 * A plain node:http server whose `upgrade` handler gets the raw socket and writes (or withholds) the
 * 101 itself. Its sockets are half-open capable (node:http's default): an `end` from the proxy does
 * not end them, so an upstream that "keeps its own side open" is the default here.
 */
export async function startRawUpstream(onUpgrade: (req: IncomingMessage, socket: Socket, head: Buffer) => void): Promise<RawUpstream> {
  const server = createServer((_req, res) => res.writeHead(426).end());
  const sockets: Socket[] = [];
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on('error', () => {});
    sockets.push(socket);
    onUpgrade(req, socket, head);
  });
  const running = await startServer(server);
  onTestFinished(running.close);
  return { ...running, sockets };
}

export interface WsUpstream extends Running {
  readonly sessions: WebSocket[];
}

/** A `ws` WebSocketServer upstream; `onConnection` sets up each session. */
export async function startWsUpstream(onConnection: (ws: WebSocket, req: IncomingMessage) => void = () => {}): Promise<WsUpstream> {
  const server = createServer((_req, res) => res.writeHead(426).end());
  const wss = new WebSocketServer({ server, maxPayload: 64 * 1024 * 1024 });
  const sessions: WebSocket[] = [];
  wss.on('connection', (ws, req) => {
    ws.on('error', () => {});
    sessions.push(ws);
    onConnection(ws, req);
  });
  const running = await startServer(server);
  onTestFinished(async () => {
    for (const ws of sessions) ws.terminate();
    wss.close();
    await running.close();
  });
  return { ...running, sessions };
}

export interface RawClient {
  readonly socket: Socket;
  /** The 101 head as received. */
  readonly head: string;
  /** Bytes that came after the head in the same reads. */
  readonly rest: Buffer;
}

/**
 * Opens a connection, sends an upgrade request (plus `extra` bytes in the same write), and resolves
 * once a complete 101 head has arrived with the right Sec-WebSocket-Accept. The socket is half-open
 * capable: when the proxy ends its side, this one stays open until the test closes it.
 */
export function rawClient(port: number, path: string, extra: Buffer = Buffer.alloc(0)): Promise<RawClient> {
  const key = randomBytes(16).toString('base64');
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    onTestFinished(() => {
      socket.destroy();
    });
    let received = Buffer.alloc(0);
    const fail = (err: Error): void => {
      socket.destroy();
      reject(err);
    };
    const onData = (chunk: Buffer): void => {
      received = Buffer.concat([received, chunk]);
      const end = received.indexOf('\r\n\r\n');
      if (end === -1) return;
      socket.off('data', onData);
      socket.off('error', fail);
      socket.pause();
      const head = received.subarray(0, end).toString('latin1');
      if (!head.startsWith('HTTP/1.1 101 ')) {
        fail(new Error(`expected a 101, got: ${JSON.stringify(head)}`));
        return;
      }
      if (!new RegExp(`^sec-websocket-accept: ${acceptFor(key).replace(/[+/]/g, '\\$&')}$`, 'im').test(head)) {
        fail(new Error(`wrong Sec-WebSocket-Accept in: ${JSON.stringify(head)}`));
        return;
      }
      resolve({ socket, head, rest: received.subarray(end + 4) });
    };
    socket.on('data', onData);
    socket.on('error', fail);
    socket.on('end', () => fail(new Error(`connection ended before a 101; got ${JSON.stringify(received.toString('latin1'))}`)));
    socket.write(
      Buffer.concat([
        Buffer.from(
          `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        ),
        extra,
      ]),
    );
  });
}

/** Resolves when `socket` has seen its peer's FIN or has closed, whichever comes first. */
export function peerLetGo(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed || socket.readableEnded) {
      resolve();
      return;
    }
    socket.once('end', () => resolve());
    socket.once('close', () => resolve());
    socket.resume();
  });
}

/**
 * An upstream whose TCP connect hangs: a listener in a stopped process whose tiny accept queue is
 * already full, so the kernel drops further SYNs: for HTTP and WebSocket connect timeouts alike.
 */
export async function startBlackholeUpstream(): Promise<{ readonly url: string }> {
  const child = spawn(process.execPath, [
    '-e',
    "require('net').createServer().listen({ port: 0, host: '127.0.0.1', backlog: 1 }, function () { console.log(this.address().port) })",
  ]);
  onTestFinished(() => {
    child.kill('SIGKILL');
  });
  const port = await new Promise<number>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString()))));
  child.kill('SIGSTOP');
  const fillers: Socket[] = [];
  onTestFinished(() => fillers.forEach((s) => s.destroy()));
  for (let i = 0; i < 4; i++) fillers.push(connect(port, '127.0.0.1').on('error', () => {}));
  return { url: `http://127.0.0.1:${port}` };
}

/** A client `ws` that is terminated when the test ends; rejects if the handshake fails. */
export function openWs(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { maxPayload: 64 * 1024 * 1024 });
    onTestFinished(() => ws.terminate());
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

export type HandshakeOutcome =
  | { readonly kind: 'refused'; readonly status: number }
  | { readonly kind: 'closed'; readonly code: number }
  | { readonly kind: 'error'; readonly message: string };

/** How a handshake attempt ended: a non-101 status, a session that opened and then closed (its code), or an error. */
export function handshakeOutcome(url: string): { readonly ws: WebSocket; readonly outcome: Promise<HandshakeOutcome> } {
  const ws = new WebSocket(url);
  onTestFinished(() => ws.terminate());
  const outcome = new Promise<HandshakeOutcome>((resolve) => {
    let opened = false;
    let failed: Error | undefined;
    ws.once('open', () => {
      opened = true;
    });
    ws.once('unexpected-response', (_req, res) => {
      resolve({ kind: 'refused', status: res.statusCode ?? 0 });
      res.resume();
      ws.terminate();
    });
    ws.on('error', (err) => {
      failed ??= err;
    });
    ws.once('close', (code) => {
      if (opened && failed === undefined) resolve({ kind: 'closed', code });
      else resolve({ kind: 'error', message: failed?.message ?? `closed with ${code} before opening` });
    });
  });
  return { ws, outcome };
}

/** A message of `size` bytes whose content is determined by `seq` (first 4 bytes: seq), for checking integrity. */
export function patterned(seq: number, size: number): Buffer {
  const buf = Buffer.alloc(size);
  buf.writeUInt32BE(seq, 0);
  // A cheap, seq-dependent, position-dependent fill (no two messages alike, no period of 256).
  let x = (seq * 2_654_435_761) >>> 0 || 1;
  for (let i = 4; i < size; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    if (i + 4 <= size) buf.writeUInt32BE(x, i);
  }
  return buf;
}

/**
 * A raw peer that speaks just enough WebSocket: it records the frames it receives, answers a close
 * frame with the same code (RFC 6455 §5.5.1) and, as a server, ends TCP once both close frames have
 * crossed. It never ends its side because the other side did: a proxy has to let go by itself.
 */
export interface Peer {
  readonly socket: Socket;
  readonly frames: Frame[];
  /** The codes of the close frames received, in order. */
  readonly closeCodes: number[];
  readonly ended: () => boolean;
  readonly closed: () => boolean;
  send(text: string): void;
  close(code: number): void;
  /** The text of the data frames received, in order. */
  texts(): string[];
}

export function watchPeer(socket: Socket, role: 'client' | 'server', rest: Buffer = Buffer.alloc(0)): Peer {
  const masked = role === 'client';
  const reader = createFrameReader();
  const frames: Frame[] = [];
  const closeCodes: number[] = [];
  let sentClose = false;
  let ended = socket.readableEnded;
  let closed = socket.destroyed;
  socket.on('error', () => {});
  socket.once('end', () => {
    ended = true;
  });
  socket.once('close', () => {
    closed = true;
  });
  const onBytes = (chunk: Buffer): void => {
    for (const frame of reader.push(chunk)) {
      frames.push(frame);
      if (frame.opcode !== OP_CLOSE) continue;
      closeCodes.push(closeCodeOf(frame));
      if (!sentClose && socket.writable) {
        sentClose = true;
        socket.write(closeFrameOf(closeCodeOf(frame), masked));
      }
      if (role === 'server' && socket.writable) socket.end();
    }
  };
  if (rest.length > 0) onBytes(rest);
  socket.on('data', onBytes);
  socket.resume();
  return {
    socket,
    frames,
    closeCodes,
    ended: () => ended,
    closed: () => closed,
    send(text) {
      socket.write(encodeFrame(OP_TEXT, text, masked));
    },
    close(code) {
      sentClose = true;
      socket.write(closeFrameOf(code, masked));
    },
    texts: () => frames.filter((f) => f.opcode === OP_TEXT || f.opcode === OP_BINARY).map((f) => f.payload.toString()),
  };
}
