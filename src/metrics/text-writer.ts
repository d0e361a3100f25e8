/**
 * The text exposition formats written straight into bytes: one growing buffer,
 * pieces that never change (a series' labels, a bucket's `le="…"} `) copied in
 * as bytes encoded once, and the numbers that do change written digit by digit.
 *
 * Why not strings: a full route budget is some 125 000 lines and 20 MiB of
 * text. Built as template strings, joined, then copied into a Buffer for the
 * socket, it made three copies of the whole document and a garbage collection
 * that cost as much as the formatting (and raised the process's peak memory by
 * hundreds of MiB across a few scrapes). Here the document is written once, in
 * the buffer that goes to the socket.
 */

/** Strings up to this length are copied char by char: cheaper than a call into the Buffer binding. */
const SHORT = 48;
/** A document up to this size is returned as a view of its buffer, whatever the slack. */
const SMALL_COPY = 64 * 1024;

export class TextWriter {
  private buffer: Buffer;
  private pos = 0;

  /** `sizeHint`: the bytes expected (the size of the last render), so that the buffer seldom grows. */
  constructor(sizeHint = 16 * 1024) {
    this.buffer = Buffer.allocUnsafe(Math.max(256, sizeHint));
  }

  get length(): number {
    return this.pos;
  }

  private ensure(bytes: number): void {
    if (this.pos + bytes <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.pos + bytes));
    this.buffer.copy(grown, 0, 0, this.pos);
    this.buffer = grown;
  }

  /** One ASCII character, by code. */
  byte(code: number): void {
    this.ensure(1);
    this.buffer[this.pos++] = code;
  }

  /** Bytes encoded once (a series' labels, a bucket's bound), copied as they are. */
  bytes(bytes: Uint8Array): void {
    this.ensure(bytes.length);
    this.buffer.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  /** Any string, as UTF-8. */
  string(value: string): void {
    const n = value.length;
    if (n <= SHORT) {
      this.ensure(n);
      const buf = this.buffer;
      let pos = this.pos;
      let i = 0;
      for (; i < n; i++) {
        const code = value.charCodeAt(i);
        if (code > 0x7f) break;
        buf[pos++] = code;
      }
      this.pos = pos;
      if (i === n) return;
      // Not ASCII after all: the rest as UTF-8.
      this.utf8(value.slice(i));
      return;
    }
    this.utf8(value);
  }

  private utf8(value: string): void {
    // At most 3 bytes per UTF-16 code unit.
    this.ensure(value.length * 3);
    this.pos += this.buffer.write(value, this.pos, 'utf8');
  }

  /**
   * A number as `String(value)` spells it, which is how the text formats write counts: whole
   * numbers digit by digit without a string, anything else (fractions, negatives, huge values)
   * through `String`.
   */
  integer(value: number): void {
    if (!(value >= 0 && value <= Number.MAX_SAFE_INTEGER && Math.floor(value) === value)) {
      this.string(String(value));
      return;
    }
    this.ensure(16);
    const buf = this.buffer;
    if (value < 10) {
      buf[this.pos++] = 48 + value;
      return;
    }
    let digits = 1;
    for (let rest = value; rest >= 10; rest = Math.floor(rest / 10)) digits++;
    let at = this.pos + digits;
    this.pos = at;
    for (let rest = value; at > this.pos - digits; rest = Math.floor(rest / 10)) buf[--at] = 48 + (rest % 10);
  }

  /**
   * What was written: a view of the buffer (the writer is dropped after it) when the buffer is
   * about its size, as it is when sized after the last render; else a copy, so that the body does
   * not hold on to a buffer that doubled its way up.
   */
  finish(): Buffer {
    const view = this.buffer.subarray(0, this.pos);
    return this.pos > SMALL_COPY && (this.buffer.length - this.pos) * 4 > this.buffer.length ? Buffer.from(view) : view;
  }
}

/** Bytes of a string that is written on every scrape and never changes. */
export function encoded(text: string): Buffer {
  return Buffer.from(text, 'utf8');
}

/** Numbers as prom-client writes them, except NaN, which it spells `Nan` (Prometheus reads both). */
export function formatNumber(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

/** formatNumber(value), written without a string when it is a whole number. */
export function writeNumber(w: TextWriter, value: number): void {
  if (Number.isFinite(value)) w.integer(value);
  else w.string(formatNumber(value));
}

export const COMMA = 0x2c;
const CLOSE_VALUE = encoded('} ');

/** The bytes that open a sample line of a metric name, with labels (`\nname{`) and without (`\nname `). */
export interface LineOpeners {
  readonly labelled: Buffer;
  readonly bare: Buffer;
}

export function lineOpeners(name: string): LineOpeners {
  return { labelled: encoded(`\n${name}{`), bare: encoded(`\n${name} `) };
}

/** Opens a sample line: `\nname{labels} ` or `\nname `. */
export function openLine(w: TextWriter, opener: LineOpeners, labels: Buffer | undefined): void {
  if (labels === undefined) {
    w.bytes(opener.bare);
    return;
  }
  w.bytes(opener.labelled);
  w.bytes(labels);
  w.bytes(CLOSE_VALUE);
}

/** A series' label text as bytes, encoded at its first text scrape; undefined without labels. */
export function textLabelsOf(series: { readonly labelText: string; textLabels: Buffer | undefined }): Buffer | undefined {
  if (series.labelText === '') return undefined;
  series.textLabels ??= encoded(series.labelText);
  return series.textLabels;
}

/** Label values as the text formats require them: backslash, double quote and newline escaped. */
export function escapeLabelValue(value: string): string {
  return /[\\"\n]/.test(value) ? value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') : value;
}

/** HELP text: backslash and newline escaped; OpenMetrics escapes double quotes too (the text format must not). */
export function escapeHelp(help: string, openMetrics: boolean): string {
  const escaped = help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
  return openMetrics ? escaped.replace(/"/g, '\\"') : escaped;
}

/** `a="1",b="2"`: the label text of a series, escaped, built once per series. */
export function labelText(names: readonly string[], values: readonly string[]): string {
  let text = '';
  for (let i = 0; i < names.length; i++) {
    text += `${i === 0 ? '' : ','}${names[i] as string}="${escapeLabelValue(values[i] ?? '')}"`;
  }
  return text;
}
