/**
 * The Prometheus side of config/: both scrape configs pass `promtool check config` (which also
 * checks the rule files they load), the rules pass `promtool check rules` and their unit tests
 * (`promtool test rules config/prometheus/*.test.yml`, synthetic series), and then the real thing:
 * a real Prometheus loads rules.yml and scrapes real proxies, so every recording rule must find the
 * metric and label names the proxy really exposes, and the alerts a broken upstream deserves go
 * pending or firing. A last test runs the Kubernetes relabeling in a real Prometheus, on pod
 * labels fed through file discovery (Debian's Prometheus has no Kubernetes discovery).
 * Skipped (with a message) where Prometheus is not installed; CI installs it (.ci/run).
 */
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type TestContext, describe, it } from 'vitest';
import { parse } from 'yaml';
import { type Proxy, echoHandler, httpRequest, settle, startProxy, startUpstream, failOrEchoHandler, deadUpstreamUrl } from './helpers.js';
import { type RunningPrometheus, prometheusTools, runPromtool, startPrometheus } from './prometheus.js';

const tools = prometheusTools();
if (tools === undefined) {
  console.warn("test/rules.test.ts skipped: no prometheus/promtool on PATH or in /usr/bin (Debian package `prometheus`; bash .ci/run installs it)");
}

const CONFIG_DIR = fileURLToPath(new URL('../config/', import.meta.url));
const STATIC_CONFIG = join(CONFIG_DIR, 'prometheus.yml');
const KUBERNETES_CONFIG = join(CONFIG_DIR, 'prometheus-kubernetes.yml');
const RULES_DIR = join(CONFIG_DIR, 'prometheus');
const RULES = join(RULES_DIR, 'rules.yml');
/** The job name of config/prometheus.yml, which the rules' `up` alerts select. */
const JOB = 'my-first-go-app';
/** --slo's default, and the rules' fallback for a proxy that does not expose it. */
const DEFAULT_OBJECTIVE = 0.999;

type Expect = TestContext['expect'];
type Cleanup = TestContext['onTestFinished'];

/** Runs promtool and expects exit code 0, showing its output otherwise; returns the output. */
async function promtoolOk(expect: Expect, args: readonly string[]): Promise<string> {
  const { code, output } = await runPromtool(args);
  expect(code, `promtool ${args.join(' ')} exited with ${code}:\n${output}`).toBe(0);
  return output;
}

interface ScrapeConfig {
  job_name: string;
  kubernetes_sd_configs?: Array<Record<string, unknown>>;
  file_sd_configs?: Array<{ files: string[] }>;
  relabel_configs?: unknown[];
}

/** config/prometheus-kubernetes.yml with pod discovery replaced by file discovery of `targetsFile`; rule files made absolute. */
async function kubernetesConfigOnFiles(expect: Expect, targetsFile: string): Promise<{ rule_files: string[]; scrape_configs: ScrapeConfig[] }> {
  const config = parse(await readFile(KUBERNETES_CONFIG, 'utf8')) as { rule_files: string[]; scrape_configs: ScrapeConfig[] };
  const [job] = config.scrape_configs;
  if (job === undefined) throw new Error('no scrape config');
  expect(job.kubernetes_sd_configs?.map((sd) => sd.role)).toEqual(['pod']);
  delete job.kubernetes_sd_configs;
  job.file_sd_configs = [{ files: [targetsFile] }];
  return { ...config, rule_files: config.rule_files.map((file) => join(CONFIG_DIR, file)) };
}

async function tempDir(onTestFinished: Cleanup): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'metrics-proxy-rules-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

