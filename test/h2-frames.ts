/**
 * HTTP/2 at the frame level, for peers that must misbehave or must show exactly what was sent: a
 * frame encoder (HPACK literals only, no Huffman, no shared state), a frame reader, a client that
 * writes frames by hand, and an upstream that records the frames both ways and answers only as told
 * (by default not at all; or a response started, then reset).
 * Everything started here is closed in onTestFinished.
 */
import { type Socket, connect, createServer as createNetServer } from 'node:net';
import { onTestFinished } from 'vitest';
import { type Running, startServer } from './helpers.js';

/** The client connection preface (RFC 9113 §3.4): what tells the proxy a connection speaks HTTP/2. */
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export const FRAME = {
  DATA: 0x0,
  HEADERS: 0x1,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;

export const SETTING = { HEADER_TABLE_SIZE: 0x1, MAX_CONCURRENT_STREAMS: 0x3, INITIAL_WINDOW_SIZE: 0x4, MAX_FRAME_SIZE: 0x5 } as const;

// ---------------------------------------------------------------------------------------------
// Frames by hand

export function encodeFrame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId & 0x7fff_ffff, 5);
  return Buffer.concat([head, payload]);
}

/** An HPACK integer with an N-bit prefix (RFC 7541 §5.1); `high` holds the bits above the prefix. */
function hpackInt(value: number, prefixBits: number, high = 0): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([high | value]);
  const bytes = [high | max];
  let rest = value - max;
  while (rest >= 128) {
    bytes.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  bytes.push(rest);
  return Buffer.from(bytes);
}

function hpackString(text: string): Buffer {
  const raw = Buffer.from(text, 'latin1');
  return Buffer.concat([hpackInt(raw.length, 7), raw]);
}

/** A header block of literal fields without indexing, new names, no Huffman: any decoder reads it, no state is shared. */
export function hpackBlock(headers: ReadonlyArray<readonly [string, string]>): Buffer {
  return Buffer.concat(headers.flatMap(([name, value]) => [Buffer.from([0x00]), hpackString(name), hpackString(value)]));
}

/** HEADERS (+ CONTINUATION frames when the block is larger than `maxFrameSize`) for one request. */
export function headersFrames(
  streamId: number,
  headers: ReadonlyArray<readonly [string, string]>,
  { endStream = true, maxFrameSize = 16_384 }: { endStream?: boolean; maxFrameSize?: number } = {},
): Buffer {
  const block = hpackBlock(headers);
  const frames: Buffer[] = [];
  for (let at = 0; at === 0 || at < block.length; at += maxFrameSize) {
    const piece = block.subarray(at, at + maxFrameSize);
    const last = at + maxFrameSize >= block.length;
    const type = at === 0 ? FRAME.HEADERS : FRAME.CONTINUATION;
    const flags = (last ? FLAG.END_HEADERS : 0) | (at === 0 && endStream ? FLAG.END_STREAM : 0);
    frames.push(encodeFrame(type, flags, streamId, piece));
  }
  return Buffer.concat(frames);
}

/** The pseudo-headers of a request to the proxy, then `extra`. */
export function requestHeaders(
  path: string,
  method = 'GET',
  extra: ReadonlyArray<readonly [string, string]> = [],
): Array<readonly [string, string]> {
  return [[':method', method], [':scheme', 'http'], [':path', path], [':authority', '127.0.0.1'], ...extra];
}

export function settingsFrame(settings: ReadonlyArray<readonly [number, number]> = []): Buffer {
  const payload = Buffer.alloc(6 * settings.length);
  settings.forEach(([id, value], i) => {
    payload.writeUInt16BE(id, 6 * i);
    payload.writeUInt32BE(value, 6 * i + 2);
  });
  return encodeFrame(FRAME.SETTINGS, 0, 0, payload);
}

export function rstStreamFrame(streamId: number, code: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(code);
  return encodeFrame(FRAME.RST_STREAM, 0, streamId, payload);
}

export function goawayFrame(lastStreamId: number, code: number): Buffer {
  const payload = Buffer.alloc(8);
  payload.writeUInt32BE(lastStreamId & 0x7fff_ffff);
  payload.writeUInt32BE(code, 4);
  return encodeFrame(FRAME.GOAWAY, 0, 0, payload);
}

/** A PING with `opaque` (8 bytes): its ACK tells that every frame sent before it has been processed. */
export function pingFrame(opaque: Buffer): Buffer {
  return encodeFrame(FRAME.PING, 0, 0, opaque);
}

export function dataFrame(streamId: number, data: Buffer, endStream: boolean): Buffer {
  return encodeFrame(FRAME.DATA, endStream ? FLAG.END_STREAM : 0, streamId, data);
}

export interface H2Frame {
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
  readonly payload: Buffer;
}

/** The error code of a RST_STREAM or GOAWAY frame. */
export function errorCodeOf(frame: H2Frame): number {
  return frame.type === FRAME.GOAWAY ? frame.payload.readUInt32BE(4) : frame.payload.readUInt32BE(0);
}

