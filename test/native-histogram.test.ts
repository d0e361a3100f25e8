/**
 * Native histogram buckets: the bucket of a value at every schema, schema
 * reduction and merging that never lose an observation, and the agreement of
 * native and classic buckets on count and sum.
 */
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { HistogramFamily } from '../src/metrics/families.js';
import {
  DEFAULT_ZERO_THRESHOLD,
  MAX_SCHEMA,
  MIN_SCHEMA,
  type NativeBuckets,
  type NativeHistogramSettings,
  bucketKey,
  copyNative,
  createNativeBuckets,
  mantissaBounds,
  mergeNative,
  nativeHistogramSettings,
  observeNative,
  reduceSchema,
  schemaForFactor,
} from '../src/metrics/native-histogram.js';

/** A deterministic stream of values over many orders of magnitude (no Math.random: a failure must replay). */
function* values(count: number, seed = 1): Generator<number> {
  let x = seed;
  for (let i = 0; i < count; i++) {
    x = (x * 48271) % 2147483647;
    const exponent = (x % 4000) / 100 - 20; // 2^-20 … 2^20
    yield 2 ** exponent * (1 + ((x >>> 8) % 1000) / 1000);
  }
}

function settings(schema: number, maxBuckets = 100_000): NativeHistogramSettings {
  return { schema, maxBuckets, zeroThreshold: DEFAULT_ZERO_THRESHOLD };
}

/** key → count, populated buckets only. */
function bucketsOf(native: NativeBuckets): Map<number, number> {
  const out = new Map<number, number>();
  native.counts.forEach((c, i) => c !== 0 && out.set(native.offset + i, c));
  return out;
}

function observeAll(schema: number, input: Iterable<number>, maxBuckets?: number): NativeBuckets {
  const native = createNativeBuckets(schema);
  const s = settings(schema, maxBuckets);
  for (const v of input) observeNative(native, s, v);
  return native;
}

const total = (native: NativeBuckets): number => [...bucketsOf(native).values()].reduce((a, b) => a + b, 0) + native.zeroCount;

describe('bucketKey', () => {
  it.each(Array.from({ length: MAX_SCHEMA - MIN_SCHEMA + 1 }, (_, i) => MIN_SCHEMA + i))(
    'at schema %i puts every value in the bucket whose bounds hold it: (base^(k-1), base^k]',
    (schema) => {
      const base = 2 ** (2 ** -schema);
      for (const v of values(2_000, schema + 10)) {
        const key = bucketKey(v, schema);
        // Relative slack of 1e-12: the bounds are computed here with pow, the keys exactly.
        expect(v, `value ${v} key ${key}`).toBeGreaterThan(base ** (key - 1) * (1 - 1e-12));
        expect(v, `value ${v} key ${key}`).toBeLessThanOrEqual(base ** key * (1 + 1e-12));
      }
    },
  );

  it('closes a bucket at a power of two: 2^k is the upper bound of its bucket, at every schema', () => {
    for (let schema = MIN_SCHEMA; schema <= MAX_SCHEMA; schema++) {
      for (let k = -30; k <= 30; k++) {
        const expected = schema >= 0 ? k * 2 ** schema : Math.ceil(k / 2 ** -schema);
        expect(bucketKey(2 ** k, schema), `2^${k} at schema ${schema}`).toBe(expected + 0);
        // The next double above goes to the next bucket, where 2^k is a bucket boundary.
        if (schema >= 0 || k % 2 ** -schema === 0) expect(bucketKey(2 ** k * (1 + Number.EPSILON), schema)).toBe(expected + 1);
      }
    }
  });

  it("schema 3's bucket bounds are client_golang's to within two units in the last place", () => {
    // client_golang's table is itself not correctly rounded (it came from Go's Exp2); only a value
    // within 2 ulps of a boundary can land in the neighbouring bucket.
    // client_golang prometheus/histogram.go nativeHistogramBounds[3].
    const golang = [0.5, 0.5452538663326288, 0.5946035575013605, 0.6484197773255048, 0.7071067811865475, 0.7711054127039704, 0.8408964152537144, 0.9170040432046711];
    const ours = [...mantissaBounds(3)];
    ours.forEach((bound, i) => expect(Math.abs(bound - (golang[i] as number))).toBeLessThanOrEqual(2 ** -52));
  });
});

