/**
 * Requests queued behind a pipelined response. Node never closes such a
 * response when its connection dies, so the connection's 'close' has to
 * finish their exchanges: one listener per connection however deep the
 * pipeline (a listener per request would trip MaxListenersExceededWarning).
 * Pipelining is rare, so a WeakMap lookup here costs the hot path nothing.
 */
import type { Socket } from 'node:net';

const queuedBehind = new WeakMap<Socket, Set<() => void>>();

function finishQueued(this: Socket): void {
  const queued = queuedBehind.get(this);
  if (queued === undefined) return;
  queuedBehind.delete(this);
  for (const finish of queued) finish();
}

/** Calls `finish` when `socket` closes, unless `forgetQueued` came first. */
export function finishWhenClosed(socket: Socket, finish: () => void): void {
  let queued = queuedBehind.get(socket);
  if (queued === undefined) {
    queued = new Set();
    queuedBehind.set(socket, queued);
    socket.once('close', finishQueued);
  }
  queued.add(finish);
}

export function forgetQueued(socket: Socket, finish: () => void): void {
  queuedBehind.get(socket)?.delete(finish);
}
