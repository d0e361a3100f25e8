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
  /** The close frame's reason text: skipped, so the frame's end is known. */
  CloseReason,
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
export function createFrameInspector(masked: boolean, events: FrameEvents): FrameInspector {
  const header = new Uint8Array(14);
  const maskBit = masked ? 0x80 : 0;
  let state = State.Header;
  let broken = false;
  let headerLength = 0;
  let headerNeeded = 2;
  /** Payload bytes of the current frame not yet seen. */
  let remaining = 0;
  /** A fragmented data message has started and its FIN frame has not been seen. */
  let fragmented = false;
  /** The current frame is the FIN frame of a data message: count the message once its payload has passed. */
  let completesMessage = false;
  let messageBytes = 0;
  let codeBytes = 0;
  let code = 0;
  /** Set when a frame has just ended, for push(…, stopAtFrameEnd). */
  let frameEnded = false;

  function fail(): void {
    broken = true;
    state = State.Done;
  }

  /** Checks the first two header bytes and works out the header's full length. */
  function startFrame(b0: number, b1: number): void {
    const opcode = b0 & 0x0f;
    const fin = (b0 & 0x80) !== 0;
    const rsv1 = (b0 & 0x40) !== 0;
    const len7 = b1 & 0x7f;
    let valid = (b0 & 0x30) === 0 && (b1 & 0x80) === maskBit;
    if (opcode >= OP_CLOSE) {
      valid &&= opcode <= 0xa && fin && !rsv1 && len7 <= 125;
    } else if (opcode === OP_CONTINUATION) {
      valid &&= fragmented && !rsv1;
    } else {
      valid &&= opcode <= 0x2 && !fragmented;
    }
    if (!valid) {
      fail();
      return;
    }
    headerNeeded = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (maskBit === 0 ? 0 : 4);
  }

  /** The whole header is in: decide what the payload is for. */
  function endHeader(): void {
    const b0 = header[0] as number;
    const len7 = (header[1] as number) & 0x7f;
    let length = len7;
    if (len7 === 126) {
      length = ((header[2] as number) << 8) | (header[3] as number);
    } else if (len7 === 127) {
      const high = (((header[2] as number) << 24) | ((header[3] as number) << 16) | ((header[4] as number) << 8) | (header[5] as number)) >>> 0;
      // The top bit set is forbidden by the RFC; beyond 2^53 − 1 the arithmetic would be inexact.
      if (high > MAX_HIGH_WORD) {
        fail();
        return;
      }
      const low = (((header[6] as number) << 24) | ((header[7] as number) << 16) | ((header[8] as number) << 8) | (header[9] as number)) >>> 0;
      length = high * 0x1_0000_0000 + low;
    }
    const opcode = b0 & 0x0f;
    remaining = length;
    headerLength = 0;
    headerNeeded = 2;
    if (opcode === OP_CLOSE) {
      if (length === 0) {
        state = State.Done;
        frameEnded = true;
        events.onClose(NO_STATUS);
      } else if (length === 1) {
        fail(); // a close body starts with a 2-byte code
      } else {
        codeBytes = 0;
        code = 0;
        state = State.CloseCode;
      }
      return;
    }
    if (opcode < OP_CLOSE) {
      messageBytes = opcode === OP_CONTINUATION ? messageBytes + length : length;
      completesMessage = (b0 & 0x80) !== 0;
      fragmented = !completesMessage;
    }
    state = State.Payload;
    if (length === 0) endFrame();
  }

  function endFrame(): void {
    state = State.Header;
    frameEnded = true;
    if (!completesMessage) return;
    completesMessage = false;
    const bytes = messageBytes;
    messageBytes = 0;
    events.onMessage(bytes);
  }

  /** Reads bytes from `pos`; returns where it stopped (the end, or right after a frame when asked). */
  function parse(chunk: Buffer, pos: number, stopAtFrameEnd: boolean): number {
    const end = chunk.length;
    frameEnded = false;
    while (pos < end && !(stopAtFrameEnd && frameEnded)) {
      switch (state) {
        case State.Header: {
          header[headerLength++] = chunk[pos++] as number;
          if (headerLength === 2) startFrame(header[0] as number, header[1] as number);
          if (headerLength === headerNeeded && state === State.Header) endHeader();
          break;
        }
        case State.Payload: {
          const step = Math.min(remaining, end - pos);
          pos += step;
          remaining -= step;
          if (remaining === 0) endFrame();
          break;
        }
        case State.CloseCode:
          readCloseCode(chunk[pos++] as number);
          break;
        case State.CloseReason: {
          const step = Math.min(remaining, end - pos);
          pos += step;
          remaining -= step;
          if (remaining === 0) endCloseFrame();
          break;
        }
        case State.Done:
          return end;
      }
    }
    return pos;
  }

  function readCloseCode(raw: number): void {
    // A control frame's length fits in 7 bits, so its mask key is always header[2..5].
    const byte = maskBit === 0 ? raw : raw ^ (header[2 + codeBytes] as number);
    code = (code << 8) | byte;
    if (++codeBytes < 2) return;
    remaining -= 2;
    events.onClose(code);
    if (remaining === 0) endCloseFrame();
    else state = State.CloseReason;
  }

  /** Nothing a peer sends after its close frame is a frame. */
  function endCloseFrame(): void {
    state = State.Done;
    frameEnded = true;
  }

  return {
    push(chunk, stopAtFrameEnd = false) {
      if (state === State.Done) return chunk.length;
      try {
        return parse(chunk, 0, stopAtFrameEnd);
      } catch {
        // Only a throwing callback can land here; stop watching rather than break the relay.
        fail();
        return chunk.length;
      }
    },
    get atFrameBoundary() {
      return (state === State.Header && headerLength === 0) || (state === State.Done && !broken);
    },
    get broken() {
      return broken;
    },
  };
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
