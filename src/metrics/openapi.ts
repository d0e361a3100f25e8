/**
 * Route templates from an OpenAPI 3.x document (JSON or YAML), read once at
 * start-up. Every problem is an OpenApiError (MP_ERR_OPENAPI_UNREADABLE or
 * MP_ERR_OPENAPI_INVALID) whose one-line message names the file and the reason.
 */
import { prefixMatcher } from './api-prefix.js';
import { readFileSync } from 'node:fs';
import { parseYaml } from '../lazy-modules.js';
import { ConfigError, OpenApiError } from '../errors.js';
import { parseRouteTemplate } from './route-templates.js';

const OPTION = '--openapi';

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const firstLine = (err: unknown): string => (err instanceof Error ? err.message : String(err)).split('\n', 1)[0] ?? '';

const invalid = (file: string, reason: string, details?: { path?: string; cause?: unknown }): OpenApiError =>
  new OpenApiError('MP_ERR_OPENAPI_INVALID', file, reason, details);

function readDocument(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').replace(/^\uFEFF/, '');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new OpenApiError('MP_ERR_OPENAPI_UNREADABLE', file, `cannot read it (${code ?? firstLine(err)})`, { cause: err });
  }
  const json = /\.json$/i.test(file);
  try {
    // JSON is YAML too, but JSON.parse gives the clearer message for a .json file.
    return json ? JSON.parse(text) : parseYaml(text, { logLevel: 'error' });
  } catch (err) {
    throw invalid(file, `not valid ${json ? 'JSON' : 'YAML'}: ${firstLine(err)}`, { cause: err });
  }
}

/** The document's `paths` object, once the document is known to be OpenAPI 3. */
function pathsOf(doc: unknown, file: string): Record<string, unknown> {
  if (!isObject(doc)) throw invalid(file, 'expected an OpenAPI 3 document (an object at the top level)');
  const version = typeof doc.openapi === 'number' ? String(doc.openapi) : doc.openapi;
  if (typeof version !== 'string' || !/^3\.\d/.test(version)) {
    const found = doc.swagger !== undefined ? `swagger: ${JSON.stringify(doc.swagger)}` : `openapi: ${JSON.stringify(doc.openapi) ?? 'missing'}`;
    throw invalid(file, `expected openapi: 3.x, found ${found}`);
  }
  if (!isObject(doc.paths)) throw invalid(file, 'expected a "paths" object');
  return doc.paths;
}

function templateOf(file: string, key: string, apiPrefix: string): string {
  const where = `path ${JSON.stringify(key)}`;
  if (!key.startsWith('/')) throw invalid(file, `${where} does not start with /`, { path: key });
  try {
    return parseRouteTemplate(joinPrefix(apiPrefix, key), OPTION);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    // The file and the key already say which template: the route module's reason is enough.
    throw invalid(file, `${where}: ${err.reason}`, { path: key, cause: err });
  }
}

/**
 * The document's path keys joined to the prefix, in `:name` form: `/users/{id}`
 * under `/api` → `/api/users/:id`. A key that already starts with the prefix
 * is kept as it is; `x-` extension keys are skipped; duplicates are dropped.
 */
export function loadOpenApiTemplates(file: string, apiPrefix: string): string[] {
  const templates = new Set<string>();
  for (const key of Object.keys(pathsOf(readDocument(file), file))) {
    if (!key.startsWith('x-')) templates.add(templateOf(file, key, apiPrefix));
  }
  if (templates.size === 0) throw invalid(file, '"paths" is empty');
  return [...templates];
}

function joinPrefix(apiPrefix: string, key: string): string {
  if (prefixMatcher(apiPrefix)(key)) return key;
  return key === '/' ? apiPrefix : apiPrefix + key;
}
