/**
 * Prometheus native (sparse, exponential) histogram buckets, kept beside a
 * histogram's classic buckets and fed by the same observations.
 *
 * Bucket `key` at schema s holds the values in (base^(key-1), base^key] with
 * base = 2^(2^-s); values at or below the zero threshold go to the zero bucket.
 * The proxy's histograms clamp their observations at 0 (a metric never breaks a
 * request), so only positive buckets exist.
 *
 * Storage is a dense window of counts from `offset` on: one array index per
 * observation, no map lookup on the hot path. When a series would hold more
 * than `maxBuckets` populated buckets (or a window wider than SPAN_FACTOR times
 * that, which bounds its memory), its schema drops by one: neighbouring buckets
 * merge pairwise, as client_golang does. Counts never move between the zero
 * bucket and the others, so count and sum stay exactly the classic histogram's.
 */

/** client_golang's default: 2^-128, far below any duration or size the proxy records. */
export const DEFAULT_ZERO_THRESHOLD = 2 ** -128;
export const MIN_SCHEMA = -4;
export const MAX_SCHEMA = 8;
/** A window may span this many times maxBuckets before the schema drops, whatever is populated. */
const SPAN_FACTOR = 4;

export interface NativeHistogramSettings {
  /** Resolution: base = 2^(2^-schema); 3 gives buckets about 9 % wide. */
  readonly schema: number;
  /** Populated buckets a series may hold before its schema is reduced. */
  readonly maxBuckets: number;
  readonly zeroThreshold: number;
}

/** The largest schema whose bucket growth factor 2^(2^-schema) is at most `factor` (client_golang's rule); undefined when factor <= 1 (off). */
export function schemaForFactor(factor: number): number | undefined {
  if (!(factor > 1)) return undefined;
  const schema = -Math.floor(Math.log2(Math.log2(factor))) | 0;
  return Math.min(MAX_SCHEMA, Math.max(MIN_SCHEMA, schema));
}

/** The settings of --native-histogram-bucket-factor and --native-histogram-max-buckets; undefined when off. */
export function nativeHistogramSettings(factor: number, maxBuckets: number): NativeHistogramSettings | undefined {
  const schema = schemaForFactor(factor);
  return schema === undefined ? undefined : { schema, maxBuckets, zeroThreshold: DEFAULT_ZERO_THRESHOLD };
}

/**
 * Upper bounds of the mantissa (in [0.5, 1)) for each bucket of one power of two, per positive
 * schema: 2^(i/2^s) / 2. Within 2 ulps of client_golang's table (itself computed with Go's Exp2,
 * not correctly rounded): only a value that close to a boundary can land in the neighbouring bucket.
 */
const MANTISSA_BOUNDS: ReadonlyArray<Float64Array> = Array.from({ length: MAX_SCHEMA + 1 }, (_, schema) => {
  const n = 2 ** schema;
  const bounds = new Float64Array(n);
  for (let i = 0; i < n; i++) bounds[i] = 2 ** (i / n) / 2;
  return bounds;
});

export function mantissaBounds(schema: number): Float64Array {
  return MANTISSA_BOUNDS[schema] as Float64Array;
}

const scratch = new Float64Array(1);
const scratchBits = new Uint32Array(scratch.buffer);
const HIGH = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0;

/**
 * The bucket key of a finite value above the zero threshold (a normal double: the threshold is far
 * above the subnormals). Like Go's math.Frexp: v = frac × 2^exp with frac in [0.5, 1).
 */
export function bucketKey(value: number, schema: number): number {
  scratch[0] = value;
  const high = scratchBits[HIGH] as number;
  const exp = ((high >>> 20) & 0x7ff) - 1022;
  if (schema > 0) {
    // frac: the same mantissa with the exponent of 0.5.
    scratchBits[HIGH] = (high & 0x800fffff) | (1022 << 20);
    const frac = scratch[0];
    const bounds = MANTISSA_BOUNDS[schema] as Float64Array;
    // The first bound >= frac (bounds has 2..256 entries; a binary search).
    let lo = 0;
    let hi = bounds.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((bounds[mid] as number) < frac) lo = mid + 1;
      else hi = mid;
    }
    return lo + (exp - 1) * bounds.length;
  }
  // frac == 0.5 means an exact power of two, which closes the bucket below.
  const exactPower = (high & 0xfffff) === 0 && scratchBits[1 - HIGH] === 0;
  const key = exactPower ? exp - 1 : exp;
  const shift = -schema;
  return (key + (1 << shift) - 1) >> shift;
}

/** The native half of one histogram series. */
export interface NativeBuckets {
  schema: number;
  zeroCount: number;
  /** Key of counts[0]. */
  offset: number;
  /** Counts per bucket from `offset` on; zeros inside the window are empty buckets. */
  counts: Float64Array;
  /** Buckets with a count above zero. */
  populated: number;
}

