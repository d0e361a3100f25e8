/**
 * Dependencies most runs never use, loaded on first use: a sidecar's memory is
 * paid on every pod, and `yaml` alone adds about 9 MB of RSS to a process that
 * reads no YAML (measured: `node -e "import('yaml')"` against a bare node).
 */
import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';

const require = createRequire(import.meta.url);
let yaml: typeof Yaml | undefined;

/** `yaml`'s parse, loading the package the first time. */
export function parseYaml(text: string, options?: Yaml.ParseOptions & Yaml.DocumentOptions & Yaml.SchemaOptions & Yaml.ToJSOptions): unknown {
  yaml ??= require('yaml') as typeof Yaml;
  return yaml.parse(text, options);
}
