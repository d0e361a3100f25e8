/**
 * Timers on an upstream upgrade request, owned by us rather than
 * http-proxy-3 (whose `proxyTimeout` surfaces as an ECONNRESET that cannot be
 * told from a real reset). Each fires by destroying the request with an
 * UpstreamTimeoutError, which http-proxy-3 hands to our error callback, and
 * the client gets a 504 with the timer's `error_type`.
 *
 * Handshakes are few next to requests, so each gets timers of its own; an
 * open session is watched by its idle timer instead.
 */
import type { ClientRequest } from 'node:http';
import type { Socket } from 'node:net';
import { type UpstreamTimeoutCode, UpstreamTimeoutError } from '../../errors.js';

export interface HandshakeTimeouts {
  /** TCP (and TLS) connect of a new upstream socket; 0 = off. */
  readonly connectMs: number;
  /** From the request to the upstream's answer (its 101 or a refusal); 0 = off. */
  readonly responseMs: number;
}

/** Arms the timers on one upgrade request; call it when http-proxy-3 announces the request. */
export type HandshakeGuard = (proxyReq: ClientRequest) => void;

function expire(proxyReq: ClientRequest, code: UpstreamTimeoutCode, ms: number): void {
  if (!proxyReq.destroyed) proxyReq.destroy(new UpstreamTimeoutError(code, ms));
}

/** Destroys the request with `code` after `ms`, unless it is answered or closed first; returns the disarm. */
function armUntilAnswered(proxyReq: ClientRequest, ms: number, code: UpstreamTimeoutCode): () => void {
  const timer = setTimeout(expire, ms, proxyReq, code, ms);
  timer.unref();
  const clear = (): void => clearTimeout(timer);
  proxyReq.once('upgrade', clear);
  proxyReq.once('response', clear);
  proxyReq.once('close', clear);
  return clear;
}

function watchConnect(proxyReq: ClientRequest, connectMs: number): void {
  const socket: (Socket & { encrypted?: boolean }) | null = proxyReq.socket;
  if (socket === null) {
    // http-proxy-3 announces an upgrade request before the agent has given it a socket.
    proxyReq.once('socket', () => watchConnect(proxyReq, connectMs));
    return;
  }
  if (!socket.connecting) return;
  const clear = armUntilAnswered(proxyReq, connectMs, 'MP_ERR_CONNECT_TIMEOUT');
  // TLS counts as part of connecting: wait for the handshake, not just TCP.
  socket.once(socket.encrypted === true ? 'secureConnect' : 'connect', clear);
}

export function createHandshakeGuard({ connectMs, responseMs }: HandshakeTimeouts): HandshakeGuard {
  return (proxyReq) => {
    if (connectMs > 0) watchConnect(proxyReq, connectMs);
    if (responseMs > 0) armUntilAnswered(proxyReq, responseMs, 'MP_ERR_RESPONSE_TIMEOUT');
  };
}
