/**
 * Rendering the registry for a scrape: Prometheus text 0.0.4 by default,
 * OpenMetrics (with exemplars) when the scraper asks for it, one render at a
 * time. prom-client fixes the format per registry, insists on OpenMetrics for
 * a registry holding exemplars, and renames counters (`x_total` → `x`) while
 * rendering OpenMetrics. So each render sets the format it needs and puts the
 * registry (and the counter names) back as they were, serialised so that no
 * render ever sees another's state.
 */
import { Registry } from 'prom-client';

export interface Rendered {
  readonly body: string;
  readonly contentType: string;
}

interface MediaRange {
  readonly type: string;
  readonly q: number;
}

function mediaRanges(header: string): MediaRange[] {
  return header.split(',').map((part) => {
    const [type = '', ...params] = part.split(';').map((p) => p.trim().toLowerCase());
    const q = params.find((p) => p.startsWith('q='));
    const weight = q === undefined ? 1 : Number(q.slice(2));
    return { type, q: Number.isFinite(weight) ? weight : 0 };
  });
}

/** True when the Accept header ranks OpenMetrics at least as high as the text format (as Prometheus's own header does). */
export function prefersOpenMetrics(accept: string | undefined): boolean {
  if (accept === undefined || !accept.includes('openmetrics')) return false;
  let openMetrics = 0;
  let text = 0;
  for (const range of mediaRanges(accept)) {
    if (range.type === 'application/openmetrics-text') openMetrics = Math.max(openMetrics, range.q);
    else if (range.type === 'text/plain' || range.type === '*/*' || range.type === 'text/*') text = Math.max(text, range.q);
  }
  return openMetrics > 0 && openMetrics >= text;
}

export function acceptsGzip(acceptEncoding: string | undefined): boolean {
  if (acceptEncoding === undefined) return false;
  return mediaRanges(acceptEncoding).some((range) => (range.type === 'gzip' || range.type === 'x-gzip') && range.q > 0);
}

type Named = { name: string; type?: string };

/**
 * OpenMetrics gives every counter sample a `_total` suffix, so a scraper that stores OpenMetrics
 * would file the recipe's `apiCount` as `apiCount_total` and break every query written for it.
 * Counters whose names do not end in `_total` are therefore typed `unknown` in OpenMetrics, which
 * keeps their series names exactly as in the text format.
 */
export function keepUnsuffixedCounterNames(body: string, counterNames: readonly string[]): string {
  let out = body;
  for (const name of counterNames) {
    if (name.endsWith('_total')) continue;
    out = out
      .replace(`\n# TYPE ${name} counter\n`, `\n# TYPE ${name} unknown\n`)
      .replaceAll(`\n${name}_total{`, `\n${name}{`)
      .replaceAll(`\n${name}_total `, `\n${name} `);
  }
  return out;
}
type Switchable = { readonly contentType: string; setContentType(type: string): void };

/** Registries holding exemplars must be created in OpenMetrics mode; text renders switch per scrape. */
export function createExemplarRegistry(): Registry {
  const OpenMetricsRegistry = Registry as unknown as new (contentType: string) => Registry;
  return new OpenMetricsRegistry(Registry.OPENMETRICS_CONTENT_TYPE);
}

export function createRenderer(registry: Registry): (openMetrics: boolean) => Promise<Rendered> {
  const switchable = registry as unknown as Switchable;
  let queue: Promise<unknown> = Promise.resolve();

  async function render(openMetrics: boolean): Promise<Rendered> {
    const resting = switchable.contentType;
    const wanted = openMetrics ? Registry.OPENMETRICS_CONTENT_TYPE : Registry.PROMETHEUS_CONTENT_TYPE;
    const counters = (registry.getMetricsAsArray() as unknown as Named[]).filter((m) => m.type === 'counter');
    const names = counters.map((m) => m.name);
    switchable.setContentType(wanted);
    try {
      const body = await registry.metrics();
      return { body: openMetrics ? keepUnsuffixedCounterNames(body, names) : body, contentType: wanted };
    } finally {
      switchable.setContentType(resting);
      counters.forEach((metric, i) => {
        metric.name = names[i] as string;
      });
    }
  }

  return (openMetrics) => {
    const next = queue.then(() => render(openMetrics));
    queue = next.catch(() => {});
    return next;
  };
}