export function createNativeBuckets(schema: number): NativeBuckets {
  return { schema, zeroCount: 0, offset: 0, counts: new Float64Array(0), populated: 0 };
}

/** Counts one observation; `value` is finite and >= 0. */
export function observeNative(native: NativeBuckets, settings: NativeHistogramSettings, value: number): void {
  if (value <= settings.zeroThreshold) {
    native.zeroCount += 1;
    return;
  }
  addToBucket(native, settings.maxBuckets, bucketKey(value, native.schema), 1);
}

/** Adds `count` to bucket `key` (at the series' schema), then reduces the schema while the series is over its limits. */
export function addToBucket(native: NativeBuckets, maxBuckets: number, key: number, count: number): void {
  let index = key - native.offset;
  if (index < 0 || index >= native.counts.length) index = widen(native, key);
  const before = native.counts[index] as number;
  native.counts[index] = before + count;
  if (before === 0 && count !== 0) native.populated += 1;
  while (overLimits(native, maxBuckets) && native.schema > MIN_SCHEMA) reduceSchema(native, native.schema - 1);
}

function overLimits(native: NativeBuckets, maxBuckets: number): boolean {
  return native.populated > maxBuckets || native.counts.length > maxBuckets * SPAN_FACTOR;
}

/** Grows the window to include `key`, with some room on the growing side; returns key's index. */
function widen(native: NativeBuckets, key: number): number {
  const { counts, offset } = native;
  if (counts.length === 0) {
    native.counts = new Float64Array(8);
    native.offset = key - 4;
    return 4;
  }
  const first = Math.min(offset, key);
  const last = Math.max(offset + counts.length - 1, key);
  const room = Math.max(4, (last - first + 1) >> 2);
  const newOffset = key < offset ? first - room : offset;
  const length = last - newOffset + 1 + (key < offset ? 0 : room);
  const grown = new Float64Array(length);
  grown.set(counts, offset - newOffset);
  native.counts = grown;
  native.offset = newOffset;
  return key - newOffset;
}

/** At the lower schema, bucket k of the higher one lies in bucket ceil(k / 2^(from - to)). */
export function keyAtSchema(key: number, from: number, to: number): number {
  const shift = from - to;
  // `| 0` turns ceil's -0 (for keys -1 .. -(2^shift - 1)) into 0.
  return shift === 0 ? key : Math.ceil(key / 2 ** shift) | 0;
}

/** Merges buckets down to schema `to` (< native.schema), keeping every count. */
export function reduceSchema(native: NativeBuckets, to: number): void {
  const from = native.schema;
  const { counts, offset } = native;
  native.schema = to;
  if (counts.length === 0) return;
  const first = keyAtSchema(offset, from, to);
  const last = keyAtSchema(offset + counts.length - 1, from, to);
  const merged = new Float64Array(last - first + 1);
  let populated = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i] as number;
    if (c === 0) continue;
    const at = keyAtSchema(offset + i, from, to) - first;
    if (merged[at] === 0) populated++;
    merged[at] = (merged[at] as number) + c;
  }
  native.counts = merged;
  native.offset = first;
  native.populated = populated;
}

/** Adds `from` into `into` (e.g. two workers' series), at the lower of their schemas. */
export function mergeNative(into: NativeBuckets, from: Readonly<NativeBuckets>, maxBuckets: number): void {
  if (from.schema < into.schema) reduceSchema(into, from.schema);
  into.zeroCount += from.zeroCount;
  for (let i = 0; i < from.counts.length; i++) {
    const c = from.counts[i] as number;
    if (c !== 0) addToBucket(into, maxBuckets, keyAtSchema(from.offset + i, from.schema, into.schema), c);
  }
}

export function copyNative(native: Readonly<NativeBuckets>): NativeBuckets {
  return { ...native, counts: native.counts.slice() };
}

/** Visits the populated runs as Prometheus wants them: spans (offset from the previous span's end, length) and counts. */
export function forEachSpan(native: Readonly<NativeBuckets>, visit: (gap: number, start: number, length: number) => void): void {
  const { counts, offset } = native;
  let previousEnd = 0;
  let first = true;
  let i = 0;
  while (i < counts.length) {
    if (counts[i] === 0) {
      i++;
      continue;
    }
    let end = i;
    // A span runs over populated buckets; Prometheus also allows empty ones inside, and a single
    // empty bucket costs fewer bytes as a zero delta than as a new span.
    while (end + 1 < counts.length && (counts[end + 1] !== 0 || (end + 2 < counts.length && counts[end + 2] !== 0))) end++;
    const key = offset + i;
    visit(first ? key : key - previousEnd, i, end - i + 1);
    first = false;
    previousEnd = key + (end - i + 1);
    i = end + 1;
  }
}
