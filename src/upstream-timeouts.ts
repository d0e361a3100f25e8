/**
 * Timers on an upstream request, owned by us rather than http-proxy (whose
 * `proxyTimeout` surfaces as an ECONNRESET indistinguishable from a real
 * reset). Each fires by destroying the request with an UpstreamTimeoutError,
 * which http-proxy hands to our error callback (→ 504 before the response
 * started, a broken connection after); a destroyed socket is never reused.
 */
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { type UpstreamTimeoutCode, UpstreamTimeoutError } from './errors.js';

export interface UpstreamTimeouts {
  /** TCP (and TLS) connect of a new upstream socket. */
  readonly connectMs: number;
  /** From the end of the client's request to the upstream's response headers; 0 = off. */
  readonly responseMs: number;
  /** No bytes either way on the upstream socket; 0 = off. */
  readonly idleMs: number;
}

interface Timers {
  connect: NodeJS.Timeout | undefined;
  response: NodeJS.Timeout | undefined;
}

const TIMERS = Symbol('metrics-proxy.upstream-timers');
type GuardedRequest = ClientRequest & { [TIMERS]?: Timers };

function fail(proxyReq: ClientRequest, code: UpstreamTimeoutCode, ms: number): void {
  if (!proxyReq.destroyed) proxyReq.destroy(new UpstreamTimeoutError(code, ms));
}

function clearTimers(this: GuardedRequest): void {
  const timers = this[TIMERS];
  if (timers === undefined) return;
  if (timers.connect !== undefined) clearTimeout(timers.connect);
  if (timers.response !== undefined) clearTimeout(timers.response);
  timers.connect = undefined;
  timers.response = undefined;
}

function clearConnectTimer(proxyReq: GuardedRequest): void {
  const timers = proxyReq[TIMERS];
  if (timers?.connect !== undefined) {
    clearTimeout(timers.connect);
    timers.connect = undefined;
  }
}

function clearResponseTimer(this: GuardedRequest): void {
  const timers = this[TIMERS];
  if (timers?.response !== undefined) {
    clearTimeout(timers.response);
    timers.response = undefined;
  }
}

/**
 * Whose silence an idle timeout caught: when the client stalls (its upload stopped, or it stopped
 * reading), the upstream socket goes quiet too, but the upstream is not at fault.
 */
export type IdleBlame = (proxyReq: ClientRequest) => 'client' | 'upstream';

export function createTimeoutGuard(timeouts: UpstreamTimeouts, blameIdle: IdleBlame = () => 'upstream') {
  const { connectMs, responseMs, idleMs } = timeouts;
  const onConnectTimeout = (proxyReq: ClientRequest): void => fail(proxyReq, 'MP_ERR_CONNECT_TIMEOUT', connectMs);
  const onResponseTimeout = (proxyReq: ClientRequest): void => fail(proxyReq, 'MP_ERR_RESPONSE_TIMEOUT', responseMs);
  function onIdle(this: ClientRequest): void {
    fail(this, blameIdle(this) === 'client' ? 'MP_ERR_CLIENT_IDLE' : 'MP_ERR_IDLE_TIMEOUT', idleMs);
  }

  function armResponseTimer(proxyReq: GuardedRequest): void {
    const timers = proxyReq[TIMERS];
    if (timers === undefined || proxyReq.destroyed || timers.response !== undefined) return;
    timers.response = setTimeout(onResponseTimeout, responseMs, proxyReq);
  }

  /**
   * Call once the request has its socket (http-proxy's 'proxyReq'/'proxyReqWs' events).
   * `clientReq` is the request whose body is still arriving, if any: the response clock starts at its end.
   */
  return function guard(proxyReq: ClientRequest, clientReq?: IncomingMessage): void {
    const guarded = proxyReq as GuardedRequest;
    const timers: Timers = { connect: undefined, response: undefined };
    guarded[TIMERS] = timers;
    guarded.once('close', clearTimers);

    const socket = proxyReq.socket as (Socket & { encrypted?: boolean }) | null;
    if (socket !== null && socket.connecting && connectMs > 0) {
      timers.connect = setTimeout(onConnectTimeout, connectMs, proxyReq);
      // TLS counts as part of connecting: wait for the handshake, not just TCP.
      socket.once(socket.encrypted === true ? 'secureConnect' : 'connect', () => clearConnectTimer(guarded));
    }
    if (responseMs > 0) {
      guarded.once('response', clearResponseTimer);
      guarded.once('upgrade', clearResponseTimer);
      // The clock starts when the client has sent everything: a long upload is not a slow upstream.
      if (clientReq === undefined || clientReq.complete) armResponseTimer(guarded);
      else clientReq.once('end', () => armResponseTimer(guarded));
    }
    if (idleMs > 0) proxyReq.setTimeout(idleMs, onIdle);
  };
}
