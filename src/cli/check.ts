/**
 * `metrics-proxy check`: everything start-up validates (options, the config
 * file, the token file, route templates, the OpenAPI document), the resolved
 * configuration as JSON on stdout with the token masked, and one probe of the
 * upstream, the same one /readyz makes. Exit 0 ready, 1 unreachable, 2 invalid.
 * Options, files and the token file are checked by resolving them (see main.ts);
 * this module checks what only buildApp would refuse.
 */
import type { CliIo } from './args.js';
import { type Settings, VALUE_KEYS, fileKey } from '../config/config.js';
import { ProxyError } from '../errors.js';
import { createHealth } from '../admin/health.js';
import { loadOpenApiTemplates } from '../metrics/openapi.js';
import { createRouteTable } from '../metrics/routes.js';

export const EXIT_READY = 0;
export const EXIT_UNREACHABLE = 1;
export const EXIT_INVALID = 2;

const PROGRAM = 'metrics-proxy';
export const MASK = '***';


/** The upstream probe's outcome as `check` prints it. */
export interface UpstreamReport {
  readonly url: string | null;
  /** `TCP connect`, `GET <path>`, or null when nothing was probed (--demo). */
  readonly probe: string | null;
  readonly reachable: boolean | null;
  readonly error?: string;
}

export interface CheckReport {
  readonly valid: true;
  readonly configFile: string | null;
  /** Under the config-file keys, so it reads like a config file; the token itself is never shown. */
  readonly config: Record<string, unknown>;
  readonly upstream: UpstreamReport;
}

const jsonValue = (value: unknown): unknown => (value instanceof URL ? value.href : value === undefined ? null : value);

/** The resolved settings under their file keys, secrets masked: the token shows as `***` when one is in force. */
export function describeConfig(config: Settings): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of VALUE_KEYS) out[fileKey(key)] = jsonValue(config[key]);
  // Only the token is secret; the token file's path is not.
  out.metricsToken = config.metricsToken === undefined && config.metricsTokenFile === undefined ? null : MASK;
  out.demo = config.demo;
  return out;
}

/** What buildApp would still refuse after resolveConfig: a bad OpenAPI document, a route outside the prefix. */
function validateStartUp(config: Settings): void {
  createRouteTable({
    apiPrefix: config.apiPrefix,
    templates: config.routes,
    openapiTemplates: config.openapi === undefined ? [] : loadOpenApiTemplates(config.openapi, config.apiPrefix),
    maxRoutes: config.maxRoutes,
  });
}

async function probe(config: Settings): Promise<UpstreamReport> {
  if (config.upstream === undefined) {
    // --demo: the upstream is built in and starts with the proxy; there is nothing to reach yet.
    return { url: null, probe: null, reachable: null };
  }
  const health = createHealth({ upstream: config.upstream, readyPath: config.readyPath, timeoutMs: config.connectTimeoutMs });
  const result = await health.checkUpstream();
  const described = { url: config.upstream.href, probe: config.readyPath === undefined ? 'TCP connect' : `GET ${config.readyPath}` };
  return result.ok ? { ...described, reachable: true } : { ...described, reachable: false, error: result.msg };
}

/** Indented JSON with lists of plain values kept on one line (bucket lists would take a screen each). */
export function formatJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(/\[\n\s+([^[\]{}]*?)\n\s*\]/g, (_m, items: string) => `[${items.split(/,\n\s*/).join(', ')}]`);
}

export async function runCheck(config: Settings, configFile: string | undefined, io: CliIo): Promise<number> {
  try {
    validateStartUp(config);
  } catch (err) {
    if (!(err instanceof ProxyError)) throw err;
    io.stderr.write(`${PROGRAM}: ${err.message}\n`);
    return EXIT_INVALID;
  }
  const upstream = await probe(config);
  const report: CheckReport = { valid: true, configFile: configFile ?? null, config: describeConfig(config), upstream };
  io.stdout.write(`${formatJson(report)}\n`);
  if (upstream.reachable === false) {
    io.stderr.write(`${PROGRAM}: ${upstream.error ?? 'upstream unreachable'} (${upstream.probe ?? ''} ${upstream.url ?? ''})\n`);
    return EXIT_UNREACHABLE;
  }
  return EXIT_READY;
}
