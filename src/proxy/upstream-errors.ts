/**
 * Maps a failure to reach or read the upstream onto the answer the client
 * gets. Pure, so every case is a row in a table-driven test.
 */
import type { UpstreamFailureKind } from '../errors.js';
import { UNDICI_FAILURE_KINDS, isUndiciProtocolError } from './undici-errors.js';

// The kinds live in errors.ts, below the metrics layer that labels them; re-exported for this layer's callers.
export type { UpstreamFailureKind } from '../errors.js';

export interface UpstreamFailure {
  readonly kind: UpstreamFailureKind;
  readonly status: 502 | 504;
  /** Short, constant, safe to show a client: never the raw error text. */
  readonly msg: string;
}

const FAILURES: Readonly<Record<UpstreamFailureKind, UpstreamFailure>> = {
  connect_refused: { kind: 'connect_refused', status: 502, msg: 'upstream unreachable: connection refused' },
  connect_timeout: { kind: 'connect_timeout', status: 504, msg: 'upstream connect timed out' },
  response_timeout: { kind: 'response_timeout', status: 504, msg: 'upstream response timed out' },
  // After the response head: the client connection is cut, so the status and message are never sent.
  idle_timeout: { kind: 'idle_timeout', status: 504, msg: 'upstream went idle mid-response' },
  reset: { kind: 'reset', status: 502, msg: 'upstream closed the connection' },
  dns: { kind: 'dns', status: 502, msg: 'upstream host could not be resolved' },
  tls: { kind: 'tls', status: 502, msg: 'TLS handshake with upstream failed' },
  protocol: { kind: 'protocol', status: 502, msg: 'upstream sent an invalid HTTP response' },
  unknown: { kind: 'unknown', status: 502, msg: 'upstream error' },
};

const BY_CODE: Readonly<Record<string, UpstreamFailureKind>> = {
  ECONNREFUSED: 'connect_refused',
  EHOSTUNREACH: 'connect_refused',
  ENETUNREACH: 'connect_refused',
  EADDRNOTAVAIL: 'connect_refused',
  ECONNRESET: 'reset',
  EPIPE: 'reset',
  ECONNABORTED: 'reset',
  ERR_STREAM_PREMATURE_CLOSE: 'reset',
  ENOTFOUND: 'dns',
  EAI_AGAIN: 'dns',
  EAI_FAIL: 'dns',
  EAI_NONAME: 'dns',
  ETIMEDOUT: 'connect_timeout',
  MP_ERR_CONNECT_TIMEOUT: 'connect_timeout',
  MP_ERR_RESPONSE_TIMEOUT: 'response_timeout',
  // Silence before the response head is a late head; after it, see failureOf (exchange-rules.ts).
  MP_ERR_IDLE_TIMEOUT: 'response_timeout',
  EPROTO: 'tls',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'tls',
  SELF_SIGNED_CERT_IN_CHAIN: 'tls',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'tls',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'tls',
  CERT_HAS_EXPIRED: 'tls',
  ERR_TLS_CERT_ALTNAME_INVALID: 'tls',
  // undici (the HTTP/1.1 leg): its codes are undici-errors.ts's business
  ...UNDICI_FAILURE_KINDS,
  // node:http2 (the HTTP/2 leg, h2-upstream.ts). A stream the upstream reset (RST_STREAM, any code), a
  // GOAWAY with an error code, a session that closed or was refused: the connection or stream broke.
  ERR_HTTP2_STREAM_ERROR: 'reset',
  ERR_HTTP2_STREAM_CANCEL: 'reset',
  ERR_HTTP2_SESSION_ERROR: 'reset',
  ERR_HTTP2_GOAWAY_SESSION: 'reset',
  ERR_HTTP2_INVALID_SESSION: 'reset',
  // nghttp2 refused what the upstream sent ("Protocol error": e.g. an HTTP/1 server answering h2c),
  // or it sent too many invalid frames: an answer that is not HTTP/2.
  ERR_HTTP2_ERROR: 'protocol',
  ERR_HTTP2_TOO_MANY_INVALID_FRAMES: 'protocol',
};

/** The failure of a kind, as the table has it. */
export function upstreamFailure(kind: UpstreamFailureKind): UpstreamFailure {
  return FAILURES[kind];
}

export function classifyUpstreamError(err: unknown): UpstreamFailure {
  const code = typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : '';
  if (err instanceof Error && isUndiciProtocolError(err, code)) return FAILURES.protocol;
  const known = BY_CODE[code];
  if (known !== undefined) return FAILURES[known];
  if (code.startsWith('HPE_')) return FAILURES.protocol;
  if (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_') || code.startsWith('CERT_')) return FAILURES.tls;
  return FAILURES.unknown;
}
