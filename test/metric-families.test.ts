/**
 * Our metric families (src/metric-families.ts) with the real prom-client as the oracle: the same seeded
 * operations on a prom-client metric and on our family must expose the same samples and answer the same
 * get(). Then OpenMetrics naming and exemplars, escaping (parsed back strictly, linted by promtool), the
 * cluster aggregation, series() and the serialised whole-registry renderer (src/exposition.ts).
 */
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createRenderer } from '../src/admin/exposition.js';
import { CounterFamily, GaugeFamily, HistogramFamily } from '../src/metrics/families.js';
import { DEFAULT_DURATION_BUCKETS_SECONDS } from '../src/metrics/standard.js';
import { random } from './fuzz-input.js';
import { prometheusTools, promtoolCheckMetrics } from './prometheus.js';

const OPENMETRICS = Registry.OPENMETRICS_CONTENT_TYPE;
const PROMETHEUS = Registry.PROMETHEUS_CONTENT_TYPE;
type ContentType = typeof PROMETHEUS | typeof OPENMETRICS;

/** Switches a registry's format (prom-client's types fix it at compile time; the families take a plain Registry). */
function setFormat(registry: Registry, contentType: ContentType): Registry {
  (registry as unknown as { setContentType(type: ContentType): void }).setContentType(contentType);
  return registry;
}

// ---------------------------------------------------------------------------------------------------
// A strict parser for both formats: every escape checked, every sample tied to the family typed before it.

interface ParsedExemplar {
  readonly labels: Record<string, string>;
  readonly value: number;
  readonly timestamp: number | undefined;
}

interface ParsedSample {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly value: number;
  readonly exemplar?: ParsedExemplar;
}

interface Parsed {
  readonly help: Map<string, string>;
  readonly types: Map<string, string>;
  readonly samples: ParsedSample[];
}

const LABEL_ESCAPES: Record<string, string> = { '\\': '\\', '"': '"', n: '\n' };
const TEXT_HELP_ESCAPES: Record<string, string> = { '\\': '\\', n: '\n' };
const OPENMETRICS_HELP_ESCAPES: Record<string, string> = { ...TEXT_HELP_ESCAPES, '"': '"' };
/** The sample names a family may write, by type: text 0.0.4, then OpenMetrics. */
const SUFFIXES: Record<string, readonly [readonly string[], readonly string[]]> = {
  counter: [[''], ['_total', '_created']],
  gauge: [[''], ['']],
  histogram: [['_bucket', '_sum', '_count'], ['_bucket', '_sum', '_count', '_created']],
  unknown: [[''], ['']],
  untyped: [[''], []],
};

function parseNumber(token: string | undefined, line: string): number {
  if (token === undefined || token === '') throw new Error(`missing value: ${line}`);
  if (/^\+?inf$/i.test(token)) return Infinity;
  if (/^-inf$/i.test(token)) return -Infinity;
  if (/^nan$/i.test(token)) return NaN; // prom-client writes `Nan`
  const value = Number(token);
  if (Number.isNaN(value)) throw new Error(`bad number ${token}: ${line}`);
  return value;
}

function unescapeHelp(text: string, escapes: Record<string, string>, line: string): string {
  return text.replace(/\\(.?)/g, (_m, c: string) => {
    const replaced = escapes[c];
    if (replaced === undefined) throw new Error(`bad escape \\${c} in help: ${line}`);
    return replaced;
  });
}

/** Reads `{name="value",…}` starting at the `{` at `at`; returns the labels and the index after the `}`. */
function readLabels(line: string, at: number): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  let i = at + 1;
  while (line[i] !== '}') {
    const name = /^[a-zA-Z_][a-zA-Z0-9_]*="/.exec(line.slice(i))?.[0].slice(0, -2);
    if (name === undefined) throw new Error(`bad label at column ${i}: ${line}`);
    if (Object.hasOwn(labels, name)) throw new Error(`label ${name} twice: ${line}`);
    i += name.length + 2;
    let value = '';
    for (;;) {
      const c = line[i++];
      if (c === undefined) throw new Error(`unterminated label value: ${line}`);
      if (c === '"') break;
      if (c !== '\\') {
        value += c;
        continue;
      }
      const replaced = LABEL_ESCAPES[line[i++] ?? ''];
      if (replaced === undefined) throw new Error(`bad escape in a label value: ${line}`);
      value += replaced;
    }
    labels[name] = value;
    if (line[i] === ',') i++;
    else if (line[i] !== '}') throw new Error(`expected , or } at column ${i}: ${line}`);
  }
  return { labels, end: i + 1 };
}