describe.skipIf(tools === undefined)('promtool on config/', { concurrent: true }, () => {
  it('config/prometheus.yml is a valid config, and the rule file it loads resolves and is valid', async ({ expect }) => {
    const output = await promtoolOk(expect, ['check', 'config', STATIC_CONFIG]);
    expect(output).toContain(`Checking ${RULES}`);
    expect(output).toMatch(/SUCCESS: \d+ rules found/);
  });

  it('config/prometheus-kubernetes.yml is a valid config, and the rule file it loads resolves and is valid', async ({ expect, onTestFinished }) => {
    const direct = await runPromtool(['check', 'config', KUBERNETES_CONFIG]);
    if (direct.code === 0) {
      expect(direct.output).toContain(`Checking ${RULES}`);
      return;
    }
    // Debian builds Prometheus without Kubernetes discovery: that must be the only complaint.
    expect(direct.output, direct.output).toMatch(/field kubernetes_sd_configs not found/);
    console.warn('promtool here has no Kubernetes discovery (Debian removes it): checking prometheus-kubernetes.yml with file discovery in its place');
    const dir = await tempDir(onTestFinished);
    const file = join(dir, 'prometheus-kubernetes.yml');
    await writeFile(file, JSON.stringify(await kubernetesConfigOnFiles(expect, join(dir, 'pods.json'))));
    const output = await promtoolOk(expect, ['check', 'config', file]);
    expect(output).toContain(`Checking ${RULES}`);
  });

  it('config/prometheus/rules.yml passes promtool check rules', async ({ expect }) => {
    const output = await promtoolOk(expect, ['check', 'rules', RULES]);
    expect(output).toMatch(/SUCCESS: \d+ rules found/);
  });

  it('the rules pass their unit tests (promtool test rules config/prometheus/*.test.yml)', async ({ expect }) => {
    const files = (await readdir(RULES_DIR)).filter((name) => name.endsWith('.test.yml')).sort();
    expect(files.length).toBeGreaterThan(0);
    const output = await promtoolOk(expect, ['test', 'rules', ...files.map((name) => join(RULES_DIR, name))]);
    expect(output.match(/SUCCESS/g)?.length, output).toBe(files.length);
  });
});


interface ApiRule {
  name: string;
  type: 'recording' | 'alerting';
  health: string;
  lastError?: string;
}
interface ApiAlert {
  labels: Record<string, string>;
  state: 'pending' | 'firing';
}

async function evaluatedRules(prometheus: RunningPrometheus): Promise<ApiRule[]> {
  const data = (await prometheus.api('/api/v1/rules')) as { groups: Array<{ rules: ApiRule[] }> };
  return data.groups.flatMap((group) => group.rules);
}

async function activeAlerts(prometheus: RunningPrometheus): Promise<ApiAlert[]> {
  return ((await prometheus.api('/api/v1/alerts')) as { alerts: ApiAlert[] }).alerts;
}

