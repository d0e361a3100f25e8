/**
 * Timers on upstream requests, owned by us rather than http-proxy (whose
 * `proxyTimeout` surfaces as an ECONNRESET indistinguishable from a real
 * reset). Each fires by destroying the request with an UpstreamTimeoutError,
 * which http-proxy hands to our error callback (→ 504 before the response
 * started, a broken connection after); a destroyed socket is never reused.
 *
 * The response and idle timeouts cost the hot path nothing but a Set entry:
 * one sweep per app walks the requests in flight a few times per timeout
 * period, instead of arming and clearing timers and socket timeouts (and
 * their listeners) on every request. The sweep runs four times per shortest
 * period (at most once a second), so a timeout fires at most two sweeps after
 * it is due. A new connection, which is
 * rare behind a keep-alive agent, gets a precise connect timer of its own.
 */
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { type UpstreamTimeoutCode, UpstreamTimeoutError } from '../../errors.js';

export interface UpstreamTimeouts {
  /** TCP (and TLS) connect of a new upstream socket. */
  readonly connectMs: number;
  /** From the end of the client's request to the upstream's response headers; 0 = off. */
  readonly responseMs: number;
  /** No bytes either way on the upstream socket; 0 = off. */
  readonly idleMs: number;
}

/**
 * Whose silence an idle timeout caught: when the client stalls (its upload stopped, or it stopped
 * reading), the upstream socket goes quiet too, but the upstream is not at fault.
 */
export type IdleBlame = (proxyReq: ClientRequest) => 'client' | 'upstream';

export interface TimeoutGuard {
  /**
   * Call once the request has its socket (http-proxy's 'proxyReq'/'proxyReqWs' events).
   * `clientReq` is the request whose body is still arriving, if any: the response clock starts at its end.
   */
  (proxyReq: ClientRequest, clientReq?: IncomingMessage): void;
  /** Stops the sweep (the app is closing). */
  close(): void;
}

/** ClientRequest fields Node sets once the upstream has answered (headers, or a 101/CONNECT). */
type Answerable = ClientRequest & { res?: IncomingMessage | null; upgradeOrConnect?: boolean };

/** A request being watched, linked into the sweep's list (an intrusive list: see `createTimeoutGuard`). */
interface Watched {
  readonly proxyReq: Answerable;
  /** performance.now() by which response headers must have come; Infinity until the upload has ended. */
  responseDue: number;
  /** Upstream socket bytes (read + written) at the last sweep, and when they last changed. */
  lastBytes: number;
  lastActiveAt: number;
  prev: Watched | undefined;
  next: Watched | undefined;
  linked: boolean;
}

const WATCHED = Symbol('metrics-proxy.upstream-watch');
type GuardedRequest = Answerable & { [WATCHED]?: Watched };

const MAX_SWEEP_MS = 1_000;
const MIN_SWEEP_MS = 5;

function fail(proxyReq: ClientRequest, code: UpstreamTimeoutCode, ms: number): void {
  if (!proxyReq.destroyed) proxyReq.destroy(new UpstreamTimeoutError(code, ms));
}

function socketBytes(socket: Socket | null): number {
  if (socket === null) return 0;
  return socket.bytesRead + (socket.bytesWritten ?? 0);
}