/** Parses a whole exposition (OpenMetrics: ending in `# EOF`); throws on anything either format forbids. */
function parseDocument(text: string, openMetrics: boolean): Parsed {
  if (!text.endsWith('\n')) throw new Error('no final newline');
  const lines = text.slice(0, -1).split('\n');
  if (openMetrics && lines.pop() !== '# EOF') throw new Error('not ended by # EOF');
  const parsed: Parsed = { help: new Map(), types: new Map(), samples: [] };
  let family: { name: string; type: string } | undefined;
  for (const line of lines) {
    if (line === '') {
      if (openMetrics) throw new Error('blank line in OpenMetrics');
      continue;
    }
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (meta !== null) {
      const [, keyword, name = '', rest = ''] = meta;
      if (keyword === 'HELP') {
        if (parsed.help.has(name)) throw new Error(`HELP ${name} twice`);
        parsed.help.set(name, unescapeHelp(rest, openMetrics ? OPENMETRICS_HELP_ESCAPES : TEXT_HELP_ESCAPES, line));
      } else {
        if (parsed.types.has(name)) throw new Error(`TYPE ${name} twice`);
        if ((SUFFIXES[rest]?.[openMetrics ? 1 : 0].length ?? 0) === 0) throw new Error(`type ${rest} not allowed: ${line}`);
        parsed.types.set(name, rest);
        family = { name, type: rest };
      }
      continue;
    }
    if (line.startsWith('#')) throw new Error(`unexpected comment: ${line}`);
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0];
    if (name === undefined) throw new Error(`no metric name: ${line}`);
    const allowed = family === undefined ? [] : (SUFFIXES[family.type]?.[openMetrics ? 1 : 0] ?? []).map((s) => `${family?.name}${s}`);
    if (!allowed.includes(name)) throw new Error(`sample ${name} outside its family (${family?.name ?? 'none'}): ${line}`);
    let i = name.length;
    let labels: Record<string, string> = {};
    if (line[i] === '{') ({ labels, end: i } = readLabels(line, i));
    if (line[i] !== ' ') throw new Error(`expected a space at column ${i}: ${line}`);
    const rest = line.slice(i + 1);
    const hash = rest.indexOf(' # ');
    if (hash !== -1 && !openMetrics) throw new Error(`exemplar in the text format: ${line}`);
    const tokens = (hash === -1 ? rest : rest.slice(0, hash)).split(' ');
    if (tokens.length > 2) throw new Error(`trailing garbage: ${line}`);
    const sample: ParsedSample = { name, labels, value: parseNumber(tokens[0], line) };
    if (hash === -1) {
      parsed.samples.push(sample);
      continue;
    }
    const exemplarText = rest.slice(hash + 3);
    if (!exemplarText.startsWith('{')) throw new Error(`bad exemplar: ${line}`);
    const { labels: exemplarLabels, end } = readLabels(exemplarText, 0);
    const [, value, timestamp, ...more] = exemplarText.slice(end).split(' ');
    if (exemplarText[end] !== ' ' || more.length > 0) throw new Error(`bad exemplar: ${line}`);
    const exemplar = { labels: exemplarLabels, value: parseNumber(value, line), timestamp: timestamp === undefined ? undefined : parseNumber(timestamp, line) };
    parsed.samples.push({ ...sample, exemplar });
  }
  return parsed;
}

/** One family's render(), completed into a document. */
function parseFamily(text: string, openMetrics: boolean): Parsed {
  return parseDocument(openMetrics ? `${text}\n# EOF\n` : `${text}\n`, openMetrics);
}

const byKey = <T>(a: readonly [string, T], b: readonly [string, T]): number => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);

function labelKey(labels: Readonly<Record<string, unknown>>): string {
  return JSON.stringify(Object.entries(labels).sort(byKey));
}

/** Samples as a sorted list of [name + labels (in any order), value]: equal as sets, duplicates kept. */
function sampleSet(samples: readonly ParsedSample[]): Array<[string, number]> {
  return samples.map((s): [string, number] => [`${s.name}${labelKey(s.labels)}`, s.value]).sort(byKey);
}

function labelObject(names: readonly string[], values: readonly string[]): Record<string, string> {
  return Object.fromEntries(names.map((name, i) => [name, values[i] ?? '']));
}

// ---------------------------------------------------------------------------------------------------
// 1. The same operations on prom-client's classes and on ours.

/** mulberry32, seeded, so a failing sequence can be replayed. */
const prng = random;

