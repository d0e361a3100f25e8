import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { type FrameEvents, closeCodeLabel, createFrameInspector } from '../src/proxy/websocket/inspector.js';
import { wsText } from './helpers.js';

const TEXT = 0x1;
const BINARY = 0x2;
const CONTINUATION = 0x0;
const CLOSE = 0x8;
const PING = 0x9;
const PONG = 0xa;
const RSV1 = 0x40;
const MASK_KEY = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

interface FrameOptions {
  fin?: boolean;
  rsv?: number;
  masked?: boolean;
}

/** A frame header announcing `length` payload bytes (the payload itself is up to the caller). */
function header(opcode: number, length: number, { fin = true, rsv = 0, masked = false }: FrameOptions = {}): Buffer {
  const first = (fin ? 0x80 : 0) | rsv | opcode;
  const maskBit = masked ? 0x80 : 0;
  let head: Buffer;
  if (length <= 125) {
    head = Buffer.from([first, maskBit | length]);
  } else if (length <= 0xffff) {
    head = Buffer.from([first, maskBit | 126, 0, 0]);
    head.writeUInt16BE(length, 2);
  } else {
    head = Buffer.from([first, maskBit | 127, 0, 0, 0, 0, 0, 0, 0, 0]);
    head.writeBigUInt64BE(BigInt(length), 2);
  }
  return masked ? Buffer.concat([head, MASK_KEY]) : head;
}

function frame(opcode: number, payload: Buffer | string, options: FrameOptions = {}): Buffer {
  const data = Buffer.from(payload);
  const body = options.masked ? data.map((byte, i) => byte ^ (MASK_KEY[i % 4] as number)) : data;
  return Buffer.concat([header(opcode, data.length, options), body]);
}

function closeFrameWith(code: number, reason: string, options: FrameOptions = {}): Buffer {
  const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
  payload.writeUInt16BE(code);
  payload.write(reason, 2);
  return frame(CLOSE, payload, options);
}

/** An inspector whose events land in `log` as 'm:<bytes>' and 'c:<code>', in order. */
function recorder(masked: boolean) {
  const log: string[] = [];
  const inspector = createFrameInspector(masked, {
    onMessage: (bytes) => log.push(`m:${bytes}`),
    onClose: (code) => log.push(`c:${code}`),
  });
  return { log, inspector };
}

function inspect(masked: boolean, ...chunks: Buffer[]) {
  const { log, inspector } = recorder(masked);
  expect(() => {
    for (const chunk of chunks) inspector.push(chunk);
  }).not.toThrow();
  return { log, broken: inspector.broken };
}

/** Every frame shape at once: 7/16/64-bit lengths, RSV1, a fragmented message with control frames inside, a close. */
function mixedStream(masked: boolean): Buffer {
  const o = { masked };
  return Buffer.concat([
    frame(TEXT, 'hello', o),
    frame(BINARY, Buffer.alloc(0), o),
    frame(BINARY, Buffer.alloc(130, 1), { ...o, fin: false, rsv: RSV1 }),
    frame(PING, 'abc', o),
    frame(CONTINUATION, Buffer.alloc(0), { ...o, fin: false }),
    frame(PONG, Buffer.alloc(0), o),
    frame(CONTINUATION, Buffer.alloc(70_000, 2), o),
    frame(TEXT, 'x'.repeat(125), o),
    closeFrameWith(4000, 'bye', o),
    Buffer.from([0xff, 0xff, 0x00]), // after the close: ignored, not broken
  ]);
}
const MIXED_EVENTS = ['m:5', 'm:0', 'm:70130', 'm:125', 'c:4000'];

