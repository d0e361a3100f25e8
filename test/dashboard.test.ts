/**
 * config/grafana/metrics-proxy.json. First its structure: a dashboard Grafana imports as it is (no
 * `__inputs`), unique panel ids, a layout without overlaps, and every panel and query on the `datasource`
 * variable. Then its queries: every panel query, with Grafana's variables substituted, runs against a real
 * Prometheus that scrapes real proxies under traffic (successes, uploads, service 500s, a dead upstream,
 * WebSocket sessions), and each must parse and return data. The variable queries (`label_values`) must
 * find the job and its instances. Skipped (with a message) where Prometheus is not installed.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';
import { describe, expect, it } from 'vitest';
import { deadUpstreamUrl, failOrEchoHandler, httpRequest, startProxy, startUpstream, wsSession } from './helpers.js';
import { type RunningPrometheus, prometheusTools, startPrometheus } from './prometheus.js';

const tools = prometheusTools();
if (tools === undefined) {
  console.warn("test/dashboard.test.ts: queries not run: no prometheus/promtool on PATH or in /usr/bin (Debian package `prometheus`; bash .ci/run installs it)");
}

const DASHBOARD_FILE = fileURLToPath(new URL('../config/grafana/metrics-proxy.json', import.meta.url));
const DATASOURCE = { type: 'prometheus', uid: '${datasource}' };
const JOB = 'my-first-go-app';
/** Grafana's own variables that a query may use, besides the dashboard's. */
const GLOBAL_VARIABLES = ['__rate_interval', '__interval', '__range'];

interface GridPos {
  x: number;
  y: number;
  w: number;
  h: number;
}
interface Target {
  refId?: string;
  expr?: unknown;
  format?: string;
  datasource?: unknown;
}
interface Panel {
  id?: unknown;
  type: string;
  title?: string;
  gridPos?: GridPos;
  datasource?: unknown;
  targets?: Target[];
  panels?: Panel[];
}
interface Variable {
  name: string;
  type: string;
  query?: string | { query?: string };
  datasource?: unknown;
  includeAll?: boolean;
  multi?: boolean;
  allValue?: string;
}
interface Dashboard {
  title?: string;
  uid?: string;
  schemaVersion?: number;
  templating: { list: Variable[] };
  panels: Panel[];
}

const text = await readFile(DASHBOARD_FILE, 'utf8');
const dashboard = JSON.parse(text) as Dashboard;
/** Every panel, those inside collapsed rows included. */
const panels: Panel[] = dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]);
const queryPanels = panels.filter((panel) => panel.type !== 'row');
/** The panels for a Prometheus that stores native histograms say so in their title. */
const isNative = (panel: Panel): boolean => (panel.title ?? '').endsWith('(native histograms)');
const queries = queryPanels.flatMap((panel) =>
  (panel.targets ?? []).map((target) => ({
    panel: panel.title ?? '',
    refId: target.refId ?? '',
    expr: String(target.expr),
    format: target.format,
    native: isNative(panel),
  })),
);
const variables = new Map(dashboard.templating.list.map((v) => [v.name, v]));

/** `$name` and `${name}` / `${name:format}` references in a query. */
const VARIABLE_REFERENCE = /\$\{(\w+)(?::\w+)?\}|\$(\w+)/g;

function substitute(expr: string, values: Readonly<Record<string, string>>): string {
  return expr.replace(VARIABLE_REFERENCE, (match, braced: string | undefined, bare: string | undefined) => {
    const value = values[braced ?? bare ?? ''];
    if (value === undefined) throw new Error(`no value for ${match} in ${expr}`);
    return value;
  });
}

function variableQuery(name: string): string {
  const query = variables.get(name)?.query;
  return typeof query === 'string' ? query : query?.query ?? '';
}