const pick = <T>(random: () => number, items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;

const LABEL_VALUES = ['GET', 'POST', '', 'a"b\\c\nd', 'ünï ✓'];
const COUNTER_STEPS = [0, 1, 1, 2, 0.1, 0.5, 5e-324, 1e-300, 1e300];
const GAUGE_SETS = [0, -0, 1, -1, 0.1, -2.5, 5e-324, -1e-300, 1e300, -1e300, Infinity, -Infinity];
const GAUGE_DELTAS = [0, 1, -1, 0.1, 3.5, 5e-324, 1e300, -1e300];
/** Our observe() counts these as 0; prom-client would throw on the non-finite ones and count negatives as is. */
const HISTOGRAM_ODD = [0, -0, -1, -1e300, NaN, Infinity, -Infinity, 5e-324, 1e-300, 1e300, Number.MAX_VALUE];
const asObserved = (value: number): number => (Number.isFinite(value) && value > 0 ? value : 0);

type Kind = 'counter' | 'gauge' | 'histogram';

interface Case {
  readonly kind: Kind;
  readonly name: string;
  readonly labelNames: readonly string[];
  readonly buckets?: readonly number[];
}

interface Op {
  readonly labels: readonly string[];
  readonly verb: 'inc' | 'dec' | 'set' | 'observe';
  readonly value: number;
}

function operations(c: Case, seed: number, count: number): Op[] {
  const random = prng(seed);
  const ops: Op[] = [];
  for (let n = 0; n < count; n++) {
    const labels = c.labelNames.map(() => pick(random, LABEL_VALUES));
    const fresh = random() < 0.3;
    if (c.kind === 'counter') ops.push({ labels, verb: 'inc', value: fresh ? random() * 1000 : pick(random, COUNTER_STEPS) });
    else if (c.kind === 'gauge') {
      const verb = pick(random, ['set', 'inc', 'dec'] as const);
      ops.push({ labels, verb, value: fresh ? (random() - 0.5) * 1000 : pick(random, verb === 'set' ? GAUGE_SETS : GAUGE_DELTAS) });
    } else {
      const buckets = c.buckets ?? [];
      const max = buckets[buckets.length - 1] ?? 1;
      ops.push({ labels, verb: 'observe', value: fresh ? random() * max * 1.2 : pick(random, [...buckets, ...buckets, ...HISTOGRAM_ODD]) });
    }
  }
  return ops;
}

interface MetricJson {
  name: string;
  help: string;
  type: string;
  aggregator: string;
  values: Array<{ labels: Record<string, string | number>; value: number; metricName?: string }>;
}

/** prom-client's get() and ours, comparable: sample name on every value, values in a fixed order, nothing else. */
function normaliseJson(m: MetricJson): unknown {
  const values = m.values.map((v): [string, unknown] => {
    const metricName = v.metricName ?? m.name;
    return [`${metricName}${labelKey(v.labels)}`, { metricName, labels: { ...v.labels }, value: v.value }];
  });
  return { name: m.name, help: m.help, type: m.type, aggregator: m.aggregator, values: values.sort(byKey).map(([, v]) => v) };
}

interface Pair {
  readonly oracle: Registry;
  readonly ours: Registry;
  apply(op: Op): void;
  oracleJson(): Promise<MetricJson>;
  ourJson(): Promise<MetricJson>;
}

function createPair(c: Case): Pair {
  const oracle = new Registry();
  const ours = new Registry();
  const help = `${c.kind} ${c.name}, compared with prom-client`;
  const config = { name: c.name, help, labelNames: c.labelNames, registers: [oracle] };
  const options = { name: c.name, help, labelNames: c.labelNames, registry: ours };
  const labelled = c.labelNames.length > 0;
  const json = (metric: { get(): Promise<unknown> }) => async () => (await metric.get()) as MetricJson;
  if (c.kind === 'counter') {
    const prom = new Counter(config);
    const family = new CounterFamily(options);
    if (!labelled) family.series(); // prom-client shows an unlabelled series from the start
    return {
      oracle,
      ours,
      oracleJson: json(prom),
      ourJson: json(family),
      apply: (op) => {
        family.series(...op.labels).value += op.value;
        if (labelled) prom.inc(labelObject(c.labelNames, op.labels), op.value);
        else prom.inc(op.value);
      },
    };
  }
  if (c.kind === 'gauge') {
    const prom = new Gauge(config);
    const family = new GaugeFamily(options);
    if (!labelled) family.series();
    return {
      oracle,
      ours,
      oracleJson: json(prom),
      ourJson: json(family),
      apply: (op) => {
        const series = family.series(...op.labels);
        const labels = labelObject(c.labelNames, op.labels);
        if (op.verb === 'set') series.value = op.value;
        else if (op.verb === 'inc') series.value += op.value;
        else series.value -= op.value;
        if (op.verb === 'set') prom.set(labels, op.value);
        else if (op.verb === 'inc') prom.inc(labels, op.value);
        else prom.dec(labels, op.value);
      },
    };
  }
  const buckets = c.buckets ?? [];
  const prom = new Histogram({ ...config, buckets: [...buckets] });
  const family = new HistogramFamily({ ...options, buckets });
  if (!labelled) family.series();
  return {
    oracle,
    ours,
    oracleJson: json(prom),
    ourJson: json(family),
    apply: (op) => {
      family.observe(family.series(...op.labels), op.value);
      if (labelled) prom.observe(labelObject(c.labelNames, op.labels), asObserved(op.value));
      else prom.observe(asObserved(op.value));
    },
  };
}

const CASES: readonly Case[] = [
  { kind: 'counter', name: 'jobs_total', labelNames: ['queue', 'outcome'] },
  { kind: 'counter', name: 'ticks_total', labelNames: [] },
  { kind: 'counter', name: 'apiCount', labelNames: ['method'] },
  { kind: 'gauge', name: 'queue_depth', labelNames: ['queue'] },
  { kind: 'gauge', name: 'temperature_celsius', labelNames: [] },
  { kind: 'histogram', name: 'request_duration_seconds', labelNames: ['method', 'route'], buckets: DEFAULT_DURATION_BUCKETS_SECONDS },
  { kind: 'histogram', name: 'body_size_bytes', labelNames: [], buckets: [0, 64, 1024, 1e6] },
  { kind: 'histogram', name: 'tiny_seconds', labelNames: ['route'], buckets: [1e-9, 1e-6, 1e-3, 1] },
];
const SEEDS = [1, 7, 2024];

describe('the families expose what prom-client exposes for the same operations', () => {
  describe.each(CASES)('$kind $name with labels $labelNames', (c) => {
    it.each(SEEDS)('seed %i', async (seed) => {
      const pair = createPair(c);
      for (const op of operations(c, seed, 250)) pair.apply(op);

      // Prometheus text 0.0.4, the whole registry through our renderer against prom-client's formatter.
      const theirs = await pair.oracle.metrics();
      const ours = String((await createRenderer(pair.ours)('text')).body);
      const [theirsParsed, oursParsed] = [parseDocument(theirs, false), parseDocument(ours, false)];
      expect(oursParsed.help).toEqual(theirsParsed.help);
      expect(oursParsed.types).toEqual(theirsParsed.types);
      expect(sampleSet(oursParsed.samples)).toEqual(sampleSet(theirsParsed.samples));
      // Without a `le` to place, the lines are prom-client's to the byte.
      if (c.kind !== 'histogram') expect(ours).toBe(theirs);

      expect(normaliseJson(await pair.ourJson())).toEqual(normaliseJson(await pair.oracleJson()));

      // OpenMetrics: the same, except for counters without `_total`, which we type `unknown` (see below).
      if (c.kind === 'counter' && !c.name.endsWith('_total')) return;
      setFormat(pair.oracle, OPENMETRICS); // prom-client renames its counter for good now: last use
      const [theirsOm, oursOm] = [parseDocument(await pair.oracle.metrics(), true), parseDocument(String((await createRenderer(pair.ours)('openmetrics')).body), true)];
      expect(oursOm.help).toEqual(theirsOm.help);
      expect(oursOm.types).toEqual(theirsOm.types);
      expect(sampleSet(oursOm.samples)).toEqual(sampleSet(theirsOm.samples));
    });
  });

  it('registry.metrics() and getMetricsAsJSON() of prom-client still work on a registry of our families', async () => {
    const histogram = CASES.find((c) => c.kind === 'histogram' && c.labelNames.length === 2) as Case;
    const pair = createPair(histogram);
    for (const op of operations(histogram, 3, 100)) pair.apply(op);
    const ours = parseDocument(await pair.ours.metrics(), false);
    expect(sampleSet(ours.samples)).toEqual(sampleSet(parseDocument(await pair.oracle.metrics(), false).samples));
    const [json] = (await pair.ours.getMetricsAsJSON()) as unknown as MetricJson[];
    expect(normaliseJson(json as MetricJson)).toEqual(normaliseJson(await pair.oracleJson()));
  });
});

// ---------------------------------------------------------------------------------------------------
// 2. OpenMetrics: counter naming, exemplars, the whole registry.

/** The text format's TYPE lines for those of an OpenMetrics render: `x` counter is `x_total`, `unknown` (our counters without `_total`) a counter. */
function textTypes(openMetricsTypes: ReadonlyMap<string, string>): Map<string, string> {
  const types = new Map<string, string>();
  for (const [name, type] of openMetricsTypes) {
    if (type === 'counter') types.set(`${name}_total`, 'counter');
    else types.set(name, type === 'unknown' ? 'counter' : type);
  }
  return types;
}

/** prom-client's default metrics and one of each of our families (both kinds of counter), with data and an exemplar. */
function fullRegistry(contentType: ContentType): Registry {
  const registry = setFormat(new Registry(), contentType);
  collectDefaultMetrics({ register: registry });
  const jobs = new CounterFamily({ name: 'jobs_total', help: 'Jobs.', labelNames: ['kind'], registry });
  const legacy = new CounterFamily({ name: 'apiCount', help: 'Calls.', labelNames: ['method'], registry });
  const depth = new GaugeFamily({ name: 'queue_depth', help: 'Depth.', registry });
  const latency = new HistogramFamily({ name: 'latency_seconds', help: 'Latency.', labelNames: ['route'], buckets: [0.1, 1], registry });
  jobs.series('a').value += 2;
  legacy.series('GET').value += 5;
  depth.series().value = -4;
  latency.observe(latency.series('/x'), 0.5, { trace_id: 'abc', span_id: 'def' });
  return registry;
}

describe('OpenMetrics', () => {
  it.each([
    { name: 'jobs_total', text: ['jobs_total', 'counter'], openMetrics: ['jobs', 'counter'], sample: 'jobs_total' },
    { name: 'apiCount', text: ['apiCount', 'counter'], openMetrics: ['apiCount', 'unknown'], sample: 'apiCount' },
    { name: 'totally_total_bytes', text: ['totally_total_bytes', 'counter'], openMetrics: ['totally_total_bytes', 'unknown'], sample: 'totally_total_bytes' },
  ])('a counter named $name is typed $openMetrics.1 with samples $sample', ({ name, text, openMetrics, sample }) => {
    const family = new CounterFamily({ name, help: 'Jobs.', labelNames: ['kind'], registry: new Registry() });
    family.series('a').value += 3;
    const om = parseFamily(family.render(true), true);
    expect([...om.types]).toEqual([openMetrics]);
    expect([...om.help]).toEqual([[openMetrics[0], 'Jobs.']]);
    expect(om.samples).toEqual([{ name: sample, labels: { kind: 'a' }, value: 3 }]);
    const plain = parseFamily(family.render(false), false);
    expect([...plain.types]).toEqual([text]);
    expect(plain.samples).toEqual([{ name, labels: { kind: 'a' }, value: 3 }]);
    expect(family.name).toBe(name);
  });

  it('puts each exemplar on the bucket its value fell in, in OpenMetrics only', () => {
    const family = new HistogramFamily({ name: 'req_seconds', help: 'h', labelNames: ['route'], buckets: [0.1, 1], registry: new Registry() });
    const series = family.series('/a');
    const negative = family.series('/neg');
    const before = Date.now() / 1000;
    family.observe(series, 0.1, { trace_id: 't1', span_id: 's1' }); // exactly on a boundary: le="0.1"
    family.observe(series, 0.05); // no exemplar: t1 stays
    family.observe(series, 0.3, { trace_id: 't2', span_id: 's2' });
    family.observe(series, 0.9, { trace_id: 't3', span_id: 's3' }); // the latest one per bucket wins
    family.observe(series, 7, { trace_id: 't4', span_id: 's4' }); // above every bound: +Inf
    family.observe(negative, -3, { trace_id: 't5', span_id: 's5' }); // counted as 0, and so is its exemplar
    const after = Date.now() / 1000;

    const rendered = family.render(true);
    const buckets = parseFamily(rendered, true).samples.filter((s) => s.name === 'req_seconds_bucket');
    const exemplars = buckets.map((s) => [s.labels.route, s.labels.le, s.value, s.exemplar?.labels, s.exemplar?.value]);
    expect(exemplars).toEqual([
      ['/a', '0.1', 2, { trace_id: 't1', span_id: 's1' }, 0.1],
      ['/a', '1', 4, { trace_id: 't3', span_id: 's3' }, 0.9],
      ['/a', '+Inf', 5, { trace_id: 't4', span_id: 's4' }, 7],
      ['/neg', '0.1', 1, { trace_id: 't5', span_id: 's5' }, 0],
      ['/neg', '1', 1, undefined, undefined],
      ['/neg', '+Inf', 1, undefined, undefined],
    ]);
    for (const s of buckets) {
      if (s.exemplar !== undefined) expect(s.exemplar.timestamp).toBeGreaterThanOrEqual(before);
      if (s.exemplar !== undefined) expect(s.exemplar.timestamp).toBeLessThanOrEqual(after);
    }
    expect(rendered).toMatch(/^req_seconds_bucket\{route="\/a",le="0\.1"\} 2 # \{trace_id="t1",span_id="s1"\} 0\.1 \d+(\.\d+)?$/m);
    // The text format has no exemplars (the strict parser throws on one) and _sum/_count never carry any.
    const text = family.render(false);
    expect(text).not.toContain('trace_id');
    expect(parseFamily(text, false).samples.map((s) => s.value)).toEqual(parseFamily(rendered, true).samples.map((s) => s.value));
    expect(parseFamily(rendered, true).samples.filter((s) => s.name !== 'req_seconds_bucket' && s.exemplar !== undefined)).toEqual([]);
  });

  it.each(SEEDS)('exemplars sit where prom-client puts them (seed %i)', async (seed) => {
    const random = prng(seed);
    const buckets = [0.01, 0.1, 1, 10];
    const oracle = setFormat(new Registry(), OPENMETRICS);
    const prom = new Histogram<string>({ name: 'ex_seconds', help: 'h', labelNames: ['route'], buckets, registers: [oracle], enableExemplars: true });
    const ours = new Registry();
    const family = new HistogramFamily({ name: 'ex_seconds', help: 'h', labelNames: ['route'], buckets, registry: ours });
    for (let n = 0; n < 200; n++) {
      const route = pick(random, ['/a', '/b']);
      const value = random() < 0.3 ? pick(random, [0, ...buckets]) : random() * 15;
      const exemplar = random() < 0.5 ? { trace_id: n.toString(16).padStart(32, '0'), span_id: String(n) } : undefined;
      family.observe(family.series(route), value, exemplar);
      if (exemplar === undefined) prom.observe({ labels: { route }, value });
      else prom.observe({ labels: { route }, value, exemplarLabels: exemplar });
    }
    const shape = (p: Parsed) =>
      p.samples
        .map((s): [string, unknown] => [`${s.name}${labelKey(s.labels)}`, [s.value, s.exemplar?.labels, s.exemplar?.value]])
        .sort(byKey);
    const theirs = parseDocument(await oracle.metrics(), true);
    const mine = parseDocument(String((await createRenderer(ours)('openmetrics')).body), true);
    expect(shape(mine)).toEqual(shape(theirs));
    expect(mine.samples.some((s) => s.exemplar !== undefined)).toBe(true);
  });

  it.each([
    ['text', PROMETHEUS],
    ['OpenMetrics', OPENMETRICS],
  ] as const)('renders a whole %s registry in both formats, prom-client counters included, and leaves it as it was', async (_name, contentType) => {
    const registry = fullRegistry(contentType);
    const names = () => registry.getMetricsAsArray().map((m) => (m as unknown as { name: string }).name);
    const namesBefore = names();
    const render = createRenderer(registry);

    const omRendered = await render('openmetrics');
    const om = { contentType: omRendered.contentType, body: String(omRendered.body) };
    expect(om.contentType).toBe(OPENMETRICS);
    expect(om.body.endsWith('\n# EOF\n')).toBe(true);
    expect(om.body.split('# EOF').length).toBe(2);
    const omParsed = parseDocument(om.body, true);
    expect(omParsed.types.get('process_cpu_user_seconds')).toBe('counter');
    expect(omParsed.types.has('process_cpu_user_seconds_total')).toBe(false);
    expect(omParsed.samples.filter((s) => s.name === 'process_cpu_user_seconds_total')).toHaveLength(1);
    expect(omParsed.types.get('jobs')).toBe('counter');
    expect(omParsed.types.get('apiCount')).toBe('unknown');
    expect(omParsed.samples.find((s) => s.name === 'latency_seconds_bucket' && s.labels.le === '1')?.exemplar?.labels).toEqual({ trace_id: 'abc', span_id: 'def' });
    expect(registry.contentType).toBe(contentType);
    expect(names()).toEqual(namesBefore);

    const textRendered = await render('text');
    const text = { contentType: textRendered.contentType, body: String(textRendered.body) };
    expect(text.contentType).toBe(PROMETHEUS);
    expect(text.body).not.toContain('# EOF');
    const textParsed = parseDocument(text.body, false);
    expect(textParsed.types.get('process_cpu_user_seconds_total')).toBe('counter');
    expect(textParsed.samples.filter((s) => s.name === 'process_cpu_user_seconds_total')).toHaveLength(1);
    // Every family typed in one format is typed, under its own name, in the other.
    expect(textParsed.types).toEqual(textTypes(omParsed.types));

    // Again: nothing drifted (a leftover rename would turn up as jobs or process_cpu_user_seconds in text).
    expect(parseDocument(String((await render('openmetrics')).body), true).types).toEqual(omParsed.types);
    expect(parseDocument(String((await render('text')).body), false).types).toEqual(textParsed.types);
    expect(registry.contentType).toBe(contentType);
    expect(names()).toEqual(namesBefore);
    if (contentType === PROMETHEUS) expect(parseDocument(await registry.metrics(), false).types).toEqual(textParsed.types);
  });
});

// ---------------------------------------------------------------------------------------------------
// 3. Escaping.

const AWKWARD = [
  ['a backslash', 'C:\\temp\\'],
  ['a double quote', 'say "hi"'],
  ['a newline', 'line 1\nline 2'],
  ['a backslash before n', '\\n is not a newline'],
  ['all three, repeated', '\\"\n\\\\""\n\n'],
  ['nothing', ''],
  ['unicode', 'ünï ✓ 日本'],
  ['exposition syntax', '} a="b",c{ # {x="y"} 1 2'],
] as const;
const AWKWARD_HELP = 'Requests by path.\nA second line, with C:\\dir\\ and \\n spelled out.';

function escapingRegistry(values: readonly string[]): Registry {
  const registry = new Registry();
  const help = AWKWARD_HELP;
  const requests = new CounterFamily({ name: 'escaping_requests_total', help, labelNames: ['path'], registry });
  const inFlight = new GaugeFamily({ name: 'escaping_in_flight', help, labelNames: ['path'], registry });
  const duration = new HistogramFamily({ name: 'escaping_duration_seconds', help, labelNames: ['path'], buckets: [1], registry });
  for (const value of values) {
    requests.series(value).value += 1;
    inFlight.series(value).value = 2;
    duration.observe(duration.series(value), 0.5, { trace_id: value });
  }
  return registry;
}

describe('escaping', () => {
  it.each(AWKWARD)('label values with %s come back unchanged from both formats, written as prom-client writes them', async (_what, value) => {
    const registry = escapingRegistry([value]);
    const render = createRenderer(registry);
    for (const openMetrics of [false, true]) {
      const parsed = parseDocument(String((await render(openMetrics ? 'openmetrics' : 'text')).body), openMetrics);
      expect(parsed.samples).toHaveLength(6);
      for (const sample of parsed.samples) expect(sample.labels.path).toBe(value);
      expect([...parsed.help.values()]).toEqual([AWKWARD_HELP, AWKWARD_HELP, AWKWARD_HELP]);
      const exemplars = parsed.samples.flatMap((s) => (s.exemplar === undefined ? [] : [s.exemplar.labels]));
      expect(exemplars).toEqual(openMetrics ? [{ trace_id: value }] : []);
    }
    const oracle = new Registry();
    new Counter({ name: 'escaping_requests_total', help: AWKWARD_HELP, labelNames: ['path'], registers: [oracle] }).inc({ path: value });
    new Gauge({ name: 'escaping_in_flight', help: AWKWARD_HELP, labelNames: ['path'], registers: [oracle] }).set({ path: value }, 2);
    expect(String((await render('text')).body)).toContain(await oracle.metrics());
  });

  it('writes the help text with backslash and newline escaped, on one line', () => {
    const family = new GaugeFamily({ name: 'g', help: AWKWARD_HELP, registry: new Registry() });
    expect(family.render(false).split('\n')[0]).toBe('# HELP g Requests by path.\\nA second line, with C:\\\\dir\\\\ and \\\\n spelled out.');
  });

  it.skipIf(prometheusTools() === undefined)('promtool check metrics accepts all of them in one exposition', async () => {
    const registry = escapingRegistry(AWKWARD.map(([, value]) => value));
    const { ok, problems } = await promtoolCheckMetrics(String((await createRenderer(registry)('text')).body));
    expect(problems).toEqual([]);
    expect(ok).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------------
// 4. Cluster aggregation (node:cluster's primary sums the workers' getMetricsAsJSON()).

interface Worker {
  readonly registry: Registry;
  readonly jobs: CounterFamily;
  readonly depth: GaugeFamily;
  readonly latency: HistogramFamily;
}

function worker(): Worker {
  const registry = new Registry();
  return {
    registry,
    jobs: new CounterFamily({ name: 'jobs_total', help: 'Jobs.', labelNames: ['route'], registry }),
    depth: new GaugeFamily({ name: 'queue_depth', help: 'Depth.', labelNames: ['route'], registry }),
    latency: new HistogramFamily({ name: 'latency_seconds', help: 'Latency.', labelNames: ['route'], buckets: [0.5, 1, 2.5], registry }),
  };
}

describe('cluster aggregation', () => {
  it.each(SEEDS)("AggregatorRegistry.aggregate sums two workers' families (seed %i)", async (seed) => {
    const random = prng(seed);
    const [one, two, both] = [worker(), worker(), worker()];
    // Dyadic steps: the sums are exact whatever the order of addition.
    const steps = [0, 0.25, 0.5, 1, 2, 3, 100];
    for (let n = 0; n < 300; n++) {
      const w = random() < 0.5 ? one : two;
      const route = pick(random, ['/a', '/b', w === one ? '/only-one' : '/only-two']);
      const value = pick(random, steps);
      const verb = pick(random, ['count', 'up', 'down', 'observe'] as const);
      for (const target of [w, both]) {
        if (verb === 'count') target.jobs.series(route).value += value;
        else if (verb === 'up') target.depth.series(route).value += value;
        else if (verb === 'down') target.depth.series(route).value -= value;
        else target.latency.observe(target.latency.series(route), value);
      }
    }
    const aggregated = AggregatorRegistry.aggregate([await one.registry.getMetricsAsJSON(), await two.registry.getMetricsAsJSON()]);
    const summed = parseDocument(await aggregated.metrics(), false);
    const expected = parseDocument(String((await createRenderer(both.registry)('text')).body), false);
    expect(summed.types).toEqual(expected.types);
    expect(summed.help).toEqual(expected.help);
    expect(sampleSet(summed.samples)).toEqual(sampleSet(expected.samples));

    // And spelled out for one series present in both workers.
    const value = (name: string, labels: Record<string, string>) =>
      summed.samples.find((s) => s.name === name && labelKey(s.labels) === labelKey(labels))?.value;
    const [a1, a2] = [one.latency.series('/a'), two.latency.series('/a')];
    expect(value('jobs_total', { route: '/a' })).toBe(one.jobs.series('/a').value + two.jobs.series('/a').value);
    expect(value('queue_depth', { route: '/a' })).toBe(one.depth.series('/a').value + two.depth.series('/a').value);
    expect(value('latency_seconds_count', { route: '/a' })).toBe(a1.count + a2.count);
    expect(value('latency_seconds_sum', { route: '/a' })).toBe(a1.sum + a2.sum);
    expect(value('latency_seconds_bucket', { route: '/a', le: '+Inf' })).toBe(a1.count + a2.count);
    expect(value('latency_seconds_bucket', { route: '/a', le: '0.5' })).toBe((a1.counts[0] ?? 0) + (a2.counts[0] ?? 0));
    expect(value('jobs_total', { route: '/only-one' })).toBe(one.jobs.series('/only-one').value);
  });
});

// ---------------------------------------------------------------------------------------------------
// 5. series() and reset().

type AnyFamily = CounterFamily | GaugeFamily | HistogramFamily;
const KINDS: readonly Kind[] = ['counter', 'gauge', 'histogram'];

function family(kind: Kind, labelNames: readonly string[], registry = new Registry()): AnyFamily {
  const options = { name: `some_${kind}`, help: 'h', labelNames, registry };
  if (kind === 'counter') return new CounterFamily(options);
  if (kind === 'gauge') return new GaugeFamily(options);
  return new HistogramFamily({ ...options, buckets: [1] });
}

type AnySeries = ReturnType<AnyFamily['series']>;

/** Adds `amount` to a counter or gauge series, or observes it on a histogram series. */
function bump(f: AnyFamily, series: AnySeries, amount = 1): void {
  if (f instanceof HistogramFamily) f.observe(series as ReturnType<HistogramFamily['series']>, amount);
  else (series as ReturnType<CounterFamily['series']>).value += amount;
}

describe.each(KINDS)('%s series()', (kind) => {
  it.each([
    { labelNames: [], values: ['x'] },
    { labelNames: ['a'], values: [] },
    { labelNames: ['a'], values: ['x', 'y'] },
    { labelNames: ['a', 'b'], values: ['x'] },
    { labelNames: ['a', 'b'], values: ['x', 'y', 'z'] },
  ])('labels $labelNames, values $values: a TypeError', ({ labelNames, values }) => {
    const f = family(kind, labelNames);
    expect(() => f.series(...values)).toThrow(TypeError);
    expect(f.render(false).split('\n')).toHaveLength(2); // nothing was created
  });

  it.each([[[]], [['a']], [['a', 'b']]] as const)('labels %j: the same values give the same series', (labelNames) => {
    const f = family(kind, labelNames);
    const values = labelNames.map((n) => `${n}-value`);
    const series = f.series(...values);
    expect(f.series(...values)).toBe(series);
    expect(series.labels).toEqual(labelObject(labelNames, values));
    expect(Object.isFrozen(series.labels)).toBe(true);
    if (labelNames.length > 0) expect(f.series(...values.map((v) => `${v}!`))).not.toBe(series);
  });

  it('reset() (and the registry\'s resetMetrics()) empties the family; old series no longer show', async () => {
    const registry = new Registry();
    const f = family(kind, ['route'], registry);
    for (const reset of [() => f.reset(), () => registry.resetMetrics()]) {
      const old = f.series('/a');
      bump(f, old);
      reset();
      expect(f.render(false).split('\n')).toHaveLength(2);
      expect((await f.get()).values).toEqual([]);
      const fresh = f.series('/a');
      expect(fresh).not.toBe(old);
      bump(f, f.series('/b'));
      bump(f, old, 99);
      const samples = parseFamily(f.render(false), false).samples;
      expect(samples.filter((s) => s.labels.route === '/a').every((s) => s.value === 0)).toBe(true);
      expect(samples.some((s) => s.value === 99)).toBe(false);
      f.reset();
    }
  });
});

describe('series() keys and HELP escaping (bugs found while writing these tests)', () => {
  it('throws on the wrong number of values even when their joined text is a known key', () => {
    const two = new CounterFamily({ name: 'x_total', help: 'h', labelNames: ['a', 'b'], registry: new Registry() });
    two.series('a', 'b');
    expect(() => two.series('a\u0000b')).toThrow(TypeError);
    const one = new CounterFamily({ name: 'y_total', help: 'h', labelNames: ['a'], registry: new Registry() });
    one.series('');
    expect(() => one.series()).toThrow(TypeError);
  });

  it('keeps label sets apart when a value holds U+0000', () => {
    const f = new CounterFamily({ name: 'z_total', help: 'h', labelNames: ['a', 'b'], registry: new Registry() });
    const first = f.series('p\u0000q', 'r');
    const second = f.series('p', 'q\u0000r');
    expect(second).not.toBe(first);
    expect(second.labels).toEqual({ a: 'p', b: 'q\u0000r' });
  });

  it('escapes double quotes in HELP for OpenMetrics only', () => {
    const f = new CounterFamily({ name: 'q_total', help: 'say "hi" \\ now', registry: new Registry() });
    expect(f.render(true).split('\n')[0]).toBe('# HELP q say \\"hi\\" \\\\ now');
    expect(f.render(false).split('\n')[0]).toBe('# HELP q_total say "hi" \\\\ now');
  });
});

// ---------------------------------------------------------------------------------------------------
// 6. The renderer, one render at a time.

describe('createRenderer', () => {
  /** Our families' samples (prom-client's process metrics move between renders). */
  const ours = (p: Parsed) => sampleSet(p.samples.filter((s) => !/^(process|nodejs)_/.test(s.name)));

  it('serialises renders: concurrent text and OpenMetrics renders are both right', async () => {
    const registry = fullRegistry(PROMETHEUS);
    const render = createRenderer(registry);
    const text = parseDocument(String((await render('text')).body), false);
    const om = parseDocument(String((await render('openmetrics')).body), true);

    const [concurrentText, concurrentOm] = await Promise.all([render('text'), render('openmetrics')]);
    expect(concurrentText.contentType).toBe(PROMETHEUS);
    expect(concurrentOm.contentType).toBe(OPENMETRICS);
    for (const [rendered, openMetrics, expected] of [
      [concurrentText, false, text],
      [concurrentOm, true, om],
    ] as const) {
      const parsed = parseDocument(String(rendered.body), openMetrics); // a sample named outside its family throws here
      expect(parsed.types).toEqual(expected.types);
      expect(ours(parsed)).toEqual(ours(expected));
    }

    const many = await Promise.all(Array.from({ length: 10 }, (_, i) => render(i % 2 === 1 ? 'openmetrics' : 'text')));
    many.forEach((rendered, i) => {
      const parsed = parseDocument(String(rendered.body), i % 2 === 1);
      expect(parsed.types).toEqual(i % 2 === 1 ? om.types : text.types);
    });
    expect(registry.contentType).toBe(PROMETHEUS);
  });

  it('a render that fails rejects alone: the one queued behind it renders, and the registry is put back', async () => {
    const registry = fullRegistry(PROMETHEUS);
    let failures = 1;
    const flaky = {
      name: 'flaky',
      help: 'Fails once.',
      type: 'gauge',
      aggregator: 'sum',
      get: () => {
        if (failures-- > 0) return Promise.reject(new Error('collect failed'));
        return Promise.resolve({ name: 'flaky', help: 'Fails once.', type: 'gauge', values: [{ labels: {}, value: 1 }], aggregator: 'sum' });
      },
    };
    registry.registerMetric(flaky as never);
    const render = createRenderer(registry);
    const [failed, next] = await Promise.allSettled([render('openmetrics'), render('text')]);
    expect(failed.status).toBe('rejected');
    expect(registry.contentType).toBe(PROMETHEUS);
    expect(next.status).toBe('fulfilled');
    if (next.status === 'fulfilled') expect(parseDocument(String(next.value.body), false).samples.find((s) => s.name === 'flaky')?.value).toBe(1);
    expect(parseDocument(String((await render('openmetrics')).body), true).types.get('process_cpu_user_seconds')).toBe('counter');
  });
});