describe('schemaForFactor', () => {
  it.each([
    [1.1, 3],
    [1.0905077326652577, 3],
    [1.09, 4],
    [1.2, 2],
    [2, 0],
    [4, -1],
    [1.0001, 8],
    [65_536, -4],
  ])('factor %f gives schema %i (the largest schema whose growth factor is at most it, within -4…8)', (factor, schema) => {
    expect(schemaForFactor(factor)).toBe(schema);
  });

  it('factor 1 or less (0 included) turns native histograms off', () => {
    expect(schemaForFactor(1)).toBeUndefined();
    expect(schemaForFactor(0)).toBeUndefined();
    expect(nativeHistogramSettings(0, 160)).toBeUndefined();
    expect(nativeHistogramSettings(1.1, 160)).toEqual({ schema: 3, maxBuckets: 160, zeroThreshold: 2 ** -128 });
  });
});

describe('one series', () => {
  it('values at or below the zero threshold count in the zero bucket', () => {
    // 2^-128 ≈ 2.9e-39: 1e-300 lies below it, 1e-38 above.
    const native = observeAll(3, [0, DEFAULT_ZERO_THRESHOLD, 1e-300, 1e-38, 1]);
    expect(native.zeroCount).toBe(3);
    expect(bucketsOf(native)).toEqual(new Map([[bucketKey(1e-38, 3), 1], [0, 1]]));
  });

  it('the dense window holds what a plain map of keys holds, however the values arrive (growing down, up, jumping)', () => {
    const orders = [[...values(3_000, 2)], [...values(3_000, 2)].sort((x, y) => x - y), [...values(3_000, 2)].sort((x, y) => y - x)];
    for (const input of orders) {
      const expected = new Map<number, number>();
      for (const v of input) expected.set(bucketKey(v, 4), (expected.get(bucketKey(v, 4)) ?? 0) + 1);
      const native = observeAll(4, input);
      expect(bucketsOf(native)).toEqual(expected);
      expect(native.populated).toBe(expected.size);
    }
  });

  it('past maxBuckets the schema drops and the buckets are exactly those of observing at the lower schema', () => {
    const input = [...values(5_000)];
    const limited = observeAll(8, input, 40);
    expect(limited.schema).toBeLessThan(8);
    expect(limited.populated).toBeLessThanOrEqual(40);
    expect(total(limited)).toBe(input.length);
    expect(bucketsOf(limited)).toEqual(bucketsOf(observeAll(limited.schema, input)));
  });

  it('reduceSchema merges neighbouring buckets pairwise, keys at or below zero included', () => {
    const input = [...values(3_000, 7)];
    const fine = observeAll(5, input);
    for (const to of [4, 2, 0, -2, -4]) {
      const reduced = copyNative(fine);
      reduceSchema(reduced, to);
      expect(bucketsOf(reduced), `to schema ${to}`).toEqual(bucketsOf(observeAll(to, input)));
    }
  });

  it('merging two series at different schemas equals observing both streams at the lower one', () => {
    const a = [...values(2_000, 3)];
    const b = [...values(2_000, 5)].map((v) => v * 3);
    const into = observeAll(6, a);
    mergeNative(into, observeAll(2, b), 100_000);
    expect(into.schema).toBe(2);
    expect(bucketsOf(into)).toEqual(bucketsOf(observeAll(2, [...a, ...b])));
    // And the other way round: merging a finer series into a coarser one.
    const coarse = observeAll(1, b);
    mergeNative(coarse, observeAll(7, a), 100_000);
    expect(bucketsOf(coarse)).toEqual(bucketsOf(observeAll(1, [...a, ...b])));
  });

  it('a window spanning far more than maxBuckets keys drops the schema even when few buckets are populated', () => {
    const native = observeAll(8, [1e-30, 1e30], 160);
    expect(native.populated).toBe(2);
    expect(native.counts.length).toBeLessThanOrEqual(4 * 160);
  });
});

describe('HistogramFamily with native buckets', () => {
  it('counts exactly what the classic buckets count: same count, same sum', () => {
    const family = new HistogramFamily({
      name: 'd',
      help: 'h',
      buckets: [0.01, 0.1, 1],
      native: settings(3, 160),
      registry: new Registry(),
    });
    const series = family.series();
    const input = [...values(10_000, 11), 0, -5, Number.NaN, Infinity];
    for (const v of input) family.observe(series, v);
    const native = series.native as NativeBuckets;
    expect(total(native)).toBe(series.count);
    expect([...series.counts].reduce((a, b) => a + b, 0)).toBe(series.count);
    // Negative, NaN and infinite observations count as 0, in the zero bucket, as in the classic +Inf-less first bucket.
    expect(native.zeroCount).toBe(4);
    let sum = 0;
    for (const v of input) sum += Number.isFinite(v) && v > 0 ? v : 0;
    expect(series.sum).toBe(sum);
  });

  it('without native settings a series has no native buckets', () => {
    const family = new HistogramFamily({ name: 'd', help: 'h', buckets: [1], registry: new Registry() });
    expect(family.series().native).toBeUndefined();
  });
});