describe('createFrameInspector on hand-built frames', () => {
  for (const masked of [false, true]) {
    const direction = masked ? 'client→server (masked)' : 'server→client';

    it(`${direction}: reads a mixed stream in one push`, () => {
      expect(inspect(masked, mixedStream(masked))).toEqual({ log: MIXED_EVENTS, broken: false });
    });

    it(`${direction}: gives the same events for 1-byte pushes`, () => {
      const stream = mixedStream(masked);
      const chunks = Array.from({ length: stream.length }, (_, i) => stream.subarray(i, i + 1));
      expect(inspect(masked, ...chunks)).toEqual({ log: MIXED_EVENTS, broken: false });
    });

    it(`${direction}: gives the same events at every split point`, () => {
      const stream = mixedStream(masked);
      for (let at = 0; at <= stream.length; at++) {
        const { log, inspector } = recorder(masked);
        inspector.push(stream.subarray(0, at));
        inspector.push(stream.subarray(at));
        if (log.join() !== MIXED_EVENTS.join() || inspector.broken) {
          expect({ at, log, broken: inspector.broken }).toEqual({ at, log: MIXED_EVENTS, broken: false });
        }
      }
    });

    it(`${direction}: gives the same events for every pair of split points of a header-dense stream`, () => {
      const o = { masked };
      const stream = Buffer.concat([
        frame(TEXT, 'a', { ...o, fin: false }),
        frame(PING, '', o),
        frame(CONTINUATION, 'bcd', o),
        frame(BINARY, Buffer.alloc(126), o),
        frame(CLOSE, Buffer.alloc(0), o),
      ]);
      const expected = ['m:4', 'm:126', 'c:1005'].join();
      for (let a = 0; a <= stream.length; a++) {
        for (let b = a; b <= stream.length; b++) {
          const { log, inspector } = recorder(masked);
          inspector.push(stream.subarray(0, a));
          inspector.push(stream.subarray(a, b));
          inspector.push(stream.subarray(b));
          if (log.join() !== expected || inspector.broken) expect({ a, b, log: log.join() }).toEqual({ a, b, log: expected });
        }
      }
    });
  }

  it('reads the close code when its two bytes and the mask key arrive in separate pushes', () => {
    const bytes = closeFrameWith(1001, 'going', { masked: true });
    // header 2 | mask 4 | code 2: split inside the mask key and between the code bytes
    expect(inspect(true, bytes.subarray(0, 4), bytes.subarray(4, 7), bytes.subarray(7, 8), bytes.subarray(8)).log).toEqual(['c:1001']);
  });

  it('reports 1005 for a close frame without a body, once, and ignores everything after it', () => {
    const { log, inspector } = recorder(false);
    inspector.push(Buffer.concat([frame(CLOSE, Buffer.alloc(0)), closeFrameWith(1000, '')]));
    inspector.push(frame(TEXT, 'late'));
    expect(log).toEqual(['c:1005']);
    expect(inspector.broken).toBe(false);
  });

  it('counts a message once its FIN frame has fully arrived', () => {
    const { log, inspector } = recorder(false);
    const bytes = frame(BINARY, Buffer.alloc(1000));
    inspector.push(bytes.subarray(0, 500));
    expect(log).toEqual([]);
    inspector.push(bytes.subarray(500));
    expect(log).toEqual(['m:1000']);
  });

  it('skips a payload beyond 4 GiB (64-bit length with a high word) by arithmetic', () => {
    const { log, inspector } = recorder(false);
    const length = 2 ** 32 + 5;
    inspector.push(header(BINARY, length));
    const mebibyte = Buffer.alloc(1 << 20);
    for (let i = 0; i < 4096; i++) inspector.push(mebibyte);
    expect(log).toEqual([]);
    inspector.push(Buffer.concat([Buffer.alloc(5), frame(TEXT, 'next')]));
    expect(log).toEqual([`m:${length}`, 'm:4']);
    expect(inspector.broken).toBe(false);
  });

  it('accepts RSV1 on the first frame of a message (permessage-deflate) and counts the compressed bytes', () => {
    const compressed = Buffer.from([0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]); // "Hello", deflated
    expect(inspect(false, frame(TEXT, compressed, { rsv: RSV1 }))).toEqual({ log: ['m:7'], broken: false });
    expect(inspect(true, frame(TEXT, compressed, { rsv: RSV1, masked: true }))).toEqual({ log: ['m:7'], broken: false });
  });

  const sixtyFourBit = (high: number) => {
    const bytes = Buffer.from([0x82, 127, 0, 0, 0, 0, 0, 0, 0, 0]);
    bytes.writeUInt32BE(high, 2);
    return bytes;
  };
  const broken: Array<{ name: string; masked?: boolean; bytes: Buffer }> = [
    { name: 'reserved data opcode 0x3', bytes: frame(0x3, 'x') },
    { name: 'reserved control opcode 0xb', bytes: frame(0xb, 'x') },
    { name: '64-bit length with the top bit set', bytes: sixtyFourBit(0x8000_0000) },
    { name: '64-bit length beyond 2^53 − 1', bytes: sixtyFourBit(0x0020_0000) },
    { name: 'ping longer than 125 bytes', bytes: frame(PING, Buffer.alloc(126)) },
    { name: 'close with a 16-bit length', bytes: Buffer.concat([header(CLOSE, 200), Buffer.alloc(200)]) },
    { name: 'fragmented ping', bytes: frame(PING, 'x', { fin: false }) },
    { name: 'close with a 1-byte body', bytes: frame(CLOSE, Buffer.from([3])) },
    { name: 'continuation with no message open', bytes: frame(CONTINUATION, 'x') },
    { name: 'new data frame inside a fragmented message', bytes: Buffer.concat([frame(TEXT, 'a', { fin: false }), frame(TEXT, 'b')]) },
    { name: 'masked frame from the server', bytes: frame(TEXT, 'x', { masked: true }) },
    { name: 'unmasked frame from the client', masked: true, bytes: frame(TEXT, 'x') },
    { name: 'RSV2', bytes: frame(TEXT, 'x', { rsv: 0x20 }) },
    { name: 'RSV3', bytes: frame(TEXT, 'x', { rsv: 0x10 }) },
    { name: 'RSV1 on a continuation', bytes: Buffer.concat([frame(TEXT, 'a', { fin: false }), frame(CONTINUATION, 'b', { rsv: RSV1 })]) },
    { name: 'RSV1 on a control frame', bytes: frame(PING, 'x', { rsv: RSV1 }) },
  ];
  for (const { name, masked = false, bytes } of broken) {
    it(`marks the stream broken, without throwing, on: ${name}`, () => {
      const o = { masked };
      const good = frame(TEXT, 'ok', o);
      const after = Buffer.concat([frame(TEXT, 'ignored', o), closeFrameWith(1000, '', o)]);
      // Whole, and byte by byte: the verdict must not depend on where chunks end.
      expect(inspect(masked, Buffer.concat([good, bytes, after]))).toEqual({ log: ['m:2'], broken: true });
      const all = Buffer.concat([good, bytes, after]);
      const bytewise = Array.from({ length: all.length }, (_, i) => all.subarray(i, i + 1));
      expect(inspect(masked, ...bytewise)).toEqual({ log: ['m:2'], broken: true });
    });
  }

  it('never throws when a callback does: it stops watching instead', () => {
    const events: FrameEvents = {
      onMessage: () => {
        throw new Error('recorder failed');
      },
      onClose: () => {},
    };
    const inspector = createFrameInspector(false, events);
    expect(() => inspector.push(Buffer.concat([frame(TEXT, 'a'), frame(TEXT, 'b')]))).not.toThrow();
    expect(inspector.broken).toBe(true);
  });
});

