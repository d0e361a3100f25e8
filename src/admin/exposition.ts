/**
 * Rendering the registry for a scrape: Prometheus text 0.0.4 by default,
 * OpenMetrics (with exemplars) or the protobuf exposition (with native
 * histograms) when the scraper prefers it, one render at a time. Our families write their own text; prom-client's process metrics go
 * through its formatter, which fixes the format per registry and renames
 * counters (`x_total` → `x`) while rendering OpenMetrics, so each render sets
 * what it needs and puts the registry back as it was.
 */
import { Registry } from 'prom-client';
import { encodeFamily, type ProtoOptions } from '../metrics/family-proto.js';
import { CounterFamily, GaugeFamily, HistogramFamily } from '../metrics/families.js';
import { ProtoWriter } from '../metrics/proto-writer.js';
import { TextWriter } from '../metrics/text-writer.js';
import { type MetricJson, encodeJsonMetric } from './json-proto.js';

export type ExpositionFormat = 'text' | 'openmetrics' | 'protobuf';

export const PROTOBUF_CONTENT_TYPE = 'application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited';

export const CONTENT_TYPES: Readonly<Record<ExpositionFormat, string>> = {
  text: Registry.PROMETHEUS_CONTENT_TYPE,
  openmetrics: Registry.OPENMETRICS_CONTENT_TYPE,
  protobuf: PROTOBUF_CONTENT_TYPE,
};

export interface Rendered {
  /** The document's bytes (UTF-8 for the text formats); a string from a renderer of another kind. */
  readonly body: string | Buffer;
  readonly contentType: string;
}

export type Renderer = (format: ExpositionFormat) => Promise<Rendered>;

interface MediaRange {
  readonly type: string;
  readonly params: readonly string[];
  readonly q: number;
}

function mediaRanges(header: string): MediaRange[] {
  return header.split(',').map((part) => {
    const [type = '', ...params] = part.split(';').map((p) => p.trim().toLowerCase().replace(/\s*=\s*/, '='));
    const q = params.find((p) => p.startsWith('q='));
    const weight = q === undefined ? 1 : Number(q.slice(2));
    return { type, params, q: Number.isFinite(weight) ? weight : 0 };
  });
}

/** The exposition format a media range asks for, if any: protobuf only as Prometheus names it (delimited MetricFamily messages). */
function formatOf(range: MediaRange): ExpositionFormat | undefined {
  switch (range.type) {
    case 'application/openmetrics-text':
      return 'openmetrics';
    case 'text/plain':
    case 'text/*':
    case '*/*':
      return 'text';
    case 'application/vnd.google.protobuf':
      return range.params.includes('proto=io.prometheus.client.metricfamily') && range.params.includes('encoding=delimited')
        ? 'protobuf'
        : undefined;
    default:
      return undefined;
  }
}

/** Ties go to the richer format: Prometheus ranks its preference by q, and a bare wildcard means text. */
const PREFERENCE: readonly ExpositionFormat[] = ['protobuf', 'openmetrics', 'text'];

/** The format the Accept header ranks highest (each format at the best q of the ranges naming it); text when none is named. */
export function negotiateFormat(accept: string | undefined): ExpositionFormat {
  if (accept === undefined || (!accept.includes('openmetrics') && !accept.includes('protobuf'))) return 'text';
  const best: Record<ExpositionFormat, number> = { protobuf: 0, openmetrics: 0, text: 0 };
  for (const range of mediaRanges(accept)) {
    const format = formatOf(range);
    if (format !== undefined) best[format] = Math.max(best[format], range.q);
  }
  let chosen: ExpositionFormat = 'text';
  for (const format of PREFERENCE) if (best[format] > 0 && best[format] > best[chosen]) chosen = format;
  for (const format of PREFERENCE) {
    if (best[format] > 0 && best[format] === best[chosen]) return format;
  }
  return chosen;
}

export function acceptsGzip(acceptEncoding: string | undefined): boolean {
  if (acceptEncoding === undefined) return false;
  return mediaRanges(acceptEncoding).some((range) => (range.type === 'gzip' || range.type === 'x-gzip') && range.q > 0);
}

