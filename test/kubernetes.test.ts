/**
 * config/kubernetes/ holds examples people copy: a Deployment with the
 * metrics-proxy sidecar, a Service and a PodMonitor. No cluster here, so this
 * checks their structure and that they agree with the proxy itself: env names
 * are real options and their values parse, ports and probe paths are the ones
 * the proxy serves, names refer to real container ports, and the grace period
 * covers the drain. `kubectl kustomize` builds them too when kubectl exists.
 */
import { execFile } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { type Config, DEFAULTS, METRICS_TOKEN_ENV, VALUE_KEYS, envName, resolveConfig } from '../src/config/config.js';
import { HEALTH_PATH, READY_PATH } from '../src/admin/health.js';
import { ROOT } from './bin.js';

const DIR = join(ROOT, 'config', 'kubernetes');
const SIDECAR = 'metrics-proxy';
/** Between the proxy's exit at the latest and SIGKILL: log flush, process exit, kubelet slack. */
const MARGIN_MS = 5_000;

type Labels = Record<string, string>;
interface Port { name?: string; containerPort: number }
interface Probe { httpGet?: { path?: string; port?: string | number } }
interface Container {
  name: string;
  image: string;
  args?: string[];
  command?: string[];
  env?: Array<{ name: string; value?: unknown; valueFrom?: unknown }>;
  ports?: Port[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  lifecycle?: { preStop?: { sleep?: { seconds: number }; exec?: { command: string[] } } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: Record<string, unknown> & { capabilities?: { drop?: string[] } };
}
interface PodSpec {
  terminationGracePeriodSeconds?: number;
  enableServiceLinks?: boolean;
  securityContext?: Record<string, unknown>;
  containers: Container[];
}
interface Resource {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Labels };
  spec: Record<string, unknown>;
}

function load(file: string): Resource[] {
  return parseAllDocuments(readFileSync(join(DIR, file), 'utf8')).map((doc) => {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.join('; ')}`);
    return doc.toJS() as Resource;
  });
}

const files = readdirSync(DIR).filter((f) => /\.ya?ml$/.test(f)).sort();
const kustomization = load('kustomization.yaml')[0] as unknown as { kind: string; resources: string[] };
const resources = files.filter((f) => f !== 'kustomization.yaml').flatMap(load);

function only(kind: string): Resource {
  const found = resources.filter((r) => r.kind === kind);
  expect(found.map((r) => r.metadata.name), kind).toHaveLength(1);
  return found[0] as Resource;
}

const deployment = only('Deployment');
const service = only('Service');
const podMonitor = only('PodMonitor');
const template = deployment.spec.template as { metadata: { labels: Labels }; spec: PodSpec };
const pod = template.spec;
const podLabels = template.metadata.labels;
const sidecar = pod.containers.find((c) => c.name === SIDECAR) as Container;
/** What the sidecar will run with: its env through the proxy's own config resolution (throws on a bad value). */
function sidecarConfig(): Config {
  const env = Object.fromEntries((sidecar.env ?? []).map((e) => [e.name, typeof e.value === 'string' ? e.value : undefined]));
  return resolveConfig({ env });
}

function selects(selector: Labels, labels: Labels): boolean {
  return Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);
}

/** A container port by name or number → its number (throws when the name is not declared). */
function portNumber(container: Container, port: string | number | undefined): number {
  if (typeof port === 'number') return port;
  const found = container.ports?.find((p) => p.name === port);
  if (found === undefined) throw new Error(`${container.name} declares no port named ${String(port)}`);
  return found.containerPort;
}

function preStopMs(container: Container): number {
  const hook = container.lifecycle?.preStop;
  if (hook?.sleep !== undefined) return hook.sleep.seconds * 1000;
  const exec = hook?.exec?.command ?? [];
  return exec[0] === 'sleep' ? Number(exec[1]) * 1000 : 0;
}

describe('config/kubernetes manifests', () => {
  it('kustomization.yaml lists every manifest in the folder, and each has apiVersion, kind and a name', () => {
    expect(kustomization.kind).toBe('Kustomization');
    expect([...kustomization.resources].sort()).toEqual(files.filter((f) => f !== 'kustomization.yaml'));
    for (const r of resources) {
      expect(r.apiVersion, r.kind).toMatch(/^([\w.-]+\/)?v\d+(\w+)?$/);
      expect(r.metadata.name, r.kind).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    }
    expect(deployment.apiVersion).toBe('apps/v1');
    expect(service.apiVersion).toBe('v1');
    expect(podMonitor.apiVersion).toBe('monitoring.coreos.com/v1');
  });

  it('the Deployment selects its own pods, which hold the app and the sidecar', () => {
    const selector = (deployment.spec.selector as { matchLabels: Labels }).matchLabels;
    expect(selects(selector, podLabels)).toBe(true);
    expect(pod.containers.map((c) => c.name)).toContain(SIDECAR);
    expect(pod.containers.length).toBeGreaterThanOrEqual(2);
    for (const c of pod.containers) expect(c.image, c.name).toMatch(/:[\w.-]+$/);
    expect(sidecar.image).not.toMatch(/:latest$/);
  });

  it('the sidecar is configured by env alone: real option names, string values the proxy accepts', () => {
    const known = new Set([...VALUE_KEYS.map(envName), METRICS_TOKEN_ENV]);
    expect(sidecar.args).toBeUndefined();
    expect(sidecar.command).toBeUndefined(); // the image's ENTRYPOINT
    for (const entry of sidecar.env ?? []) {
      expect(known.has(entry.name), `${entry.name} is not a metrics-proxy option`).toBe(true);
      // Kubernetes refuses a number here: `value: 8000` must be written "8000".
      expect(typeof entry.value, entry.name).toBe('string');
    }
    expect(sidecarConfig).not.toThrow();
    expect(sidecarConfig().upstream?.hostname).toBe('127.0.0.1');
    // Service links could inject METRICS_PROXY_PORT=tcp://… from a Service named metrics-proxy.
    expect(pod.enableServiceLinks).toBe(false);
  });

  it('ports and probes are the ones the proxy serves', () => {
    const config = sidecarConfig();
    expect(config.port).toBe(DEFAULTS.port);
    expect(portNumber(sidecar, 'http')).toBe(config.port);
    const adminPort = config.metricsPort ?? config.port;
    const probes: Array<[Probe | undefined, string]> = [
      [sidecar.livenessProbe, HEALTH_PATH],
      [sidecar.readinessProbe, READY_PATH],
    ];
    for (const [probe, path] of probes) {
      expect(probe?.httpGet?.path).toBe(path);
      expect(portNumber(sidecar, probe?.httpGet?.port)).toBe(adminPort);
    }
  });

  it('the Service sends clients to the sidecar port, never to the app', () => {
    const config = sidecarConfig();
    const spec = service.spec as { selector: Labels; ports: Array<{ port: number; targetPort: string | number }> };
    expect(selects(spec.selector, podLabels)).toBe(true);
    expect(spec.ports.length).toBeGreaterThan(0);
    for (const port of spec.ports) {
      expect(typeof port.targetPort, 'target the port by name').toBe('string');
      expect(portNumber(sidecar, port.targetPort)).toBe(config.port);
    }
  });

  it('the PodMonitor scrapes the sidecar where it serves metrics', () => {
    const config = sidecarConfig();
    const spec = podMonitor.spec as { selector: { matchLabels: Labels }; podMetricsEndpoints: Array<{ port: string; path?: string }> };
    expect(selects(spec.selector.matchLabels, podLabels)).toBe(true);
    expect(spec.podMetricsEndpoints.length).toBe(1);
    for (const endpoint of spec.podMetricsEndpoints) {
      expect(portNumber(sidecar, endpoint.port)).toBe(config.metricsPort ?? config.port);
      expect(endpoint.path ?? '/metrics').toBe(config.metricsPath);
    }
  });

  it('the grace period covers preStop + drain delay + shutdown timeout, and the app outlives the drain', () => {
    const config = sidecarConfig();
    const graceMs = (pod.terminationGracePeriodSeconds ?? 30) * 1000;
    expect(config.drainDelayMs).toBeGreaterThan(0);
    expect(preStopMs(sidecar) + config.drainDelayMs + config.shutdownTimeoutMs + MARGIN_MS).toBeLessThanOrEqual(graceMs);
    for (const app of pod.containers.filter((c) => c !== sidecar)) {
      // The app keeps serving until the proxy has stopped accepting, and still has time to finish after.
      expect(preStopMs(app), app.name).toBeGreaterThan(preStopMs(sidecar) + config.drainDelayMs);
      expect(preStopMs(app) + MARGIN_MS, app.name).toBeLessThanOrEqual(graceMs);
    }
  });

  it('resources and a locked-down securityContext for the sidecar', () => {
    for (const key of ['cpu', 'memory']) {
      expect(sidecar.resources?.requests?.[key], `requests.${key}`).toBeDefined();
      expect(sidecar.resources?.limits?.[key], `limits.${key}`).toBeDefined();
    }
    const security = { ...pod.securityContext, ...sidecar.securityContext };
    expect(security.runAsNonRoot).toBe(true);
    expect(security.runAsUser ?? 1000).not.toBe(0);
    expect(security.readOnlyRootFilesystem).toBe(true);
    expect(security.allowPrivilegeEscalation).toBe(false);
    expect(sidecar.securityContext?.capabilities?.drop).toContain('ALL');
  });
});

const kubectl = await promisify(execFile)('kubectl', ['version', '--client'], { timeout: 15_000 }).then(
  () => true,
  () => false,
);

describe('kubectl kustomize', () => {
  it.skipIf(!kubectl)(kubectl ? 'builds the same resources' : 'skipped: kubectl is not installed', async () => {
    const { stdout } = await promisify(execFile)('kubectl', ['kustomize', DIR], { timeout: 30_000 });
    const built = parseAllDocuments(stdout).map((d) => d.toJS() as Resource);
    const ids = (list: Resource[]): string[] => list.map((r) => `${r.kind}/${r.metadata.name}`).sort();
    expect(ids(built)).toEqual(ids(resources));
  });
});
