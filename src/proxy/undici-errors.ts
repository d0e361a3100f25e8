/**
 * What undici's errors mean, for upstream-errors.ts and exchange-rules.ts: the codes undici 7 gives
 * its errors, and the errors whose code does not tell (read from lib/core/errors.js and
 * lib/dispatcher/client-h1.js of the version in undici-version.ts).
 */
import type { UpstreamFailureKind } from '../errors.js';

/** undici's SocketError: the connection broke under a request (or see isUndiciProtocolError). */
export const UNDICI_SOCKET_ERROR = 'UND_ERR_SOCKET';

/** undici's codes: a connection that broke, its timers, and answers it refused to parse. */
export const UNDICI_FAILURE_KINDS: Readonly<Record<string, UpstreamFailureKind>> = {
  [UNDICI_SOCKET_ERROR]: 'reset',
  // undici reports a parse error as this whenever the response has a Content-Length (a body cut short
  // after the head never reaches this table: the client connection is broken instead).
  UND_ERR_RES_CONTENT_LENGTH_MISMATCH: 'protocol',
  UND_ERR_CONNECT_TIMEOUT: 'connect_timeout',
  UND_ERR_HEADERS_TIMEOUT: 'response_timeout',
  // undici's body timer runs between body chunks, after the head (it is off: the exchange sweep owns the timeouts).
  UND_ERR_BODY_TIMEOUT: 'idle_timeout',
  UND_ERR_HEADERS_OVERFLOW: 'protocol',
  UND_ERR_RESPONSE_EXCEEDED_MAX_SIZE: 'protocol',
};

/**
 * The SocketError messages of an answer no request asked for: `bad upgrade` for a 101 to a request
 * that asked for no upgrade, `bad response` for a response on a connection with no request running
 * (or a 100, which upstream-pool.ts skips before undici sees it).
 */
const PROTOCOL_MESSAGES = new Set(['bad upgrade', 'bad response']);

/** An undici error that is an invalid answer, though its code says otherwise or nothing. */
export function isUndiciProtocolError(err: Error, code: string): boolean {
  if (code === UNDICI_SOCKET_ERROR && PROTOCOL_MESSAGES.has(err.message)) return true;
  // undici 7's llhttp errors carry no code (it looks the name up the wrong way round): their class tells.
  return err.name === 'HTTPParserError';
}