/** Our own families (families.ts) write their exposition themselves, from label bytes encoded once. */
interface SelfRendering {
  renderTo(w: TextWriter, openMetrics: boolean): void;
}

function rendersItself(metric: unknown): metric is SelfRendering {
  return typeof (metric as Partial<SelfRendering>).renderTo === 'function';
}

/** What prom-client's own metrics (the process and Node.js defaults) need from their registry to render. */
interface NativeRendering {
  readonly contentType: string;
  setContentType(type: string): void;
  getMetricsAsString(metric: unknown): Promise<string>;
}

type Named = { name: string; type?: string };

/**
 * The registry's metrics, in the order registered, as prom-client's metrics() joins them (a blank
 * line between two in the text format, a newline in OpenMetrics), written into one buffer sized
 * after the last render. Our families write themselves; prom-client's own metrics go through its
 * formatter, for which the registry is switched to the wanted format and (in OpenMetrics, as
 * prom-client's metrics() does) counter names lose `_total`, both put back after.
 */
async function renderRegistry(registry: Registry, openMetrics: boolean, sizeHint: number): Promise<Buffer> {
  const native = registry as unknown as NativeRendering;
  const resting = native.contentType;
  const wanted = openMetrics ? Registry.OPENMETRICS_CONTENT_TYPE : Registry.PROMETHEUS_CONTENT_TYPE;
  const w = new TextWriter(Math.max(64 * 1024, sizeHint));
  const separator = openMetrics ? '\n' : '\n\n';
  let first = true;
  native.setContentType(wanted);
  try {
    for (const metric of registry.getMetricsAsArray()) {
      if (!first) w.string(separator);
      first = false;
      if (rendersItself(metric)) {
        metric.renderTo(w, openMetrics);
        continue;
      }
      const named = metric as unknown as Named;
      const name = named.name;
      if (openMetrics && named.type === 'counter' && name.endsWith('_total')) named.name = name.slice(0, -'_total'.length);
      try {
        w.string(await native.getMetricsAsString(metric));
      } finally {
        named.name = name;
      }
    }
  } finally {
    native.setContentType(resting);
  }
  w.string(openMetrics ? '\n# EOF\n' : '\n');
  return w.finish();
}

type OwnFamily = CounterFamily | GaugeFamily | HistogramFamily;

function isOwnFamily(metric: unknown): metric is OwnFamily {
  return metric instanceof CounterFamily || metric instanceof GaugeFamily || metric instanceof HistogramFamily;
}

/** The registry's metrics as delimited MetricFamily messages: ours encode themselves, prom-client's from their values. */
async function encodeRegistry(registry: Registry, options: ProtoOptions, sizeHint: number): Promise<Buffer> {
  const w = new ProtoWriter(Math.max(64 * 1024, sizeHint));
  for (const metric of registry.getMetricsAsArray()) {
    if (isOwnFamily(metric)) encodeFamily(w, metric, options);
    else encodeJsonMetric(w, (await (metric as unknown as { get(): Promise<MetricJson> }).get()));
  }
  return w.finishDocument();
}

/** Room over the last render's size, so that a registry that grew a little does not regrow the buffer. */
const SIZE_MARGIN = 1.125;

export function createRenderer(registry: Registry, protobuf: ProtoOptions = { classicBuckets: true }): Renderer {
  let queue: Promise<void> = Promise.resolve();
  /** The last render's size per format: the next one's buffer is allocated at once. */
  const lastSize: Record<ExpositionFormat, number> = { text: 0, openmetrics: 0, protobuf: 0 };

  async function render(format: ExpositionFormat): Promise<Rendered> {
    const sizeHint = Math.ceil(lastSize[format] * SIZE_MARGIN);
    const body = format === 'protobuf' ? await encodeRegistry(registry, protobuf, sizeHint) : await renderRegistry(registry, format === 'openmetrics', sizeHint);
    lastSize[format] = body.length;
    return { body, contentType: CONTENT_TYPES[format] };
  }

  // Serialised: a render switches the registry's format while prom-client formats, and puts it back after.
  return (format) => {
    const next = queue.then(() => render(format));
    // Settled with nothing: a queue settled with the last body would keep it alive until the next scrape.
    queue = next.then(
      () => undefined,
      () => undefined,
    );
    return next;
  };
}
