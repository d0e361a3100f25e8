/**
 * Dependencies most runs never use, loaded on first use: a sidecar's memory is
 * paid on every pod, and `yaml` alone adds about 9 MB of RSS to a process that
 * reads no YAML (measured: `node -e "import('yaml')"` against a bare node).
 */
import { createRequire } from 'node:module';
import type * as Tls from 'node:tls';
import type * as Yaml from 'yaml';

const require = createRequire(import.meta.url);
let yaml: typeof Yaml | undefined;
let tls: typeof Tls | undefined;

/** `yaml`'s parse, loading the package the first time. */
export function parseYaml(text: string, options?: Yaml.ParseOptions & Yaml.DocumentOptions & Yaml.SchemaOptions & Yaml.ToJSOptions): unknown {
  yaml ??= require('yaml') as typeof Yaml;
  return yaml.parse(text, options);
}

/**
 * node:tls's connect, the module required rather than imported: an ES import of a built-in reads
 * every export, and node:tls's `rootCertificates` getter then parses Node's ~140 root CAs, 0.3 MB
 * of RSS kept by a process that may never speak TLS (measured on the bin's bundle).
 */
export function connectTls(options: Tls.ConnectionOptions, secureConnectListener?: () => void): Tls.TLSSocket {
  tls ??= require('node:tls') as typeof Tls;
  return tls.connect(options, secureConnectListener);
}
