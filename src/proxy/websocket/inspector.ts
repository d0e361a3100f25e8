/**
 * Watches one direction of a relayed WebSocket byte stream (RFC 6455 §5.2)
 * without touching it: counts data messages and their payload bytes, and
 * reports the first close frame's status code. Only frame headers are read;
 * payloads are skipped by arithmetic, never copied, except the two bytes of a
 * close code. Anything that is not valid framing marks the stream `broken` and
 * the rest of it is ignored: this runs on the data path and must never throw.
 *
 * RSV1 is accepted on the first frame of a data message, where
 * permessage-deflate (RFC 7692) sets it; the payload bytes counted are then
 * the compressed ones, as they crossed the wire. RSV1 on a continuation or a
 * control frame, and RSV2/RSV3 anywhere, mark the stream broken.
 */

export interface FrameEvents {
  /** A complete data message (text or binary, including fragmented ones: count once, when the FIN frame of the message arrives). payloadBytes = total payload bytes of the message. */
  onMessage(payloadBytes: number): void;
  /** The first close frame seen in this direction: its status code, or 1005 if it carries none. Called at most once. */
  onClose(code: number): void;
}

export interface FrameInspector {
  /**
   * Reads `chunk`. With `stopAtFrameEnd`, reading stops right after the first frame that ends in
   * it (a drain cuts the relay there); returns how many bytes were read.
   */
  push(chunk: Buffer, stopAtFrameEnd?: boolean): number;
  /** No frame is half-way through: a frame the proxy writes now cannot split one. */
  readonly atFrameBoundary: boolean;
  readonly broken: boolean;
}

const enum State {
  Header,
  Payload,
  CloseCode,
  Done,
}

const OP_CONTINUATION = 0x0;
const OP_CLOSE = 0x8;
const NO_STATUS = 1005;
/** 2^53 − 1 split at 32 bits: longer frames cannot be counted exactly (ws refuses them too). */
const MAX_HIGH_WORD = 0x1f_ffff;

/**
 * A stateful parser for ONE direction of a WebSocket byte stream. `masked` is
 * true for client→server (frames must be masked; unmask only what you need:
 * the 2-byte close code).
 */
class WebSocketFrameInspector implements FrameInspector {
  private readonly maskBit: number;
  private readonly header = new Uint8Array(14);
  private state = State.Header;
  private isBroken = false;
  private headerLength = 0;
  private headerNeeded = 2;
  /** Payload bytes of the current frame not yet seen. */
  private remaining = 0;
  /** A fragmented data message has started and its FIN frame has not been seen. */
  private fragmented = false;
  /** The current frame is the FIN frame of a data message: count the message once its payload has passed. */
  private completesMessage = false;
  private messageBytes = 0;
  private codeBytes = 0;
  private code = 0;
  /** Set when a frame has just ended, for push(…, stopAtFrameEnd). */
  private frameEnded = false;
  /** The payload being skipped is a close frame's reason: nothing after it is a frame. */
  private inCloseFrame = false;

  private fail(): void {
    this.isBroken = true;
    this.state = State.Done;
  }

  /** Checks the first two header bytes and works out the header's full length. */
  private startFrame(b0: number, b1: number): void {
    const opcode = b0 & 0x0f;
    const fin = (b0 & 0x80) !== 0;
    const rsv1 = (b0 & 0x40) !== 0;
    const len7 = b1 & 0x7f;
    let valid = (b0 & 0x30) === 0 && (b1 & 0x80) === this.maskBit;
    if (opcode >= OP_CLOSE) {
      valid &&= opcode <= 0xa && fin && !rsv1 && len7 <= 125;
    } else if (opcode === OP_CONTINUATION) {
      valid &&= this.fragmented && !rsv1;
    } else {
      valid &&= opcode <= 0x2 && !this.fragmented;
    }
    if (!valid) {
      this.fail();
      return;
    }
    this.headerNeeded = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (this.maskBit === 0 ? 0 : 4);
  }

