/**
 * Route templates from an OpenAPI 3.x document (JSON or YAML), read once at
 * start-up. Every problem is a ConfigError whose one-line message names the
 * file and the reason.
 */
import { readFileSync } from 'node:fs';
import { parseYaml } from '../lazy-modules.js';
import { ConfigError } from '../errors.js';
import { parseRouteTemplate } from './routes.js';

const OPTION = '--openapi';

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const firstLine = (err: unknown): string => (err instanceof Error ? err.message : String(err)).split('\n', 1)[0] ?? '';

/**
 * The document's path keys joined to the prefix, in `:name` form: `/users/{id}`
 * under `/api` → `/api/users/:id`. A key that already starts with the prefix
 * is kept as it is; `x-` extension keys are skipped; duplicates are dropped.
 */
export function loadOpenApiTemplates(file: string, apiPrefix: string): string[] {
  const fail = (reason: string): ConfigError =>
    new ConfigError(OPTION, `invalid ${OPTION} file ${JSON.stringify(file)}: ${reason}`);

  let text: string;
  try {
    text = readFileSync(file, 'utf8').replace(/^\uFEFF/, '');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw fail(`cannot read it (${code ?? firstLine(err)})`);
  }
  let doc: unknown;
  try {
    // JSON is YAML too, but JSON.parse gives the clearer message for a .json file.
    doc = /\.json$/i.test(file) ? JSON.parse(text) : parseYaml(text, { logLevel: 'error' });
  } catch (err) {
    throw fail(`not valid ${/\.json$/i.test(file) ? 'JSON' : 'YAML'}: ${firstLine(err)}`);
  }

  if (!isObject(doc)) throw fail('expected an OpenAPI 3 document (an object at the top level)');
  const version = typeof doc.openapi === 'number' ? String(doc.openapi) : doc.openapi;
  if (typeof version !== 'string' || !/^3\.\d/.test(version)) {
    const found = doc.swagger !== undefined ? `swagger: ${JSON.stringify(doc.swagger)}` : `openapi: ${JSON.stringify(doc.openapi) ?? 'missing'}`;
    throw fail(`expected openapi: 3.x, found ${found}`);
  }
  if (!isObject(doc.paths)) throw fail('expected a "paths" object');

  const templates = new Set<string>();
  for (const key of Object.keys(doc.paths)) {
    if (key.startsWith('x-')) continue;
    if (!key.startsWith('/')) throw fail(`path ${JSON.stringify(key)} does not start with /`);
    const joined = joinPrefix(apiPrefix, key);
    let template: string;
    try {
      template = parseRouteTemplate(joined, OPTION);
    } catch (err) {
      // keep only the reason: the file and the key already say which template
      const lead = `invalid route template for ${OPTION}: ${JSON.stringify(joined)} (`;
      const message = firstLine(err);
      const reason = message.startsWith(lead) ? message.slice(lead.length, -1) : message;
      throw fail(`path ${JSON.stringify(key)}: ${reason}`);
    }
    templates.add(template);
  }
  if (templates.size === 0) throw fail('"paths" is empty');
  return [...templates];
}

function joinPrefix(apiPrefix: string, key: string): string {
  if (apiPrefix === '/' || key === apiPrefix || key.startsWith(`${apiPrefix}/`)) return key;
  return key === '/' ? apiPrefix : apiPrefix + key;
}