/** The settings a SETTINGS frame carries, by id. */
export function settingsOf(frame: H2Frame): Map<number, number> {
  const settings = new Map<number, number>();
  for (let at = 0; at + 6 <= frame.payload.length; at += 6) settings.set(frame.payload.readUInt16BE(at), frame.payload.readUInt32BE(at + 2));
  return settings;
}

/**
 * Whether a response HEADERS block says `:status: 200`. nghttp2 (the proxy's HPACK encoder) always
 * sends that one as the indexed static entry 8, byte 0x88; any other status is a literal.
 */
export function isStatus200(frame: H2Frame): boolean {
  return frame.type === FRAME.HEADERS && frame.payload[0] === 0x88;
}

/** Splits a byte stream into frames, calling `onFrame` for each complete one. */
export function frameReader(onFrame: (frame: H2Frame) => void): (chunk: Buffer) => void {
  let pending = Buffer.alloc(0);
  return (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 9) {
      const length = pending.readUIntBE(0, 3);
      if (pending.length < 9 + length) break;
      onFrame({
        type: pending[3] as number,
        flags: pending[4] as number,
        streamId: pending.readUInt32BE(5) & 0x7fff_ffff,
        payload: Buffer.from(pending.subarray(9, 9 + length)),
      });
      pending = pending.subarray(9 + length);
    }
  };
}

/** The acknowledgement any peer owes for a SETTINGS or PING frame; undefined for other frames. */
function ackFor(frame: H2Frame): Buffer | undefined {
  if ((frame.flags & FLAG.ACK) !== 0) return undefined;
  if (frame.type === FRAME.SETTINGS) return encodeFrame(FRAME.SETTINGS, FLAG.ACK, 0);
  if (frame.type === FRAME.PING) return encodeFrame(FRAME.PING, FLAG.ACK, 0, frame.payload);
  return undefined;
}

export interface RawH2Client {
  readonly socket: Socket;
  /** Every frame the proxy sent, in order. */
  readonly frames: H2Frame[];
  /** Resolves when the connection has closed (either side). */
  readonly closed: Promise<void>;
  isClosed(): boolean;
  send(bytes: Buffer): void;
  /** The first frame (already received or still to come) matching `accept`; rejects after `timeoutMs` or on close. */
  waitFor(accept: (frame: H2Frame) => boolean, what: string, timeoutMs?: number): Promise<H2Frame>;
}

/**
 * A TCP connection to `port` that writes `greeting` (by default the preface and an empty SETTINGS frame),
 * reads the proxy's frames, and acknowledges its SETTINGS and PINGs as any client must; it sends nothing else
 * unless told to.
 */
