/** Small statistics over samples: percentiles of one cell, medians across rounds. */

/** Nearest-rank percentile (0–100) of an ascending array; NaN when empty. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number;
}

export function sortNumbers(values: readonly number[]): Float64Array {
  return Float64Array.from(values).sort();
}

/** Median of the finite values; NaN when there are none. */
export function median(values: readonly number[]): number {
  const finite = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (finite.length === 0) return Number.NaN;
  const mid = finite.length >> 1;
  return finite.length % 2 === 1 ? (finite[mid] as number) : ((finite[mid - 1] as number) + (finite[mid] as number)) / 2;
}

export function min(values: readonly number[]): number {
  const finite = values.filter(Number.isFinite);
  return finite.length === 0 ? Number.NaN : Math.min(...finite);
}

export function max(values: readonly number[]): number {
  const finite = values.filter(Number.isFinite);
  return finite.length === 0 ? Number.NaN : Math.max(...finite);
}

export interface Latency {
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
}

/**
 * Latency samples in a growing Float64Array: a 5 s cell at 100 000 req/s records half a million
 * of them, and boxed numbers in a plain array would make the load generator itself collect garbage.
 */
export class Samples {
  private data = new Float64Array(1 << 16);
  length = 0;

  push(value: number): void {
    if (this.length === this.data.length) {
      const bigger = new Float64Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = value;
  }

  latency(): Latency {
    const sorted = this.data.slice(0, this.length).sort();
    return { p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99), p999Ms: percentile(sorted, 99.9) };
  }
}