export function createTimeoutGuard(timeouts: UpstreamTimeouts, blameIdle: IdleBlame = () => 'upstream'): TimeoutGuard {
  const { connectMs, responseMs, idleMs } = timeouts;
  // An intrusive doubly linked list rather than a Set: a long-lived Set that takes and drops a young
  // entry per request kept so much garbage alive across scavenges that GC cost per request tripled
  // (measured with --trace-gc at 2 000 req/s: scavenges 235 ms vs 80 ms in 8 s).
  let head: Watched | undefined;
  const link = (entry: Watched): void => {
    entry.next = head;
    if (head !== undefined) head.prev = entry;
    head = entry;
    entry.linked = true;
  };
  const unlink = (entry: Watched): void => {
    if (!entry.linked) return;
    if (entry.prev !== undefined) entry.prev.next = entry.next;
    else head = entry.next;
    if (entry.next !== undefined) entry.next.prev = entry.prev;
    entry.prev = undefined;
    entry.next = undefined;
    entry.linked = false;
  };
  const periods = [responseMs, idleMs].filter((ms) => ms > 0);
  const sweepMs = Math.max(MIN_SWEEP_MS, Math.min(MAX_SWEEP_MS, ...periods.map((ms) => Math.floor(ms / 4))));
  let sweeper: NodeJS.Timeout | undefined;

  function sweep(): void {
    const now = performance.now();
    for (let entry = head, next: Watched | undefined; entry !== undefined; entry = next) {
      next = entry.next;
      const { proxyReq } = entry;
      if (proxyReq.destroyed || proxyReq.upgradeOrConnect === true) {
        // Gone, or upgraded: an open WebSocket has an idle timeout of its own.
        unlink(entry);
        continue;
      }
      const answered = proxyReq.res !== undefined && proxyReq.res !== null;
      if (!answered && now >= entry.responseDue) {
        fail(proxyReq, 'MP_ERR_RESPONSE_TIMEOUT', responseMs);
        continue;
      }
      if (idleMs === 0) continue;
      const bytes = socketBytes(proxyReq.socket);
      if (bytes !== entry.lastBytes) {
        entry.lastBytes = bytes;
        entry.lastActiveAt = now;
      } else if (now - entry.lastActiveAt >= idleMs) {
        fail(proxyReq, blameIdle(proxyReq) === 'client' ? 'MP_ERR_CLIENT_IDLE' : 'MP_ERR_IDLE_TIMEOUT', idleMs);
      }
    }
  }

  function forget(this: GuardedRequest): void {
    const entry = this[WATCHED];
    if (entry !== undefined) unlink(entry);
  }

  function watchConnect(proxyReq: ClientRequest): void {
    if (connectMs <= 0) return;
    const socket = proxyReq.socket as (Socket & { encrypted?: boolean }) | null;
    if (socket === null) {
      // http-proxy announces an upgrade request before the agent has given it a socket.
      proxyReq.once('socket', () => watchConnect(proxyReq));
      return;
    }
    if (!socket.connecting) return;
    const timer = setTimeout(fail, connectMs, proxyReq, 'MP_ERR_CONNECT_TIMEOUT', connectMs);
    const clear = (): void => clearTimeout(timer);
    // TLS counts as part of connecting: wait for the handshake, not just TCP.
    socket.once(socket.encrypted === true ? 'secureConnect' : 'connect', clear);
    proxyReq.once('close', clear);
  }

  const guard = function guard(proxyReq: ClientRequest, clientReq?: IncomingMessage): void {
    watchConnect(proxyReq);
    if (periods.length === 0) return;
    const now = performance.now();
    const entry: Watched = {
      proxyReq,
      responseDue: Infinity,
      lastBytes: -1,
      lastActiveAt: now,
      prev: undefined,
      next: undefined,
      linked: false,
    };
    if (responseMs > 0) {
      // The clock starts when the client has sent everything: a long upload is not a slow upstream.
      if (clientReq === undefined || clientReq.complete) entry.responseDue = now + responseMs;
      else clientReq.once('end', () => { entry.responseDue = performance.now() + responseMs; });
    }
    (proxyReq as GuardedRequest)[WATCHED] = entry;
    proxyReq.on('close', forget); // 'close' comes once: `on` spares the once-wrapper
    link(entry);
    if (sweeper === undefined) {
      sweeper = setInterval(sweep, sweepMs);
      sweeper.unref();
    }
  } as TimeoutGuard;
  guard.close = () => {
    if (sweeper !== undefined) clearInterval(sweeper);
    sweeper = undefined;
    while (head !== undefined) unlink(head);
  };
  return guard;
}
