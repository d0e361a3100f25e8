/**
 * The protobuf wire format, as much of it as the Prometheus exposition needs
 * (io.prometheus.client.MetricFamily, client_model's metrics.proto): varints,
 * zigzag varints, doubles and length-delimited fields, written into one
 * growing buffer.
 *
 * A nested message's length is known only once it is written: `begin` leaves
 * room for the longest length varint (5 bytes covers 4 GiB), `end` writes the
 * real one and moves the message back over the unused bytes. One pass, no
 * per-field objects; the moves are small except once per family.
 */

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_DELIMITED = 2;
const LENGTH_ROOM = 5;

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
    this.buffer.writeDoubleLE(value, this.pos);
    this.pos += 8;
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

  /** Opens a length-delimited field (a message, or a packed run); close it with `end`. */
  begin(field: number): number {
    this.tag(field, WIRE_DELIMITED);
    return this.beginDelimited();
  }

  /** Opens a length-prefixed message without a tag: one MetricFamily of the delimited stream. */
  beginDelimited(): number {
    this.ensure(LENGTH_ROOM);
    const start = this.pos;
    this.pos += LENGTH_ROOM;
    return start;
  }

  end(start: number): void {
    const contentStart = start + LENGTH_ROOM;
    const length = this.pos - contentStart;
    const lengthBytes = varintSize(length);
    const at = this.pos;
    this.pos = start;
    this.rawVarint(length);
    if (lengthBytes < LENGTH_ROOM) this.buffer.copyWithin(this.pos, contentStart, at);
    this.pos = start + lengthBytes + length;
  }

  /** Appends packed zigzag varints (a `repeated sint64` field's content, between begin and end). */
  packedSint(value: number): void {
    this.rawVarint(zigzag(value));
  }

  /** What was written, copied out (the writer's buffer is reused or dropped). */
  finish(): Buffer {
    return Buffer.from(this.buffer.subarray(0, this.pos));
  }
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
