/**
 * The protobuf wire format, as much of it as the Prometheus exposition needs
 * (io.prometheus.client.MetricFamily, client_model's metrics.proto): varints,
 * zigzag varints, doubles and length-delimited fields, written into one
 * growing buffer.
 *
 * A nested message's length is known only once it is written: `begin` leaves
 * room for the length varint its caller expects (2 bytes, a message under
 * 16 KiB, unless told otherwise), `end` writes the real one and moves the
 * message only when it needed another size. One pass, no per-field objects;
 * the encoding stays canonical (shortest varints), whatever the guess.
 */

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_DELIMITED = 2;
/** Bytes left for a length by default: lengths up to 16383. */
const DEFAULT_ROOM = 2;
/** For a MetricFamily of the stream: up to 256 MiB without a move. */
const FAMILY_ROOM = 4;
/** A handle from `begin` is start × ROOM_SLOTS + room. */
const ROOM_SLOTS = 8;

const scratch = new Float64Array(1);
const scratchBytes = new Uint8Array(scratch.buffer);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export class ProtoWriter {
  private buffer: Buffer;
  private pos = 0;

  constructor(initialBytes = 64 * 1024) {
    this.buffer = Buffer.allocUnsafe(initialBytes);
  }

  private ensure(bytes: number): void {
    if (this.pos + bytes <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.pos + bytes));
    this.buffer.copy(grown, 0, 0, this.pos);
    this.buffer = grown;
  }

  /** An unsigned varint; `value` is a whole number from 0 to 2^53. */
  private rawVarint(value: number): void {
    this.ensure(10);
    const buf = this.buffer;
    let v = value;
    if (v < 0x80000000) {
      while (v > 0x7f) {
        buf[this.pos++] = (v & 0x7f) | 0x80;
        v >>>= 7;
      }
    } else {
      while (v > 0x7f) {
        buf[this.pos++] = (v % 128) | 0x80;
        v = Math.floor(v / 128);
      }
    }
    buf[this.pos++] = v;
  }

  private tag(field: number, wire: number): void {
    this.rawVarint((field << 3) | wire);
  }

  /** uint64/uint32/enum field. */
  uint(field: number, value: number): void {
    this.tag(field, WIRE_VARINT);
    this.rawVarint(value);
  }

  /** int64 field (non-negative values only here: timestamps). */
  int(field: number, value: number): void {
    this.uint(field, value);
  }

  /** sint32/sint64 field, zigzag-encoded. */
  sint(field: number, value: number): void {
    this.tag(field, WIRE_VARINT);
    this.rawVarint(zigzag(value));
  }

  double(field: number, value: number): void {
    this.tag(field, WIRE_FIXED64);
    this.ensure(8);
    scratch[0] = value;
    this.fixed64(scratchBytes);
  }

  /** Eight bytes, little-endian whatever the machine: a double already laid out as the wire wants it. */
  private fixed64(bytes: Uint8Array): void {
    const buf = this.buffer;
    let pos = this.pos;
    if (LITTLE_ENDIAN) for (let i = 0; i < 8; i++) buf[pos++] = bytes[i] as number;
    else for (let i = 7; i >= 0; i--) buf[pos++] = bytes[i] as number;
    this.pos = pos;
  }

  /**
   * A message known to be short (under 128 bytes) with two fields: a uint64 then a double, as a
   * classic histogram's Bucket (cumulative_count, upper_bound) is. `doubleField` and the bytes of
   * the double come ready-made: `bound` is its 8 bytes as the machine holds them (doubleBytes).
   */
  uintDoubleMessage(field: number, uintField: number, value: number, doubleField: number, bound: Uint8Array): void {
    this.ensure(24);
    const length = 1 + varintSize(value) + 1 + 8;
    this.tag(field, WIRE_DELIMITED);
    this.buffer[this.pos++] = length;
    this.tag(uintField, WIRE_VARINT);
    this.rawVarint(value);
    this.tag(doubleField, WIRE_FIXED64);
    this.fixed64(bound);
  }

  string(field: number, value: string): void {
    this.tag(field, WIRE_DELIMITED);
    if (value.length < 0x80 && isAscii(value)) {
      this.rawVarint(value.length);
      this.ensure(value.length);
      this.pos += this.buffer.write(value, this.pos, 'latin1');
      return;
    }
    const bytes = Buffer.byteLength(value);
    this.rawVarint(bytes);
    this.ensure(bytes);
    this.pos += this.buffer.write(value, this.pos, 'utf8');
  }

  /** Bytes already encoded (a cached run of fields), copied as they are. */
  raw(bytes: Uint8Array): void {
    this.ensure(bytes.length);
    this.buffer.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  /**
   * Opens a length-delimited field (a message, or a packed run); close it with `end`. `room`: the
   * bytes its length is expected to take (1: under 128 bytes, 2: under 16 KiB); a wrong guess
   * costs a move of the message, not a wrong encoding.
   */
  begin(field: number, room = DEFAULT_ROOM): number {
    this.tag(field, WIRE_DELIMITED);
    return this.reserve(room);
  }

  /** Opens a length-prefixed message without a tag: one MetricFamily of the delimited stream. */
  beginDelimited(): number {
    return this.reserve(FAMILY_ROOM);
  }

  private reserve(room: number): number {
    this.ensure(room);
    const start = this.pos;
    this.pos += room;
    return start * ROOM_SLOTS + room;
  }

  end(handle: number): void {
    const room = handle % ROOM_SLOTS;
    const start = (handle - room) / ROOM_SLOTS;
    const contentStart = start + room;
    const length = this.pos - contentStart;
    const lengthBytes = varintSize(length);
    if (lengthBytes !== room) {
      // The guess was wrong: the message moves to just after its real length.
      this.ensure(lengthBytes - room);
      this.buffer.copyWithin(start + lengthBytes, contentStart, this.pos);
    }
    this.pos = start;
    this.rawVarint(length);
    this.pos = start + lengthBytes + length;
  }

  /**
   * Appends `values[from..to)` as packed zigzag varints (a `repeated sint64` field's content,
   * between begin and end) of their deltas, the first taken from
   * `previous` (a native histogram's bucket counts); returns the last value, for the next run.
   */
  packedDeltas(values: ArrayLike<number>, from: number, to: number, previous: number): number {
    this.ensure((to - from) * 10);
    let last = previous;
    for (let i = from; i < to; i++) {
      const value = values[i] as number;
      const delta = zigzag(value - last);
      last = value;
      if (delta < 0x80) this.buffer[this.pos++] = delta;
      else this.rawVarint(delta);
    }
    return last;
  }

  /** What was written, copied out into a buffer of its size (the writer's may be much larger). */
  finish(): Buffer {
    return Buffer.from(this.buffer.subarray(0, this.pos));
  }

  /**
   * What was written, for a writer dropped after it: a view of its buffer when that is about the
   * output's size (a writer sized after the last render), else a copy, so that the output does not
   * hold on to a buffer that doubled its way up.
   */
  finishDocument(): Buffer {
    const view = this.buffer.subarray(0, this.pos);
    return (this.buffer.length - this.pos) * 4 > this.buffer.length ? Buffer.from(view) : view;
  }
}

/** The 8 bytes of a double as this machine holds it, for ProtoWriter's ready-made doubles. */
export function doubleBytes(value: number): Uint8Array {
  scratch[0] = value;
  return scratchBytes.slice();
}

function zigzag(value: number): number {
  return value >= 0 ? value * 2 : -value * 2 - 1;
}

function varintSize(value: number): number {
  let size = 1;
  let v = value;
  while (v > 0x7f) {
    v = Math.floor(v / 128);
    size++;
  }
  return size;
}

function isAscii(value: string): boolean {
  for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) > 0x7f) return false;
  return true;
}

/** Fields written once and copied on every scrape (a series' labels): encoded with a throwaway writer. */
export function encodeOnce(write: (w: ProtoWriter) => void): Buffer {
  const writer = new ProtoWriter(256);
  write(writer);
  return writer.finish();
}