/** One alert per line, "name state label=value…", sorted: readable in a failed expectation. */
function describeAlerts(alerts: readonly ApiAlert[]): string[] {
  return alerts
    .map(({ labels, state }) => {
      const { alertname, ...rest } = labels;
      const pairs = Object.entries(rest).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}=${v}`);
      return [alertname, state, ...pairs].join(' ');
    })
    .sort();
}

describe.skipIf(tools === undefined)('the rules in a real Prometheus scraping real proxies', { concurrent: true }, () => {
  it('record every series from the real metric names, and raise the alerts a failing upstream deserves', async ({ expect, onTestFinished }) => {
    const upstream = await startUpstream(failOrEchoHandler);
    onTestFinished(upstream.close);
    // A budget of two inferred routes, so that a third route overflows.
    const proxy = await startProxy(upstream.url, { maxRoutes: 2 });
    onTestFinished(proxy.close);
    // A second instance of the service, whose upstream is gone.
    const goneUrl = await deadUpstreamUrl();
    const orphan = await startProxy(goneUrl);
    onTestFinished(orphan.close);
    const prometheus = await startPrometheus({
      scrapeIntervalSeconds: 1,
      ruleFiles: [RULES],
      targets: [
        { job: JOB, address: `127.0.0.1:${proxy.port}` },
        { job: JOB, address: `127.0.0.1:${orphan.port}` },
      ],
    });
    onTestFinished(prometheus.close);

    // A round of traffic: 10 successes, 4 service 500s, 3 new routes beyond the budget, 3 requests the
    // orphan cannot forward. Sent twice, with a scrape in between: a series' first sample already holds
    // its first round, and only the second round is an increase that rate() sees.
    const round = async (n: number): Promise<number[]> => {
      const statuses: number[] = [];
      const get = async (base: Proxy, path: string) => statuses.push((await httpRequest(`${base.url}${path}`)).status);
      for (let i = 0; i < 10; i++) await get(proxy, `/api/items/${i}`);
      for (let i = 0; i < 4; i++) await get(proxy, '/api/fail');
      for (let i = 0; i < 3; i++) await get(proxy, `/api/scan-${n}-${i}/x`);
      for (let i = 0; i < 3; i++) await get(orphan, `/api/items/${i}`);
      return statuses;
    };
    const statuses = [...Array<number>(10).fill(200), ...Array<number>(4).fill(500), ...Array<number>(3).fill(200), ...Array<number>(3).fill(502)];
    expect(await round(1)).toEqual(statuses);
    await prometheus.waitForScrapes(JOB, 1);
    expect(await round(2)).toEqual(statuses);
    // Two scrapes after it: every rate() window holds a sample before and after the second round.
    await prometheus.waitForScrapes(JOB, 2);

    // Every rule evaluates cleanly, and every recording rule yields series labelled with the job.
    const rules = await evaluatedRules(prometheus);
    expect(rules.length).toBeGreaterThan(0);
    const recorded = rules.filter((rule) => rule.type === 'recording').map((rule) => rule.name);
    expect(recorded.length).toBeGreaterThan(0);
    for (const name of recorded) {
      const series = await settle(() => prometheus.query(`${name}{job="${JOB}"}`), (result) => result.length > 0, 10_000);
      expect(series.length, `${name}: no series`).toBeGreaterThan(0);
    }
    for (const rule of await evaluatedRules(prometheus)) expect({ rule: rule.name, health: rule.health, lastError: rule.lastError ?? '' }).toEqual({ rule: rule.name, health: 'ok', lastError: '' });

    // Values the traffic fixes exactly: /api/fail fails every time.
    const ratios = await settle(
      () => prometheus.query(`job_route:http_server_request_errors:ratio_rate5m{job="${JOB}"}`),
      (result) => result.some((s) => s.metric.http_route === '/api/fail'),
      10_000,
    );
    expect(ratios.filter((s) => s.metric.http_route === '/api/fail').map((s) => s.value), JSON.stringify(ratios)).toEqual([1]);

    // The objective: from metrics_proxy_slo_objective_ratio (--slo) when the proxy exposes it.
    const objective = await prometheus.query(`metrics_proxy_slo_objective_ratio{job="${JOB}"}`);
    if (objective.length === 0) {
      console.warn('metrics_proxy_slo_objective_ratio is not exposed by this proxy: the burn-rate alerts used their 0.999 fallback');
    } else {
      expect(objective.map((s) => s.value)).toEqual(objective.map(() => DEFAULT_OBJECTIVE));
    }
    const [budget] = await prometheus.query(`job:metrics_proxy_slo_error_budget:ratio{job="${JOB}"}`);
    expect(budget?.value).toBeCloseTo(1 - DEFAULT_OBJECTIVE, 12);

    // 7 of 20 valid requests failed: every burn-rate window is far over its threshold (they have
    // no `for`: firing at once). The rest have a `for` and are pending; the proxies are up.
    const expected = [
      `MetricsProxyErrorBudgetBurn firing burn_rate=1 job=${JOB} long_window=3d severity=warning short_window=6h`,
      `MetricsProxyErrorBudgetBurn firing burn_rate=14.4 job=${JOB} long_window=1h severity=critical short_window=5m`,
      `MetricsProxyErrorBudgetBurn firing burn_rate=3 job=${JOB} long_window=1d severity=warning short_window=2h`,
      `MetricsProxyErrorBudgetBurn firing burn_rate=6 job=${JOB} long_window=6h severity=critical short_window=30m`,
      `MetricsProxyHighErrorRatio pending http_route=/api/fail job=${JOB} severity=warning`,
      `MetricsProxyHighErrorRatio pending http_route=/api/items/:id job=${JOB} severity=warning`,
      `MetricsProxyRouteBudgetOverflow firing instance=127.0.0.1:${proxy.port} job=${JOB} severity=warning`,
      `MetricsProxyUpstreamUnreachable pending error_type=connect_refused instance=127.0.0.1:${orphan.port} job=${JOB} severity=critical`,
    ];
    const alerts = await settle(
      async () => describeAlerts(await activeAlerts(prometheus)).filter((line) => !line.startsWith('MetricsProxyHighLatency ')),
      (lines) => expected.every((line) => lines.includes(line)),
      10_000,
    );
    // Latency depends on this machine's load, so MetricsProxyHighLatency is left out; everything else is exact.
    expect(alerts).toEqual(expected);
  });

  it('keep the sidecar metrics port of running pods, with namespace, pod, container and app labels (the Kubernetes relabeling)', async ({ expect, onTestFinished }) => {
    const upstream = await startUpstream(echoHandler);
    onTestFinished(upstream.close);
    const cart = await startProxy(upstream.url);
    onTestFinished(cart.close);
    const billing = await startProxy(upstream.url, { metricsPath: '/internal/metrics' });
    onTestFinished(billing.close);
    const shop = await startProxy(upstream.url);
    onTestFinished(shop.close);

    // What Kubernetes pod discovery would report: one target per declared container port.
    const pod = (address: string, labels: Record<string, string>) => ({
      targets: [address],
      labels: { __meta_kubernetes_namespace: 'shop', __meta_kubernetes_pod_phase: 'Running', ...labels },
    });
    const pods = [
      // the sidecar port of a running pod, which has both app labels
      pod(`127.0.0.1:${cart.port}`, {
        __meta_kubernetes_pod_name: 'cart-7d9f',
        __meta_kubernetes_pod_container_name: 'metrics-proxy',
        __meta_kubernetes_pod_container_port_name: 'metrics-proxy',
        __meta_kubernetes_pod_label_app_kubernetes_io_name: 'cart',
        __meta_kubernetes_pod_label_app: 'cart-legacy',
      }),
      // the sidecar's own proxied port, and the service's ports (one named like the sidecar's), in the same pod
      pod(`127.0.0.1:${upstream.port}`, {
        __meta_kubernetes_pod_name: 'cart-7d9f',
        __meta_kubernetes_pod_container_name: 'metrics-proxy',
        __meta_kubernetes_pod_container_port_name: 'http',
      }),
      pod(`127.0.0.1:${upstream.port}`, {
        __meta_kubernetes_pod_name: 'cart-7d9f',
        __meta_kubernetes_pod_container_name: 'cart',
        __meta_kubernetes_pod_container_port_name: 'metrics',
      }),
      // a sidecar as in config/kubernetes/: container metrics-proxy, admin port named metrics
      pod(`127.0.0.1:${shop.port}`, {
        __meta_kubernetes_pod_name: 'my-service-5c8b',
        __meta_kubernetes_pod_container_name: 'metrics-proxy',
        __meta_kubernetes_pod_container_port_name: 'metrics',
        __meta_kubernetes_pod_label_app_kubernetes_io_name: 'my-service',
      }),
      // a sidecar with another metrics path, and only the `app` label
      pod(`127.0.0.1:${billing.port}`, {
        __meta_kubernetes_namespace: 'billing',
        __meta_kubernetes_pod_name: 'billing-0',
        __meta_kubernetes_pod_container_name: 'sidecar',
        __meta_kubernetes_pod_container_port_name: 'metrics-proxy',
        __meta_kubernetes_pod_annotation_metrics_proxy_path: '/internal/metrics',
        __meta_kubernetes_pod_label_app: 'billing',
      }),
      // opted out
      pod('127.0.0.1:1', {
        __meta_kubernetes_pod_name: 'batch-1',
        __meta_kubernetes_pod_container_name: 'metrics-proxy',
        __meta_kubernetes_pod_container_port_name: 'metrics-proxy',
        __meta_kubernetes_pod_annotation_metrics_proxy_scrape: 'false',
      }),
      // not started yet
      pod('127.0.0.1:2', {
        __meta_kubernetes_pod_name: 'cart-new',
        __meta_kubernetes_pod_phase: 'Pending',
        __meta_kubernetes_pod_container_name: 'metrics-proxy',
        __meta_kubernetes_pod_container_port_name: 'metrics-proxy',
      }),
    ];
    const dir = await tempDir(onTestFinished);
    const targetsFile = join(dir, 'pods.json');
    await writeFile(targetsFile, JSON.stringify(pods));
    const config = await kubernetesConfigOnFiles(expect, targetsFile);
    const prometheus = await startPrometheus({ scrapeIntervalSeconds: 1, targets: [], scrapeConfigs: config.scrape_configs });
    onTestFinished(prometheus.close);
    const job = config.scrape_configs[0]?.job_name ?? '';
    expect(job).toBe('metrics-proxy');
    await prometheus.waitForScrapes(job, 1);

    const up = await prometheus.query(`up{job="${job}"}`);
    const targets = up
      .map((s): Record<string, string | number> => ({ ...s.metric, value: s.value }))
      .sort((a, b) => String(a.pod).localeCompare(String(b.pod)));
    expect(targets).toEqual([
      { __name__: 'up', job, instance: `127.0.0.1:${billing.port}`, namespace: 'billing', pod: 'billing-0', container: 'sidecar', app: 'billing', value: 1 },
      { __name__: 'up', job, instance: `127.0.0.1:${cart.port}`, namespace: 'shop', pod: 'cart-7d9f', container: 'metrics-proxy', app: 'cart', value: 1 },
      { __name__: 'up', job, instance: `127.0.0.1:${shop.port}`, namespace: 'shop', pod: 'my-service-5c8b', container: 'metrics-proxy', app: 'my-service', value: 1 },
    ]);
    const dropped = ((await prometheus.api('/api/v1/targets', { state: 'dropped' })) as { droppedTargets: unknown[] }).droppedTargets;
    expect(dropped.length).toBe(4);
    // The proxy's own series carry the pod's labels.
    expect((await prometheus.query(`apiErrorCount{job="${job}",namespace="billing",app="billing",type="api"}`)).length).toBe(1);
  });
});