describe('the Grafana dashboard', () => {
  it('imports as it is: no __inputs, a schema version, a uid, and a prometheus `datasource` variable', () => {
    const raw = JSON.parse(text) as Record<string, unknown>;
    expect(raw.__inputs).toBeUndefined();
    expect(raw.__requires).toBeUndefined();
    expect(text).not.toMatch(/\$\{DS_/); // an export's placeholders
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.uid).toMatch(/^[\w-]{1,40}$/);
    expect(dashboard.title).toBeTruthy();
    expect(variables.get('datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    for (const name of ['job', 'instance']) {
      expect(variables.get(name), name).toMatchObject({ type: 'query', datasource: DATASOURCE });
      expect(variableQuery(name), name).toMatch(/^label_values\(/);
    }
    expect(variables.get('instance')).toMatchObject({ multi: true, includeAll: true, allValue: '.*' });
  });

  it('has unique panel ids and a layout on the 24-column grid without overlaps', () => {
    const ids = panels.map((panel) => panel.id);
    for (const id of ids) expect(Number.isInteger(id) && (id as number) > 0, `panel id ${String(id)}`).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);

    const taken = new Map<string, string>();
    for (const panel of dashboard.panels) {
      const grid = panel.gridPos;
      expect(grid, panel.title).toBeDefined();
      if (grid === undefined) continue;
      for (const key of ['x', 'y', 'w', 'h'] as const) expect(Number.isInteger(grid[key]), `${panel.title} gridPos.${key}`).toBe(true);
      expect(grid.x, panel.title).toBeGreaterThanOrEqual(0);
      expect(grid.y, panel.title).toBeGreaterThanOrEqual(0);
      expect(grid.w, panel.title).toBeGreaterThan(0);
      expect(grid.h, panel.title).toBeGreaterThan(0);
      expect(grid.x + grid.w, panel.title).toBeLessThanOrEqual(24);
      for (let x = grid.x; x < grid.x + grid.w; x++) {
        for (let y = grid.y; y < grid.y + grid.h; y++) {
          const other = taken.get(`${x},${y}`);
          expect(other, `${panel.title} overlaps ${other} at ${x},${y}`).toBeUndefined();
          taken.set(`${x},${y}`, panel.title ?? '');
        }
      }
    }
  });

  it('queries the `datasource` variable in every panel and target, each target with an expression', () => {
    expect(queryPanels.length).toBeGreaterThan(0);
    for (const panel of queryPanels) {
      expect(panel.title, `panel ${String(panel.id)}`).toBeTruthy();
      expect(panel.datasource, panel.title).toEqual(DATASOURCE);
      const targets = panel.targets ?? [];
      expect(targets.length, panel.title).toBeGreaterThan(0);
      expect(new Set(targets.map((t) => t.refId)).size, `${panel.title}: refIds`).toBe(targets.length);
      for (const target of targets) {
        expect(target.datasource, `${panel.title} ${target.refId}`).toEqual(DATASOURCE);
        expect(typeof target.expr === 'string' && target.expr.trim() !== '', `${panel.title} ${target.refId}: expr`).toBe(true);
      }
    }
    // every variable a query names exists
    const known = new Set([...variables.keys(), ...GLOBAL_VARIABLES]);
    for (const { panel, refId, expr } of queries) {
      for (const [, braced, bare] of expr.matchAll(VARIABLE_REFERENCE)) expect(known.has(braced ?? bare ?? ''), `${panel} ${refId}: ${expr}`).toBe(true);
    }
  });

  it('covers requests, errors, latency (heatmap and quantiles), in-flight, WebSocket and scrape health', () => {
    const all = queries.map((q) => q.expr).join('\n');
    for (const metric of [
      'http_server_request_duration_seconds_count',
      'http_server_request_duration_seconds_bucket',
      'http_server_active_requests',
      'metrics_proxy_upstream_errors_total',
      'metrics_proxy_websocket_sessions_active',
      'metrics_proxy_slo_objective_ratio',
      'up{',
      'scrape_duration_seconds',
      'promhttp_metric_handler_requests_total',
    ]) {
      expect(all, metric).toContain(metric);
    }
    for (const q of ['0.5', '0.9', '0.99']) expect(all).toContain(`histogram_quantile(${q},`);
    // Native panels read the histograms themselves: no _bucket, _count or _sum, no le.
    const native = queries.filter((q) => q.native);
    expect(native.length).toBeGreaterThanOrEqual(5);
    for (const q of native) expect(q.expr, q.panel).not.toMatch(/_bucket|_count|_sum|\ble\b/);
    for (const q of ['0.5', '0.9', '0.99']) expect(native.map((n) => n.expr).join('\n')).toContain(`histogram_quantile(${q}, sum(rate(http_server_request_duration_seconds{`);
    const heatmaps = queryPanels.filter((panel) => panel.type === 'heatmap');
    expect(heatmaps.length).toBeGreaterThan(0);
    for (const panel of heatmaps) {
      for (const target of panel.targets ?? []) {
        expect(target.format).toBe('heatmap');
        // Classic: bucket rates by le; native: the histogram's rate itself, which Grafana draws bucket by bucket.
        expect(String(target.expr)).toMatch(isNative(panel) ? /^sum\(rate\(\w+\{/ : /^sum by \(le\) \(rate\(\w+_bucket\{/);
      }
    }
  });
});



/** Grafana's rendering of a multi-value variable in a regex matcher: `(a|b)`, each value regex-escaped for a PromQL string. */
function grafanaRegex(values: readonly string[]): string {
  return `(${values.map((v) => v.replace(/[.*+?^${}()|[\]\\]/g, (c) => `\\\\${c}`)).join('|')})`;
}

/** An instant query straight over HTTP, so the status code is checked too. */
async function instantQuery(prometheus: RunningPrometheus, promql: string): Promise<{ status: number; body: string; values: number[] }> {
  const res = await fetch(`${prometheus.url}/api/v1/query?${new URLSearchParams({ query: promql }).toString()}`);
  const body = await res.text();
  let values: number[] = [];
  try {
    const parsed = JSON.parse(body) as { data?: { resultType: string; result: unknown } };
    const data = parsed.data;
    // A native histogram sample (a heatmap's query) counts as data by its observation count.
    if (data?.resultType === 'vector') {
      values = (data.result as Array<{ value?: [number, string]; histogram?: [number, { count: string }] }>).map((s) =>
        Number(s.value?.[1] ?? s.histogram?.[1].count),
      );
    }
    else if (data?.resultType === 'scalar') values = [Number((data.result as [number, string])[1])];
  } catch {
    // not JSON: reported through status and body
  }
  return { status: res.status, body, values };
}

describe.skipIf(tools === undefined)('the Grafana dashboard against a real Prometheus scraping real proxies', () => {
  it('every panel query parses and returns data, and the variable queries find the job and its instances', async ({ onTestFinished }) => {
    const upstream = await startUpstream(failOrEchoHandler);
    const wss = new WebSocketServer({ server: upstream.server });
    wss.on('connection', (ws) => ws.on('message', (data) => ws.send(data)));
    onTestFinished(async () => {
      wss.close();
      await upstream.close();
    });
    const proxy = await startProxy(upstream.url);
    onTestFinished(proxy.close);
    // a second instance of the job, whose service is down
    const goneUrl = await deadUpstreamUrl();
    const orphan = await startProxy(goneUrl);
    onTestFinished(orphan.close);
    const instances = [`127.0.0.1:${proxy.port}`, `127.0.0.1:${orphan.port}`];
    // One Prometheus as configured by default (classic histograms), one storing native histograms
    // (which then has no _bucket/_count/_sum series for them): each panel is queried on the one it is for.
    const targets = instances.map((address) => ({ job: JOB, address }));
    const prometheus = await startPrometheus({ scrapeIntervalSeconds: 1, targets });
    onTestFinished(prometheus.close);
    const nativePrometheus = await startPrometheus({ scrapeIntervalSeconds: 1, targets, nativeHistograms: true });
    onTestFinished(nativePrometheus.close);
    const both = async (scrapes: number): Promise<void> => {
      await Promise.all([prometheus.waitForScrapes(JOB, scrapes), nativePrometheus.waitForScrapes(JOB, scrapes)]);
    };

    // Sent twice with a scrape in between: a series' first sample holds the first round, so only the
    // second round is an increase that rate() sees.
    const round = async (): Promise<number[]> => {
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) statuses.push((await httpRequest(`${proxy.url}/api/items/${i}`)).status);
      for (let i = 0; i < 3; i++) statuses.push((await httpRequest(`${proxy.url}/api/items/${i}`, { method: 'POST', body: 'x'.repeat(100 * (i + 1)) })).status);
      for (let i = 0; i < 2; i++) statuses.push((await httpRequest(`${proxy.url}/api/fail`)).status);
      for (let i = 0; i < 2; i++) statuses.push((await httpRequest(`${orphan.url}/api/items/${i}`)).status);
      await wsSession(proxy, 2);
      return statuses;
    };
    const expected = [200, 200, 200, 200, 200, 200, 200, 200, 500, 500, 502, 502];
    expect(await round()).toEqual(expected);
    await both(1);
    const secondRound = Date.now();
    expect(await round()).toEqual(expected);
    await both(2);

    // Windows long enough to hold the second round and the scrape before it: at least Grafana's usual 1m.
    const window = `${Math.max(60, Math.ceil((Date.now() - secondRound) / 1000) + 10)}s`;
    const values: Record<string, string> = {
      job: JOB,
      instance: grafanaRegex(instances),
      __rate_interval: window,
      __interval: window,
      __range: window,
    };

    const failures: string[] = [];
    // Native panels on the native Prometheus; panels reading classic buckets on the classic one; every
    // other panel (counts and sums, which fall back to histogram_count/histogram_sum) on both.
    for (const { panel, refId, expr, native } of queries) {
      const promql = substitute(expr, values);
      const servers = native ? [nativePrometheus] : expr.includes('_bucket') ? [prometheus] : [prometheus, nativePrometheus];
      for (const server of servers) {
        const which = server === nativePrometheus ? 'native' : 'classic';
        const result = await instantQuery(server, promql);
        if (result.status !== 200) failures.push(`${panel} ${refId} (${which}): HTTP ${result.status}: ${result.body.slice(0, 300)}\n  ${promql}`);
        else if (!result.values.some(Number.isFinite)) failures.push(`${panel} ${refId} (${which}): no data (${result.body.slice(0, 300)})\n  ${promql}`);
      }
    }
    expect(failures).toEqual([]);

    // The variables: label_values(selector, label) is what Grafana asks the series API; here as PromQL.
    const labelValues = async (name: string): Promise<string[]> => {
      const match = /^label_values\((.+),\s*(\w+)\)$/s.exec(substitute(variableQuery(name), values));
      if (match === null) throw new Error(`${name}: not label_values(selector, label): ${variableQuery(name)}`);
      const [, selector, label] = match as unknown as [string, string, string];
      return (await prometheus.query(`group by (${label}) (${selector})`)).map((s) => s.metric[label] ?? '').sort();
    };
    expect(await labelValues('job')).toContain(JOB);
    expect(await labelValues('instance')).toEqual([...instances].sort());
  });
});