describe('closeCodeLabel', () => {
  const table: Array<[number | undefined, string]> = [
    [1000, '1000'],
    [1001, '1001'],
    [1003, '1003'],
    [1004, 'other'],
    [1005, '1005'],
    [1006, '1006'],
    [1011, '1011'],
    [1015, '1015'],
    [1016, 'other'],
    [999, 'other'],
    [0, 'other'],
    [2999, 'other'],
    [3000, 'other'],
    [4000, 'other'],
    [4999, 'other'],
    [5000, 'other'],
    [65535, 'other'],
    [1000.5, 'other'],
    [undefined, '1006'],
  ];
  it.each(table)('%s → %s', (code, label) => {
    expect(closeCodeLabel(code)).toBe(label);
  });
});

// ---------------------------------------------------------------------------
// Real ws traffic, observed by a byte-relaying tee between client and server.

interface Direction {
  messages: number;
  bytes: number;
  close: number | undefined;
  readonly inspector: ReturnType<typeof createFrameInspector>;
}

function direction(masked: boolean): Direction {
  const seen: Direction = {
    messages: 0,
    bytes: 0,
    close: undefined,
    inspector: createFrameInspector(masked, {
      onMessage(bytes) {
        seen.messages++;
        seen.bytes += bytes;
      },
      onClose(code) {
        seen.close = code;
      },
    }),
  };
  return seen;
}

