/**
 * The response and idle timeouts of HTTP exchanges forwarded with undici. The
 * connect timeout is the pool's, per new connection; WebSocket handshakes, far
 * fewer, have timers of their own (websocket/handshake-timeouts.ts).
 *
 * The hot path pays no timer: exchanges sit in an intrusive doubly linked
 * list (the links are fields of the exchange itself, so watching one
 * allocates nothing), and one sweep per app walks it four times per shortest
 * period (at most once a second). A timeout fires at most two sweeps late.
 * Per-request timers cost measurable CPU, and a Set that takes and drops a
 * young entry per request tripled GC time per request (`node --trace-gc`).
 */
import { performance } from 'node:perf_hooks';
import type { UpstreamTimeoutCode } from '../errors.js';

export interface SweepTimeouts {
  /** From the end of the client's request to the upstream's response headers; 0 = off. */
  readonly responseMs: number;
  /** No bytes moving either way; 0 = off. */
  readonly idleMs: number;
}

/** What the sweep needs of an exchange. */
export interface Watched {
  /** performance.now() by which the response headers must have come; Infinity while the upload runs. */
  responseDue: number;
  /** `progress()` at the last sweep, and when it last changed. */
  lastProgress: number;
  lastActiveAt: number;
  prevWatched: Watched | undefined;
  nextWatched: Watched | undefined;
  watched: boolean;
  /** The response headers have come: only the idle timeout applies from here on. */
  readonly answered: boolean;
  /** Bytes moved so far, either way. */
  progress(): number;
  /** Whose silence an idle timeout caught: a stalled client is not the upstream's fault. */
  idleBlame(): 'client' | 'upstream';
  /** Ends the exchange for this timeout. */
  expire(code: UpstreamTimeoutCode, ms: number): void;
}

export interface ExchangeSweep {
  readonly timeouts: SweepTimeouts;
  watch(entry: Watched): void;
  unwatch(entry: Watched): void;
  /** Stops the sweep (the app is closing). */
  close(): void;
}

const MAX_SWEEP_MS = 1_000;
const MIN_SWEEP_MS = 5;

/** The watched exchanges, linked through their own fields: adding or removing one allocates nothing. */
class WatchList {
  head: Watched | undefined = undefined;

  add(entry: Watched): void {
    entry.nextWatched = this.head;
    if (this.head !== undefined) this.head.prevWatched = entry;
    this.head = entry;
    entry.watched = true;
  }

  remove(entry: Watched): void {
    if (!entry.watched) return;
    if (entry.prevWatched !== undefined) entry.prevWatched.nextWatched = entry.nextWatched;
    else this.head = entry.nextWatched;
    if (entry.nextWatched !== undefined) entry.nextWatched.prevWatched = entry.prevWatched;
    entry.prevWatched = undefined;
    entry.nextWatched = undefined;
    entry.watched = false;
  }
}

/** Expires `entry` if one of its timeouts has run out at `now`: it then leaves the list first. */
function check(list: WatchList, entry: Watched, now: number, { responseMs, idleMs }: SweepTimeouts): void {
  if (!entry.answered && now >= entry.responseDue) {
    list.remove(entry);
    entry.expire('MP_ERR_RESPONSE_TIMEOUT', responseMs);
    return;
  }
  if (idleMs === 0) return;
  const progress = entry.progress();
  if (progress !== entry.lastProgress) {
    entry.lastProgress = progress;
    entry.lastActiveAt = now;
  } else if (now - entry.lastActiveAt >= idleMs) {
    list.remove(entry);
    entry.expire(entry.idleBlame() === 'client' ? 'MP_ERR_CLIENT_IDLE' : 'MP_ERR_IDLE_TIMEOUT', idleMs);
  }
}

export function createExchangeSweep(timeouts: SweepTimeouts): ExchangeSweep {
  const periods = [timeouts.responseMs, timeouts.idleMs].filter((ms) => ms > 0);
  const sweepMs = Math.max(MIN_SWEEP_MS, Math.min(MAX_SWEEP_MS, ...periods.map((ms) => Math.floor(ms / 4))));
  const list = new WatchList();
  let sweeper: NodeJS.Timeout | undefined;

  function sweep(): void {
    const now = performance.now();
    for (let entry = list.head, next: Watched | undefined; entry !== undefined; entry = next) {
      next = entry.nextWatched;
      check(list, entry, now, timeouts);
    }
  }

  return {
    timeouts,
    watch(entry) {
      if (periods.length === 0 || entry.watched) return;
      entry.lastProgress = -1;
      entry.lastActiveAt = performance.now();
      list.add(entry);
      if (sweeper === undefined) {
        sweeper = setInterval(sweep, sweepMs);
        sweeper.unref();
      }
    },
    unwatch: (entry) => list.remove(entry),
    close() {
      if (sweeper !== undefined) clearInterval(sweeper);
      sweeper = undefined;
      while (list.head !== undefined) list.remove(list.head);
    },
  };
}
