import { describe, expect, it } from 'vitest';
import { UpstreamTimeoutError } from '../src/errors.js';
import { failureOf } from '../src/proxy/exchange-rules.js';
import { classifyUpstreamError } from '../src/proxy/upstream-errors.js';

function errno(code: string): Error {
  return Object.assign(new Error(code), { code });
}

describe('classifyUpstreamError', () => {
  it.each([
    ['ECONNREFUSED', 'connect_refused', 502],
    ['EHOSTUNREACH', 'connect_refused', 502],
    ['ENETUNREACH', 'connect_refused', 502],
    ['ECONNRESET', 'reset', 502],
    ['EPIPE', 'reset', 502],
    ['ENOTFOUND', 'dns', 502],
    ['EAI_AGAIN', 'dns', 502],
    ['ETIMEDOUT', 'connect_timeout', 504],
    ['MP_ERR_CONNECT_TIMEOUT', 'connect_timeout', 504],
    ['MP_ERR_RESPONSE_TIMEOUT', 'response_timeout', 504],
    ['MP_ERR_IDLE_TIMEOUT', 'response_timeout', 504],
    ['DEPTH_ZERO_SELF_SIGNED_CERT', 'tls', 502],
    ['ERR_TLS_CERT_ALTNAME_INVALID', 'tls', 502],
    ['ERR_SSL_WRONG_VERSION_NUMBER', 'tls', 502],
    ['CERT_NOT_YET_VALID', 'tls', 502],
    ['EPROTO', 'tls', 502],
    ['HPE_INVALID_CONSTANT', 'protocol', 502],
    ['HPE_INVALID_HEADER_TOKEN', 'protocol', 502],
    ['UND_ERR_SOCKET', 'reset', 502],
    ['UND_ERR_CONNECT_TIMEOUT', 'connect_timeout', 504],
    ['UND_ERR_HEADERS_TIMEOUT', 'response_timeout', 504],
    ['UND_ERR_BODY_TIMEOUT', 'idle_timeout', 504],
    ['UND_ERR_HEADERS_OVERFLOW', 'protocol', 502],
    ['UND_ERR_RES_CONTENT_LENGTH_MISMATCH', 'protocol', 502],
    // node:http2, the HTTP/2 leg (h2-upstream.ts)
    ['ERR_HTTP2_STREAM_ERROR', 'reset', 502],
    ['ERR_HTTP2_STREAM_CANCEL', 'reset', 502],
    ['ERR_HTTP2_SESSION_ERROR', 'reset', 502],
    ['ERR_HTTP2_GOAWAY_SESSION', 'reset', 502],
    ['ERR_HTTP2_INVALID_SESSION', 'reset', 502],
    ['ERR_HTTP2_ERROR', 'protocol', 502],
    ['ERR_HTTP2_TOO_MANY_INVALID_FRAMES', 'protocol', 502],
    ['ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL', 'tls', 502],
    ['SOMETHING_ELSE', 'unknown', 502],
  ])('maps %s to %s (%i)', (code, kind, status) => {
    const failure = classifyUpstreamError(errno(code));
    expect(failure.kind).toBe(kind);
    expect(failure.status).toBe(status);
    expect(failure.msg).not.toContain(code);
  });

  it.each([
    ['a 101 nobody asked for', Object.assign(new Error('bad upgrade'), { code: 'UND_ERR_SOCKET' }), 'protocol'],
    ['a response without a request', Object.assign(new Error('bad response'), { code: 'UND_ERR_SOCKET' }), 'protocol'],
    ['the other side closing', Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }), 'reset'],
    // undici 7's parser errors have no code: the class name tells
    ['an llhttp error', Object.assign(new Error('Response does not match the HTTP/1.1 protocol'), { name: 'HTTPParserError' }), 'protocol'],
  ])('maps undici reporting %s by its message or class', (_name, err, kind) => {
    expect(classifyUpstreamError(err).kind).toBe(kind);
  });

  it.each([undefined, null, 'text', 42, new Error('no code')])('copes with %j', (value) => {
    expect(classifyUpstreamError(value)).toMatchObject({ kind: 'unknown', status: 502 });
  });
});

describe('failureOf: what a failure counts as, before and after the response head', () => {
  it.each([
    ['silence before the head: the head is late', new UpstreamTimeoutError('MP_ERR_IDLE_TIMEOUT', 100), false, 'response_timeout'],
    ['silence after the head', new UpstreamTimeoutError('MP_ERR_IDLE_TIMEOUT', 100), true, 'idle_timeout'],
    ['the response timer', new UpstreamTimeoutError('MP_ERR_RESPONSE_TIMEOUT', 100), false, 'response_timeout'],
    ['a reset before the head', errno('ECONNRESET'), false, 'reset'],
    ['a reset after the head', errno('ECONNRESET'), true, 'reset'],
    ['a refused connection', errno('ECONNREFUSED'), false, 'connect_refused'],
  ] as const)('%s', (_name, err, answered, kind) => {
    expect(failureOf(err, answered).kind).toBe(kind);
  });
});
