/**
 * Every WebSocket session of an app, from its upgrade request to its end:
 * found by client socket (http-proxy-3's events name the client socket) or,
 * between the upstream's 101 and http-proxy-3's 'open', by upstream socket.
 * It also runs the drain, since only it knows when the last session ended.
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { GOING_AWAY } from './frames.js';
import type { WebSocketSession } from './session.js';

export class SessionTable {
  private readonly sessions = new Map<Duplex, WebSocketSession>();
  private readonly opening = new Map<Socket, WebSocketSession>();
  private onEmpty: (() => void) | undefined;
  /** Set once the drain began: new upgrade requests are refused. */
  draining = false;

  add(session: WebSocketSession): void {
    this.sessions.set(session.client, session);
  }

  byClient(socket: unknown): WebSocketSession | undefined {
    return this.sessions.get(socket as Duplex);
  }

  /** The session's 101 was accepted: http-proxy-3's 'open' for `upstream` will follow. */
  awaitOpen(upstream: Socket, session: WebSocketSession): void {
    this.opening.set(upstream, session);
  }

  takeOpening(upstream: Socket): WebSocketSession | undefined {
    const session = this.opening.get(upstream);
    this.opening.delete(upstream);
    return session;
  }

  ended(session: WebSocketSession): void {
    this.sessions.delete(session.client);
    if (session.upstreamSocket !== undefined) this.opening.delete(session.upstreamSocket);
    if (this.sessions.size === 0) this.onEmpty?.();
  }

  openCount(): number {
    let open = 0;
    for (const session of this.sessions.values()) if (session.isOpen) open++;
    return open;
  }

  /**
   * Every session closes with 1001 (a handshake once it completes); resolves when the last has
   * ended, or at `graceMs`, when those left are aborted (503 for a handshake, cut for a session).
   */
  drain(graceMs: number): Promise<void> {
    this.draining = true;
    for (const session of this.sessions.values()) session.close(GOING_AWAY);
    return new Promise<void>((resolve) => {
      if (this.sessions.size === 0) {
        resolve();
        return;
      }
      const deadline = setTimeout(() => {
        for (const session of [...this.sessions.values()]) session.abort();
        resolve();
      }, graceMs);
      this.onEmpty = () => {
        clearTimeout(deadline);
        resolve();
      };
    });
  }
}
