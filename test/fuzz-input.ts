/** Random and mutated raw HTTP requests for the fuzz test: well-formed templates, then byte-level damage. */

/** A small deterministic PRNG (mulberry32), so a failing run can be replayed from its seed. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH', 'PROPFIND', 'TRACE', 'CONNECT', 'G E T', 'get', ''];
const PATHS = [
  '/api/x', '/api/', '/api', '/api/a/../b', '/api/../admin', '/api/%2e%2e/x', '/api/..%2fx', '/metrics', '/healthz',
  '/readyz', '/other', '*', 'http://h/api/x', '/api/%zz', '/api/\u00ff', '/api/x?q=%00', '//api//x', '/api/' + 'a'.repeat(3000),
];
const HEADERS = [
  'host: x', 'content-length: 5', 'content-length: 0', 'content-length: -1', 'content-length: 5, 6', 'transfer-encoding: chunked',
  'transfer-encoding: xchunked', 'connection: close', 'connection: keep-alive, x-a', 'x-a: 1', 'expect: 100-continue',
  'upgrade: websocket', 'connection: upgrade', 'sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version: 13',
  'te: trailers', 'x-forwarded-for: 1.2.3.4', 'cookie: ' + 'c'.repeat(500), 'bad header: 1', 'x-nul: a\u0000b', ':: :',
];
const BODIES = ['', 'hello', '5\r\nhello\r\n0\r\n\r\n', 'zz\r\n', '0\r\n\r\nGET /api/smuggled HTTP/1.1\r\nhost: x\r\n\r\n', 'x'.repeat(2000)];

function pick<T>(rand: () => number, items: readonly T[]): T {
  return items[Math.floor(rand() * items.length)] as T;
}

function wellFormed(rand: () => number): string {
  const headers = Array.from({ length: Math.floor(rand() * 5) }, () => pick(rand, HEADERS));
  return `${pick(rand, METHODS)} ${pick(rand, PATHS)} HTTP/1.${rand() < 0.9 ? 1 : 0}\r\n${['host: x', ...headers].join('\r\n')}\r\n\r\n${pick(rand, BODIES)}`;
}

function mutate(rand: () => number, input: string): Buffer {
  const bytes = Buffer.from(input, 'latin1');
  const out = [...bytes];
  const edits = 1 + Math.floor(rand() * 4);
  for (let i = 0; i < edits; i++) {
    const at = Math.floor(rand() * (out.length + 1));
    switch (Math.floor(rand() * 5)) {
      case 0:
        out[at] = Math.floor(rand() * 256); // flip a byte
        break;
      case 1:
        out.splice(at, 0, ...Buffer.from(pick(rand, ['\r\n', '\n', '\r', ' ', ':', '\u0000', '%', '..', '\t']), 'latin1'));
        break;
      case 2:
        out.splice(at, 1 + Math.floor(rand() * 8));
        break;
      case 3:
        out.splice(at); // truncate
        break;
      default:
        out.splice(at, 0, ...out.slice(at, at + Math.floor(rand() * 64))); // duplicate a run
    }
  }
  return Buffer.from(out);
}

export function payload(rand: () => number): Buffer {
  const roll = rand();
  if (roll < 0.1) return Buffer.from(Array.from({ length: Math.floor(rand() * 512) }, () => Math.floor(rand() * 256)));
  if (roll < 0.45) return Buffer.from(wellFormed(rand), 'latin1');
  if (roll < 0.55) return Buffer.from(wellFormed(rand) + wellFormed(rand), 'latin1'); // pipelined
  return mutate(rand, wellFormed(rand));
}

