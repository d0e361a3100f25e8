/**
 * The end of an ending session: once one side has closed or half-closed (or the proxy sent its close
 * frames), the session gets CLOSE_GRACE_MS at a time for as long as bytes still move either way, and
 * both sockets are cut at the first interval of silence. Idle-based, like HAProxy's
 * `timeout client-fin`: a slow reader still gets the tail, a peer that never closes its side cannot
 * hold a file descriptor for ever.
 *
 * Moving means read from a peer, or taken by the kernel for a peer: not merely queued in the socket.
 * `bytesWritten` counts a byte the moment it is written to the socket, so a tail queued for a peer
 * that stopped reading looked like progress for as long as anything was still being queued, and a
 * tail queued at once looked like silence while a slow reader drained it. Bytes the kernel has taken
 * are those of completed writes (`bytesWritten - writableLength`) plus what libuv has already
 * passed on of the write in flight: Node hands buffered chunks to libuv as one write, megabytes
 * long, and `writableLength` drops only when all of it is through, so the progress inside it is
 * read from libuv's `writeQueueSize`, as Node's own socket timeout does (net.js `_onTimeout`).
 * What the kernel holds when the sockets are cut is still delivered, then a FIN.
 */
import type { Socket } from 'node:net';

export const CLOSE_GRACE_MS = 1_000;

/** Three readings per socket; any change between two checks is progress. */
const READINGS = 3;

/** The libuv handle under a socket: undocumented, hence read defensively (absent once closed). */
interface StreamHandle {
  readonly writeQueueSize?: unknown;
}

/** Bytes of the write in flight that libuv has not yet passed to the kernel. */
function unsentInFlight(socket: Socket): number {
  const handle = (socket as unknown as { readonly _handle?: StreamHandle | null })._handle;
  const size = handle?.writeQueueSize;
  return typeof size === 'number' ? size : 0;
}

function readProgress(sockets: readonly Socket[], into: number[]): void {
  sockets.forEach((socket, i) => {
    const at = i * READINGS;
    into[at] = socket.bytesRead;
    into[at + 1] = socket.bytesWritten - socket.writableLength;
    into[at + 2] = unsentInFlight(socket);
  });
}

export class Linger {
  private timer: NodeJS.Timeout | undefined;
  private last: number[];
  private now: number[];

  constructor(private readonly sockets: readonly Socket[]) {
    this.last = new Array<number>(sockets.length * READINGS).fill(0);
    this.now = new Array<number>(sockets.length * READINGS).fill(0);
  }

  start(): void {
    if (this.timer !== undefined) return;
    readProgress(this.sockets, this.last);
    this.timer = setInterval(this.cutIfSilent, CLOSE_GRACE_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
  }

  private readonly cutIfSilent = (): void => {
    readProgress(this.sockets, this.now);
    if (this.now.some((value, i) => value !== this.last[i])) {
      [this.last, this.now] = [this.now, this.last];
      return;
    }
    for (const socket of this.sockets) socket.destroy();
  };
}