export function rawH2Client(port: number, greeting: Buffer = Buffer.concat([PREFACE, settingsFrame()])): Promise<RawH2Client> {
  const socket = connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  onTestFinished(() => {
    socket.destroy();
  });
  const frames: H2Frame[] = [];
  const waiters = new Set<() => void>();
  let closedFlag = false;
  // The server's SETTINGS may arrive before this client has finished its preface and first SETTINGS
  // (a preface dribbled byte by byte): an ACK written then would land inside them. Held until they are out.
  let written = 0;
  const held: Buffer[] = [];
  const PREFACE_AND_SETTINGS = PREFACE.length + 9;
  const reply = (bytes: Buffer): void => {
    if (written < PREFACE_AND_SETTINGS) held.push(bytes);
    else if (socket.writable) socket.write(bytes);
  };
  const write = (bytes: Buffer): void => {
    if (!socket.writable) return;
    socket.write(bytes);
    written += bytes.length;
    if (written >= PREFACE_AND_SETTINGS) for (const bytes of held.splice(0)) socket.write(bytes);
  };
  const closed = new Promise<void>((resolve) =>
    socket.once('close', () => {
      closedFlag = true;
      resolve();
      for (const wake of waiters) wake();
    }),
  );
  socket.on('error', () => {});
  const read = frameReader((frame) => {
    frames.push(frame);
    const ack = ackFor(frame);
    if (ack !== undefined) reply(ack);
  });
  socket.on('data', (chunk: Buffer) => {
    read(chunk);
    for (const wake of waiters) wake();
  });
  const client: RawH2Client = {
    socket,
    frames,
    closed,
    isClosed: () => closedFlag,
    send: write,
    waitFor: (accept, what, timeoutMs = 5_000) =>
      new Promise<H2Frame>((resolve, reject) => {
        const check = (): void => {
          const found = frames.find(accept);
          if (found !== undefined || closedFlag) {
            clearTimeout(timer);
            waiters.delete(check);
            if (found !== undefined) resolve(found);
            else reject(new Error(`connection closed before ${what}; frames: ${describeFrames(frames)}`));
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no ${what} within ${timeoutMs} ms; frames: ${describeFrames(frames)}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      }),
  };
  return new Promise((resolve, reject) => {
    socket.once('connect', () => {
      write(greeting);
      resolve(client);
    });
    socket.once('error', reject);
  });
}

const FRAME_NAMES = new Map<number, string>(Object.entries(FRAME).map(([name, type]) => [type, name]));

export function describeFrames(frames: readonly H2Frame[]): string {
  return frames
    .map((f) => `${FRAME_NAMES.get(f.type) ?? f.type}(s${f.streamId}${f.type === FRAME.RST_STREAM || f.type === FRAME.GOAWAY ? ` code ${errorCodeOf(f)}` : ''})`)
    .join(' ');
}

export interface RawH2Upstream extends Running {
  /** Every frame the proxy sent, over all its connections, in arrival order (the preface left out). */
  readonly frames: H2Frame[];
  /** Every frame this upstream sent, over all its connections, in order: what the proxy was really told. */
  readonly sent: H2Frame[];
}

/** One connection of a raw upstream, as its responder sees it. */
export interface RawH2UpstreamConnection {
  /** Writes frames to the proxy (recorded in `sent`). */
  send(bytes: Buffer): void;
  /** Resolves once the proxy has processed every frame sent before: the ACK of a PING sent now. */
  processed(): Promise<void>;
}

/** Called on the HEADERS frame that opens each request stream (trailers and CONTINUATION frames are not requests). */
export type RawH2Responder = (request: H2Frame, connection: RawH2UpstreamConnection) => void;

/**
 * An h2c upstream at the frame level: it sends its SETTINGS, acknowledges the proxy's, records every
 * frame both ways, and answers a request only as `respond` says (by default not at all). A test sees
 * exactly what went upstream (whether a body ended with END_STREAM, whether a stream was reset),
 * which a node:http2 server would blur: it emits 'end' on a stream the peer reset. And it sends exactly
 * what the test says, which a node:http2 server would not: its `close(code)` on a started response
 * ends the stream (END_STREAM) instead of resetting it. Closed when the test ends.
 */
export async function startRawH2Upstream(respond: RawH2Responder = () => {}): Promise<RawH2Upstream> {
  const frames: H2Frame[] = [];
  const sent: H2Frame[] = [];
  const recordSent = frameReader((frame) => sent.push(frame));
  const server = createNetServer((socket) => {
    socket.on('error', () => {});
    const pings = new Map<string, () => void>();
    let pingsSent = 0;
    const requests = new Set<number>();
    const connection: RawH2UpstreamConnection = {
      send(bytes) {
        if (!socket.writable) return;
        recordSent(bytes);
        socket.write(bytes);
      },
      processed: () =>
        new Promise<void>((resolve) => {
          const opaque = Buffer.alloc(8);
          opaque.writeUInt32BE(++pingsSent, 4);
          pings.set(opaque.toString('hex'), resolve);
          connection.send(pingFrame(opaque));
        }),
    };
    connection.send(settingsFrame());
    let preface = Buffer.alloc(0);
    const read = frameReader((frame) => {
      frames.push(frame);
      const ack = ackFor(frame);
      if (ack !== undefined) connection.send(ack);
      if (frame.type === FRAME.PING && (frame.flags & FLAG.ACK) !== 0) {
        const opaque = frame.payload.toString('hex');
        pings.get(opaque)?.();
        pings.delete(opaque);
      }
      if (frame.type === FRAME.HEADERS && !requests.has(frame.streamId)) {
        requests.add(frame.streamId);
        respond(frame, connection);
      }
    });
    socket.on('data', (chunk: Buffer) => {
      if (preface.length < PREFACE.length) {
        const wanted = PREFACE.length - preface.length;
        preface = Buffer.concat([preface, chunk.subarray(0, wanted)]);
        chunk = chunk.subarray(wanted);
      }
      if (chunk.length > 0) read(chunk);
    });
  });
  const running = await startServer(server);
  onTestFinished(running.close);
  return { ...running, frames, sent };
}

/**
 * A response started and then broken, frame by frame: HEADERS (`:status: 200`, then `headers`), one
 * DATA frame of `body` without END_STREAM, and, once the proxy has read those (a PING's ACK: no
 * timer), RST_STREAM(`code`) on the stream. No END_STREAM anywhere, and the connection stays open.
 */
export function startedThenReset(code: number, headers: ReadonlyArray<readonly [string, string]>, body: Buffer): RawH2Responder {
  return (request, connection) => {
    const id = request.streamId;
    connection.send(Buffer.concat([headersFrames(id, [[':status', '200'], ...headers], { endStream: false }), dataFrame(id, body, false)]));
    void connection.processed().then(() => connection.send(rstStreamFrame(id, code)));
  };
}

/** Whether a HEADERS or DATA frame carries END_STREAM. */
export function endsStream(frame: H2Frame): boolean {
  return (frame.type === FRAME.HEADERS || frame.type === FRAME.DATA) && (frame.flags & FLAG.END_STREAM) !== 0;
}