/** Feeds the inspector what follows the HTTP handshake head; frames may share a chunk with it. */
function afterHttpHead(seen: Direction): (chunk: Buffer) => void {
  let head: Buffer | undefined = Buffer.alloc(0);
  return (chunk) => {
    if (head === undefined) {
      seen.inspector.push(chunk);
      return;
    }
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf('\r\n\r\n');
    if (end === -1) return;
    const rest = head.subarray(end + 4);
    head = undefined;
    if (rest.length > 0) seen.inspector.push(rest);
  };
}

interface Tap {
  readonly c2s: Direction;
  readonly s2c: Direction;
  /** Both relayed sockets have closed: every byte has been seen. */
  readonly done: Promise<void>;
}

const closed = (socket: Socket) => new Promise<void>((resolve) => socket.once('close', () => resolve()));

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

/** A TCP relay to `port` that copies bytes unchanged and taps each direction into an inspector. */
async function startTee(port: number) {
  const taps: Tap[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(port, '127.0.0.1');
    const c2s = direction(true);
    const s2c = direction(false);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => {});
    }
    taps.push({ c2s, s2c, done: Promise.all([closed(client), closed(upstream)]).then(() => {}) });
    client.on('data', afterHttpHead(c2s));
    upstream.on('data', afterHttpHead(s2c));
    client.pipe(upstream);
    upstream.pipe(client);
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
  });
  const teePort = await listen(server);
  onTestFinished(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  );
  return { url: `ws://127.0.0.1:${teePort}`, taps };
}

type Deflate = false | { threshold: number };

async function startWsServer(perMessageDeflate: Deflate, onConnection: (ws: WebSocket, socket: Socket) => void) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  wss.on('connection', (ws, req) => onConnection(ws, req.socket));
  onTestFinished(
    () =>
      new Promise<void>((resolve) => {
        for (const ws of wss.clients) ws.terminate();
        wss.close(() => resolve());
      }),
  );
  return (wss.address() as AddressInfo).port;
}

const echo = (ws: WebSocket) => ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }));

async function session(perMessageDeflate: Deflate, onConnection: (ws: WebSocket, socket: Socket) => void = echo) {
  const tee = await startTee(await startWsServer(perMessageDeflate, onConnection));
  const client = new WebSocket(tee.url, { perMessageDeflate });
  client.on('error', () => {});
  onTestFinished(() => client.terminate());
  await new Promise<void>((resolve, reject) => {
    client.once('open', () => resolve());
    client.once('error', reject);
  });
  const tap = tee.taps[0];
  if (tap === undefined) throw new Error('the tee saw no connection');
  return { client, tap };
}

const nextMessage = (ws: WebSocket) => new Promise<Buffer>((resolve) => ws.once('message', (data) => resolve(data as Buffer)));
const clientClosed = (ws: WebSocket) => new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));

const SIZES = [0, 125, 126, 65535, 65536, 200_000];
const RAW_TOTAL = 2 * SIZES.reduce((sum, size) => sum + size, 0);

