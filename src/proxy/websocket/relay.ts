/**
 * One direction of an open WebSocket session: bytes read from one socket are
 * written to the other, unchanged and in order, with backpressure (the
 * reader pauses while the writer's buffer is full). Every chunk passes a
 * frame inspector on the way, which is how the relay knows where frames end:
 * asked to stop, it relays up to the end of the frame in flight, writes the
 * proxy's close frame there, and half-closes the writer, so the receiving
 * peer sees a whole frame and a close code rather than a torn stream.
 */
import type { Duplex } from 'node:stream';
import type { FrameInspector } from './inspector.js';

export type RelayPhase = 'relaying' | 'stopping' | 'stopped';

export class Relay {
  private phase: RelayPhase = 'relaying';
  private closingFrame: Buffer | undefined;

  constructor(
    private readonly from: Duplex,
    private readonly to: Duplex,
    private readonly inspector: FrameInspector,
  ) {}

  /** Starts reading; `pending` are bytes read from `from` before the relay existed, written first. */
  start(pending: readonly Buffer[] = []): void {
    for (const chunk of pending) this.relay(chunk);
    this.from.on('data', this.onData);
    this.from.on('end', this.onEnd);
    this.to.on('drain', this.onDrain);
    if (!this.to.writableNeedDrain) this.from.resume();
  }

  /** Finishes the frame in flight, then writes `frame` and half-closes the writer. */
  stopAtFrameBoundary(frame: Buffer): void {
    if (this.phase !== 'relaying') return;
    this.closingFrame = frame;
    this.phase = 'stopping';
    // A stream we cannot follow has no boundary to wait for: a torn frame is then unavoidable.
    if (this.inspector.atFrameBoundary || this.inspector.broken) this.stop();
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.phase === 'relaying') this.relay(chunk);
    else if (this.phase === 'stopping') this.relayUntilFrameEnd(chunk);
    // 'stopped': the peer was told we are closing; what it still sends is read (so its FIN is seen) and dropped.
  };

  private relay(chunk: Buffer): void {
    this.inspector.push(chunk);
    if (!this.to.write(chunk)) this.from.pause();
  }

  /** With backpressure as in `relay`: the rest of a large frame must not pile up for a peer that stopped reading. */
  private relayUntilFrameEnd(chunk: Buffer): void {
    const used = this.inspector.push(chunk, true);
    if (used > 0 && !this.to.write(used === chunk.length ? chunk : chunk.subarray(0, used))) this.from.pause();
    if (this.inspector.atFrameBoundary || this.inspector.broken) this.stop();
  }

  private stop(): void {
    this.phase = 'stopped';
    if (this.to.writable) this.to.end(this.closingFrame);
    this.from.resume();
  }

  /** The reader's peer half-closed: pass its FIN on once everything before it is written. */
  private readonly onEnd = (): void => {
    if (this.phase !== 'stopped' && this.to.writable) this.to.end();
    this.phase = 'stopped';
  };

  private readonly onDrain = (): void => {
    this.from.resume();
  };
}
