// @ts-check
/**
 * The benchmark's Node upstream, run as its own process (`node test/bench/upstream.mjs`):
 * fixed answers as cheap as Node makes them, so the proxy under test is what the bench sees.
 * Plain JavaScript on purpose: a TypeScript loader would add its own start-up time and memory.
 *
 *   GET  /api/small            200, a 25-byte JSON body
 *   GET  /api/16k              200, 16 KiB
 *   POST /api/sink             drains the body, answers 200 {"bytes":n}
 *   GET  /api/stream?bytes=N   200, N bytes streamed with backpressure (the 1 GiB test)
 *   any  /api/...?s=NNN        status NNN with a small body (populates the route budget);
 *                              with &d=MS it answers MS milliseconds after the request's end,
 *                              with &b=N its body is N bytes (at most 256 KiB)
 *   WebSocket on any path      echo
 *
 * Prints one JSON line `{"msg":"listening","port":N}` once it listens on 127.0.0.1:0.
 */
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';

const SMALL = Buffer.from('{"message":"hello world"}');
const BODY_16K = Buffer.alloc(16 * 1024, 0x61);
const STREAM_CHUNK = Buffer.alloc(64 * 1024, 0x62);
const SIZED = Buffer.alloc(256 * 1024, 0x63);
const SMALL_HEADERS = { 'content-type': 'application/json', 'content-length': String(SMALL.length) };
const HEADERS_16K = { 'content-type': 'application/octet-stream', 'content-length': String(BODY_16K.length) };

/**
 * @param {import('node:http').ServerResponse} res
 * @param {number} total
 */
function stream(res, total) {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
  let left = total;
  const pump = () => {
    while (left > 0) {
      const chunk = left >= STREAM_CHUNK.length ? STREAM_CHUNK : STREAM_CHUNK.subarray(0, left);
      left -= chunk.length;
      if (!res.write(chunk)) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  pump();
}

const server = createServer((req, res) => {
  const url = req.url ?? '/';
  if (url === '/api/small') {
    res.writeHead(200, SMALL_HEADERS);
    res.end(SMALL);
    return;
  }
  if (url === '/api/16k') {
    res.writeHead(200, HEADERS_16K);
    res.end(BODY_16K);
    return;
  }
  if (url === '/api/sink') {
    let bytes = 0;
    req.on('data', (/** @type {Buffer} */ chunk) => {
      bytes += chunk.length;
    });
    req.on('end', () => {
      const body = `{"bytes":${bytes}}`;
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) });
      res.end(body);
    });
    return;
  }
  const query = url.indexOf('?');
  const params = new URLSearchParams(query < 0 ? '' : url.slice(query + 1));
  if (url.startsWith('/api/stream?')) {
    req.resume();
    stream(res, Number(params.get('bytes') ?? '0'));
    return;
  }
  const status = Number(params.get('s') ?? '200');
  const delayMs = Number(params.get('d') ?? '0');
  const sized = params.get('b');
  const answer = () => {
    const noBody = status === 204 || status === 304;
    const code = status >= 200 && status <= 599 ? status : 200;
    if (noBody) {
      res.writeHead(code);
      res.end();
    } else if (sized === null) {
      res.writeHead(code, SMALL_HEADERS);
      res.end(SMALL);
    } else {
      const body = SIZED.subarray(0, Math.max(0, Math.min(SIZED.length, Number(sized) | 0)));
      res.writeHead(code, { 'content-type': 'application/octet-stream', 'content-length': String(body.length) });
      res.end(body);
    }
  };
  req.resume();
  req.on('end', () => {
    if (delayMs > 0) setTimeout(answer, delayMs);
    else answer();
  });
});
server.keepAliveTimeout = 65_000;

const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
server.on('clientError', (_err, socket) => socket.destroy());

server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