describe('createFrameInspector on real ws traffic', () => {
  for (const deflate of [false, { threshold: 0 }] as const) {
    const mode = deflate ? 'permessage-deflate on' : 'permessage-deflate off';

    it(`${mode}: counts text and binary messages of every length encoding, both ways`, async () => {
      const { client, tap } = await session(deflate);
      expect(client.extensions).toEqual(deflate ? expect.stringContaining('permessage-deflate') : '');
      for (const size of SIZES) {
        for (const payload of ['t'.repeat(size), Buffer.alloc(size, size % 251)]) {
          client.send(payload);
          expect((await nextMessage(client)).length).toBe(size);
        }
      }
      const code = clientClosed(client);
      client.close(1000);
      expect(await code).toBe(1000);
      await tap.done;

      for (const seen of [tap.c2s, tap.s2c]) {
        expect(seen.inspector.broken).toBe(false);
        expect(seen.messages).toBe(2 * SIZES.length);
        expect(seen.close).toBe(1000);
        if (deflate) {
          // The compressed payload crossed the wire: fewer bytes than the messages hold, but some.
          expect(seen.bytes).toBeGreaterThan(0);
          expect(seen.bytes).toBeLessThan(RAW_TOTAL / 10);
        } else {
          expect(seen.bytes).toBe(RAW_TOTAL);
        }
      }
    });

    it(`${mode}: counts a fragmented message with a ping and a pong inside it once, both ways`, async () => {
      let serverPings = 0;
      const received: string[] = [];
      const { client, tap } = await session(deflate, (ws) => {
        ws.on('ping', () => serverPings++);
        ws.on('message', (data) => {
          received.push(wsText(data));
          ws.send('ab', { fin: false });
          ws.ping();
          ws.send('cde', { fin: false });
          ws.pong('p');
          ws.send('f', { fin: true });
        });
      });
      client.send('abc', { fin: false });
      client.ping('1');
      client.send('defg', { fin: false });
      client.pong();
      client.send('hi', { fin: true });
      expect(String(await nextMessage(client))).toBe('abcdef');
      expect(received).toEqual(['abcdefghi']);
      expect(serverPings).toBe(1);
      client.close(1000);
      await tap.done;

      expect(tap.c2s).toMatchObject({ messages: 1, close: 1000 });
      expect(tap.s2c).toMatchObject({ messages: 1, close: 1000 });
      expect(tap.c2s.inspector.broken).toBe(false);
      expect(tap.s2c.inspector.broken).toBe(false);
      if (!deflate) {
        expect(tap.c2s.bytes).toBe(9);
        expect(tap.s2c.bytes).toBe(6);
      }
    });
  }

  const closes: Array<{ code: number | undefined; by: 'client' | 'server'; label: string; seen: number }> = [
    { code: 1000, by: 'client', label: '1000', seen: 1000 },
    { code: 1001, by: 'server', label: '1001', seen: 1001 },
    { code: 4000, by: 'client', label: 'other', seen: 4000 },
    { code: undefined, by: 'client', label: '1005', seen: 1005 },
  ];
  for (const { code, by, label, seen } of closes) {
    it(`reads close code ${code ?? '(none)'} sent by the ${by} and its echo, labelled '${label}'`, async () => {
      const { client, tap } = await session(false, (ws) => {
        ws.on('message', () => ws.close(code));
      });
      const ended = clientClosed(client);
      if (by === 'client') client.close(code);
      else client.send('close please');
      expect(await ended).toBe(seen);
      await tap.done;
      for (const side of [tap.c2s, tap.s2c]) {
        expect(side.close).toBe(seen);
        expect(closeCodeLabel(side.close)).toBe(label);
        expect(side.inspector.broken).toBe(false);
      }
    });
  }

  it("sees no close frame when the server resets the TCP connection: label '1006'", async () => {
    const { client, tap } = await session(false, (ws, socket) => {
      ws.on('message', () => socket.resetAndDestroy());
    });
    const ended = clientClosed(client);
    client.send('bye');
    expect(await ended).toBe(1006);
    await tap.done;
    expect(tap.c2s).toMatchObject({ messages: 1, bytes: 3, close: undefined });
    expect(tap.s2c).toMatchObject({ messages: 0, bytes: 0, close: undefined });
    expect(closeCodeLabel(tap.c2s.close)).toBe('1006');
    expect(closeCodeLabel(tap.s2c.close)).toBe('1006');
  });
});
