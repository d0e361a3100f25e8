// @ts-check
/**
 * The benchmark's HTTP/2 upstream, its own process (`node test/bench/h2-upstream.mjs`): cleartext
 * HTTP/2 with prior knowledge (h2c), on node:http2's core API (streams, not the compatibility
 * layer), answering as cheaply as Node makes it:
 *
 *   GET  /api/small            200, the same 25-byte JSON body as upstream.mjs
 *   POST /<service>/<method>   with content-type application/grpc…: a gRPC unary call. Reads the
 *                              whole request, checks that it is one 5-byte-prefixed message
 *                              (flag 0, length = the rest), answers :status 200,
 *                              content-type application/grpc, one 16-byte message, then the
 *                              trailers grpc-status 0. A malformed request gets a trailers-only
 *                              grpc-status 3 (INVALID_ARGUMENT), and no message.
 *   anything else              404
 *
 * Prints one JSON line `{"msg":"listening","port":N}` once it listens on 127.0.0.1:0.
 * Plain JavaScript on purpose, like upstream.mjs: no TypeScript loader in a measured process.
 */
import { constants, createServer } from 'node:http2';

const {
  HTTP2_HEADER_CONTENT_LENGTH,
  HTTP2_HEADER_CONTENT_TYPE,
  HTTP2_HEADER_METHOD,
  HTTP2_HEADER_PATH,
  HTTP2_HEADER_STATUS,
} = constants;

const SMALL = Buffer.from('{"message":"hello world"}');
const SMALL_HEADERS = { [HTTP2_HEADER_STATUS]: 200, [HTTP2_HEADER_CONTENT_TYPE]: 'application/json', [HTTP2_HEADER_CONTENT_LENGTH]: SMALL.length };
/** The reply: one uncompressed message of 16 bytes behind its 5-byte prefix. */
const REPLY = Buffer.concat([Buffer.from([0, 0, 0, 0, 16]), Buffer.alloc(16, 0x72)]);
const GRPC_HEADERS = { [HTTP2_HEADER_STATUS]: 200, [HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc' };
const GRPC_OK = { 'grpc-status': '0' };
const NOT_FOUND = { [HTTP2_HEADER_STATUS]: 404 };

/** @param {Buffer} body */
function oneMessage(body) {
  return body.length >= 5 && body[0] === 0 && body.readUInt32BE(1) === body.length - 5;
}

/** @param {import('node:http2').ServerHttp2Stream} stream */
function unary(stream) {
  /** @type {Buffer[]} */
  const chunks = [];
  stream.on('data', (/** @type {Buffer} */ chunk) => chunks.push(chunk));
  stream.on('end', () => {
    if (stream.destroyed) return;
    const body = chunks.length === 1 ? /** @type {Buffer} */ (chunks[0]) : Buffer.concat(chunks);
    if (!oneMessage(body)) {
      // Trailers-only: one HEADERS frame with END_STREAM.
      stream.respond({ ...GRPC_HEADERS, 'grpc-status': '3', 'grpc-message': 'expected%20one%20message' }, { endStream: true });
      return;
    }
    stream.respond(GRPC_HEADERS, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers(GRPC_OK));
    stream.end(REPLY);
  });
}

const server = createServer({ settings: { maxConcurrentStreams: 1000 } });
server.on('stream', (stream, headers) => {
  stream.on('error', () => {});
  const path = headers[HTTP2_HEADER_PATH];
  const method = headers[HTTP2_HEADER_METHOD];
  if (method === 'POST' && String(headers[HTTP2_HEADER_CONTENT_TYPE] ?? '').startsWith('application/grpc')) {
    unary(stream);
    return;
  }
  stream.resume();
  if (path === '/api/small' && (method === 'GET' || method === 'HEAD')) {
    stream.respond(SMALL_HEADERS, { endStream: method === 'HEAD' });
    if (method === 'GET') stream.end(SMALL);
    return;
  }
  stream.respond(NOT_FOUND, { endStream: true });
});
server.on('sessionError', () => {});

server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
