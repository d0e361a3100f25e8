/**
 * Rendering the registry for a scrape: Prometheus text 0.0.4 by default,
 * OpenMetrics (with exemplars) when the scraper asks for it, one render at a
 * time. Our families write their own text; prom-client's process metrics go
 * through its formatter, which fixes the format per registry and renames
 * counters (`x_total` → `x`) while rendering OpenMetrics, so each render sets
 * what it needs and puts the registry back as it was.
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

/** Our own families (metric-families.ts) write their exposition themselves, from label text built once. */
interface SelfRendering {
  render(openMetrics: boolean): string;
}

function rendersItself(metric: unknown): metric is SelfRendering {
  return typeof (metric as Partial<SelfRendering>).render === 'function';
}

/** What prom-client's own metrics (the process and Node.js defaults) need from their registry to render. */
interface NativeRendering {
  readonly contentType: string;
  setContentType(type: string): void;
  getMetricsAsString(metric: unknown): Promise<string>;
}

type Named = { name: string; type?: string };

/**
 * The registry's metrics, in the order registered. Our families render themselves; prom-client's
 * own metrics go through its formatter, for which the registry is switched to the wanted format and
 * (in OpenMetrics, as prom-client's metrics() does) counter names lose `_total`, both put back after.
 */
async function renderRegistry(registry: Registry, openMetrics: boolean): Promise<string> {
  const native = registry as unknown as NativeRendering;
  const resting = native.contentType;
  const wanted = openMetrics ? Registry.OPENMETRICS_CONTENT_TYPE : Registry.PROMETHEUS_CONTENT_TYPE;
  const parts: string[] = [];
  native.setContentType(wanted);
  try {
    for (const metric of registry.getMetricsAsArray()) {
      if (rendersItself(metric)) {
        parts.push(metric.render(openMetrics));
        continue;
      }
      const named = metric as unknown as Named;
      const name = named.name;
      if (openMetrics && named.type === 'counter' && name.endsWith('_total')) named.name = name.slice(0, -'_total'.length);
      try {
        parts.push(await native.getMetricsAsString(metric));
      } finally {
        named.name = name;
      }
    }
  } finally {
    native.setContentType(resting);
  }
  return openMetrics ? `${parts.join('\n')}\n# EOF\n` : `${parts.join('\n\n')}\n`;
}

export function createRenderer(registry: Registry): (openMetrics: boolean) => Promise<Rendered> {
  let queue: Promise<unknown> = Promise.resolve();

  async function render(openMetrics: boolean): Promise<Rendered> {
    const body = await renderRegistry(registry, openMetrics);
    return { body, contentType: openMetrics ? Registry.OPENMETRICS_CONTENT_TYPE : Registry.PROMETHEUS_CONTENT_TYPE };
  }

  // Serialised: a render switches the registry's format while prom-client formats, and puts it back after.
  return (openMetrics) => {
    const next = queue.then(() => render(openMetrics));
    queue = next.catch(() => {});
    return next;
  };
}
