/**
 * The end of an ending session: once one side has closed or half-closed (or the proxy sent its close
 * frames), the session gets CLOSE_GRACE_MS at a time for as long as bytes still move either way, and
 * both sockets are cut at the first interval of silence. Idle-based, like HAProxy's
 * `timeout client-fin`: a slow reader still gets the tail, a peer that never closes its side cannot
 * hold a file descriptor for ever.
 */
import type { Socket } from 'node:net';

export const CLOSE_GRACE_MS = 1_000;

function bytesMoved(sockets: readonly Socket[]): number {
  let bytes = 0;
  for (const socket of sockets) bytes += socket.bytesRead + socket.bytesWritten;
  return bytes;
}

export class Linger {
  private timer: NodeJS.Timeout | undefined;
  private lastBytes = -1;

  constructor(private readonly sockets: readonly Socket[]) {}

  start(): void {
    if (this.timer !== undefined) return;
    this.lastBytes = bytesMoved(this.sockets);
    this.timer = setInterval(this.cutIfSilent, CLOSE_GRACE_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
  }

  private readonly cutIfSilent = (): void => {
    const bytes = bytesMoved(this.sockets);
    if (bytes !== this.lastBytes) {
      this.lastBytes = bytes;
      return;
    }
    for (const socket of this.sockets) socket.destroy();
  };
}