  /** The whole header is in: decide what the payload is for. */
  private endHeader(): void {
    const b0 = this.header[0] as number;
    const len7 = (this.header[1] as number) & 0x7f;
    let length = len7;
    if (len7 === 126) {
      length = ((this.header[2] as number) << 8) | (this.header[3] as number);
    } else if (len7 === 127) {
      const high = (((this.header[2] as number) << 24) | ((this.header[3] as number) << 16) | ((this.header[4] as number) << 8) | (this.header[5] as number)) >>> 0;
      // The top bit set is forbidden by the RFC; beyond 2^53 − 1 the arithmetic would be inexact.
      if (high > MAX_HIGH_WORD) {
        this.fail();
        return;
      }
      const low = (((this.header[6] as number) << 24) | ((this.header[7] as number) << 16) | ((this.header[8] as number) << 8) | (this.header[9] as number)) >>> 0;
      length = high * 0x1_0000_0000 + low;
    }
    const opcode = b0 & 0x0f;
    this.remaining = length;
    this.headerLength = 0;
    this.headerNeeded = 2;
    if (opcode === OP_CLOSE) {
      if (length === 0) {
        this.state = State.Done;
        this.frameEnded = true;
        this.events.onClose(NO_STATUS);
      } else if (length === 1) {
        this.fail(); // a close body starts with a 2-byte code
      } else {
        this.codeBytes = 0;
        this.code = 0;
        this.state = State.CloseCode;
      }
      return;
    }
    if (opcode < OP_CLOSE) {
      this.messageBytes = opcode === OP_CONTINUATION ? this.messageBytes + length : length;
      this.completesMessage = (b0 & 0x80) !== 0;
      this.fragmented = !this.completesMessage;
    }
    this.state = State.Payload;
    if (length === 0) this.endFrame();
  }

  private endFrame(): void {
    if (this.inCloseFrame) {
      this.endCloseFrame();
      return;
    }
    this.state = State.Header;
    this.frameEnded = true;
    if (!this.completesMessage) return;
    this.completesMessage = false;
    const bytes = this.messageBytes;
    this.messageBytes = 0;
    this.events.onMessage(bytes);
  }

  /** Reads bytes from `pos`; returns where it stopped (the end, or right after a frame when asked). */
  private parse(chunk: Buffer, pos: number, stopAtFrameEnd: boolean): number {
    const end = chunk.length;
    this.frameEnded = false;
    while (pos < end && !(stopAtFrameEnd && this.frameEnded)) {
      switch (this.state) {
        case State.Header: {
          this.header[this.headerLength++] = chunk[pos++] as number;
          if (this.headerLength === 2) this.startFrame(this.header[0] as number, this.header[1] as number);
          if (this.headerLength === this.headerNeeded && this.state === State.Header) this.endHeader();
          break;
        }
        case State.Payload: {
          const step = Math.min(this.remaining, end - pos);
          pos += step;
          this.remaining -= step;
          if (this.remaining === 0) this.endFrame();
          break;
        }
        case State.CloseCode:
          this.readCloseCode(chunk[pos++] as number);
          break;
        case State.Done:
          return end;
      }
    }
    return pos;
  }

  private readCloseCode(raw: number): void {
    // A control frame's length fits in 7 bits, so its mask key is always header[2..5].
    const byte = this.maskBit === 0 ? raw : raw ^ (this.header[2 + this.codeBytes] as number);
    this.code = (this.code << 8) | byte;
    if (++this.codeBytes < 2) return;
    this.remaining -= 2;
    this.events.onClose(this.code);
    if (this.remaining === 0) {
      this.endCloseFrame();
      return;
    }
    // The reason text is skipped like any payload, so the frame's end is known.
    this.inCloseFrame = true;
    this.state = State.Payload;
  }

  /** Nothing a peer sends after its close frame is a frame. */
  private endCloseFrame(): void {
    this.state = State.Done;
    this.frameEnded = true;
  }


  constructor(
    masked: boolean,
    private readonly events: FrameEvents,
  ) {
    this.maskBit = masked ? 0x80 : 0;
  }

  push(chunk: Buffer, stopAtFrameEnd = false): number {
    if (this.state === State.Done) return chunk.length;
    try {
      return this.parse(chunk, 0, stopAtFrameEnd);
    } catch {
      // Only a throwing callback can land here; stop watching rather than break the relay.
      this.fail();
      return chunk.length;
    }
  }

  get atFrameBoundary(): boolean {
    return (this.state === State.Header && this.headerLength === 0) || (this.state === State.Done && !this.isBroken);
  }

  get broken(): boolean {
    return this.isBroken;
  }
}

export function createFrameInspector(masked: boolean, events: FrameEvents): FrameInspector {
  return new WebSocketFrameInspector(masked, events);
}

const REGISTERED_LABELS = new Map<number, string>();
for (let code = 1000; code <= 1015; code++) {
  if (code !== 1004) REGISTERED_LABELS.set(code, String(code));
}

/**
 * Bounded label for a close code: the RFC 6455 registered codes 1000–1003,
 * 1005–1015 as their number; 3000–4999 (application/library range) as
 * 'other'; undefined (TCP closed without any close frame) as '1006'; anything
 * else 'other'.
 */
export function closeCodeLabel(code: number | undefined): string {
  if (code === undefined) return '1006';
  return REGISTERED_LABELS.get(code) ?? 'other';
}
