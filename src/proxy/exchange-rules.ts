/**
 * The decisions an HTTP exchange takes, as pure functions of its state: which
 * status the client got, whom an idle timeout blames, and whether a failed
 * request may be sent again.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { UpstreamTimeoutError } from '../errors.js';
import { type UpstreamFailure, classifyUpstreamError, upstreamFailure } from './upstream-errors.js';
import { UNDICI_SOCKET_ERROR } from './undici-errors.js';

export const PROTOCOL_FAILURE: UpstreamFailure = upstreamFailure('protocol');
export const RESET_FAILURE: UpstreamFailure = upstreamFailure('reset');
const IDLE_FAILURE: UpstreamFailure = upstreamFailure('idle_timeout');
/** What nginx, Traefik and Caddy record for a request whose client went away first. */
export const CLIENT_CLOSED_REQUEST = 499;

/** RFC 9110 §9.2.2: idempotent, so safe to send twice when they carry no body. Never POST or PATCH. */
const RETRYABLE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
/** The connection broke under the request (as opposed to an answer that could not be read). */
const CONNECTION_LOST = new Set([UNDICI_SOCKET_ERROR, 'ECONNRESET', 'EPIPE', 'ECONNABORTED']);

/**
 * What an upstream failure counts as: its error's kind, except the upstream falling silent past the
 * idle timeout once its response head has been relayed, which is `idle_timeout` (a cut response),
 * not `response_timeout` (a late head).
 */
export function failureOf(err: unknown, answered: boolean): UpstreamFailure {
  if (answered && err instanceof UpstreamTimeoutError && err.code === 'MP_ERR_IDLE_TIMEOUT') return IDLE_FAILURE;
  return classifyUpstreamError(err);
}

export function isRetryable(method: string, hasBody: boolean): boolean {
  return !hasBody && RETRYABLE_METHODS.has(method);
}

/** The connection broke before the request was answered, which a fresh connection may not repeat. */
export function isLostConnection(err: unknown): boolean {
  const code = typeof err === 'object' && err !== null && 'code' in err ? err.code : undefined;
  return typeof code === 'string' && CONNECTION_LOST.has(code);
}

/** The status the client got: 499 when it went away first, 502 when we cut it before any head. */
export function statusOf(res: ServerResponse, brokenByUpstream: boolean): number {
  if (res.writableFinished) return res.statusCode;
  if (brokenByUpstream) return res.headersSent ? res.statusCode : 502;
  return CLIENT_CLOSED_REQUEST;
}

/**
 * Whose silence an idle timeout caught, once the request has a connection: the client's when the
 * upstream is done and the client does not take the rest, when it stopped reading, or when its upload
 * stalled while we were reading it (a paused request waits for the upstream to read, not the client).
 */
export function idleBlame(upstreamDone: boolean, req: IncomingMessage, res: ServerResponse): 'client' | 'upstream' {
  if (upstreamDone || res.writableNeedDrain) return 'client';
  return !req.complete && req.readableFlowing !== false ? 'client' : 'upstream';
}

// For exchange.ts, until it imports url-parts.js itself.
