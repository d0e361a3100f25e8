/** Exemplars (OpenMetrics): the latest trace of a histogram bucket, its label text built once when recorded. */
import { labelText } from './text-writer.js';

/** An exemplar as OpenMetrics writes it: the label text is built once, when it is recorded. */
export interface Exemplar {
  readonly labelText: string;
  readonly labelSet: Readonly<Record<string, string>>;
  readonly value: number;
  readonly timestamp: number;
}

export type ExemplarLabels = Readonly<Record<string, string>>;

export function exemplarOf(labels: ExemplarLabels, value: number): Exemplar {
  return {
    labelText: labelText(Object.keys(labels), Object.values(labels)),
    labelSet: labels,
    value,
    timestamp: Date.now() / 1000,
  };
}
