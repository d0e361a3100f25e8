/**
 * The --config file layer: reading (YAML, JSON, errors naming the file), the
 * precedence defaults < file < env < flags, native YAML types through the same
 * parsers as flags, one-line errors naming file and key, and the example file,
 * which must always load to exactly DEFAULTS.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { DEFAULTS, VALUE_KEYS, fileKey, resolveConfig, resolveLayers, resolveSettings } from '../src/config/config.js';
import { loadConfigFile, parseConfigText } from '../src/config/file.js';
import { type ConfigErrorCode, ConfigFileError, UnknownOptionError } from '../src/errors.js';
import { configError } from './helpers.js';
import { ROOT } from './bin.js';

const EXAMPLE = join(ROOT, 'config', 'metrics-proxy.example.yaml');
const upstream = 'http://127.0.0.1:3000';


async function tempFile(name: string, text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'metrics-proxy-config-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

const fromYaml = (text: string, path = 'proxy.yaml') => parseConfigText(text, path);

describe('config file: values', () => {
  it('takes every kind of value in its native YAML type', () => {
    const file = fromYaml(`
upstream: http://svc:3000
port: 9000
apiPrefix: /v1/
connectTimeout: 1500
buckets: [5, 10, 1e3]
durationBuckets: "0.1, 1"
routes:
  - /v1/users/:id
  - /v1/files/*
metrics: [standard]
accessLog: true
logFormat: pretty
slo: 0.995
workers: 2
readyPath:
`);
    const config = resolveConfig({ file });
    expect(config.upstream?.href).toBe('http://svc:3000/');
    expect(config).toMatchObject({
      port: 9000,
      apiPrefix: '/v1',
      connectTimeoutMs: 1500,
      bucketsMs: [5, 10, 1000],
      durationBucketsSeconds: [0.1, 1],
      routes: ['/v1/users/:id', '/v1/files/*'],
      metricFamilies: ['standard'],
      accessLog: true,
      logFormat: 'pretty',
      slo: 0.995,
      workers: 2,
      readyPath: undefined,
    });
    expect(Object.isFrozen(config.routes)).toBe(true);
  });

  it('ranks defaults < file < env < flags', () => {
    const file = fromYaml('upstream: http://file:1\nport: 1001\nhost: 10.0.0.1\nlogLevel: warn\nmaxRoutes: 7\n');
    const env = { METRICS_PROXY_PORT: '2002', METRICS_PROXY_HOST: '10.0.0.2', METRICS_PROXY_LOG_LEVEL: '' };
    const config = resolveConfig({ file, env, flags: { host: '10.0.0.3' } });
    expect(config.upstream?.host).toBe('file:1'); // file only
    expect(config.maxRoutes).toBe(7); // file only
    expect(config.logLevel).toBe('warn'); // an empty env var does not override the file
    expect(config.port).toBe(2002); // env beats file
    expect(config.host).toBe('10.0.0.3'); // flag beats env and file
    expect(config.keepAliveTimeoutMs).toBe(DEFAULTS.keepAliveTimeoutMs); // nobody set it
  });

  it('lets a flag turn off what the file turned on', () => {
    const file = fromYaml(`upstream: ${upstream}\naccessLog: true\n`);
    expect(resolveConfig({ file }).accessLog).toBe(true);
    expect(resolveConfig({ file, env: { METRICS_PROXY_ACCESS_LOG: '0' } }).accessLog).toBe(false);
    expect(resolveConfig({ file, flags: { accessLog: 'false' } }).accessLog).toBe(false);
  });

  it('lets --demo beat an upstream from the file', () => {
    const file = fromYaml(`upstream: ${upstream}\n`);
    const config = resolveConfig({ file, flags: { demo: true } });
    expect(config.demo).toBe(true);
    expect(config.upstream).toBeUndefined();
  });

  it('resolves relative file paths against the config file directory', () => {
    const file = fromYaml('upstream: http://x\nmetricsTokenFile: secrets/token\nopenapi: /abs/api.yaml\n', '/etc/proxy/proxy.yaml');
    const settings = resolveSettings({ file });
    expect(settings.metricsTokenFile).toBe('/etc/proxy/secrets/token');
    expect(settings.openapi).toBe('/abs/api.yaml');
  });

  it('reads the token file it names, relative to it, into the Config', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'metrics-proxy-config-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, 'token'), 'fr0m-file\n');
    const { settings, config } = resolveLayers({ file: fromYaml(`upstream: ${upstream}\nmetricsTokenFile: token\n`, join(dir, 'proxy.yaml')) });
    expect(settings).toMatchObject({ metricsTokenFile: join(dir, 'token'), metricsToken: undefined });
    expect(config.metricsToken).toBe('fr0m-file');
    expect('metricsTokenFile' in config).toBe(false);
  });

  it('names the file key when the token file it names cannot be read', () => {
    const file = fromYaml(`upstream: ${upstream}\nmetricsTokenFile: /nonexistent/token\n`, 'proxy.yaml');
    const err = configError(() => resolveConfig({ file }));
    expect(err).toMatchObject({ code: 'MP_ERR_TOKEN_FILE_UNREADABLE', option: 'proxy.yaml: metricsTokenFile', value: '/nonexistent/token' });
  });

  it('treats an empty file, or one with only comments, as setting nothing', () => {
    for (const text of ['', '# nothing here\n']) {
      const config = resolveConfig({ file: fromYaml(text), flags: { upstream } });
      expect(config.port).toBe(DEFAULTS.port);
    }
  });

  it('reads JSON files', async () => {
    const path = await tempFile('proxy.json', JSON.stringify({ upstream, port: 0, routes: ['/api/a/:id'], accessLog: false }));
    const config = resolveConfig({ file: loadConfigFile(path) });
    expect(config).toMatchObject({ port: 0, routes: ['/api/a/:id'], accessLog: false });
  });
});

interface BadKey {
  readonly yaml: string;
  readonly key: string;
  readonly code: ConfigErrorCode;
  /** Substrings of the message after `<file>: <key>: `. */
  readonly says: readonly string[];
}

const INVALID = 'MP_ERR_INVALID_VALUE';
const TYPE = 'MP_ERR_INVALID_TYPE';
const UNKNOWN = 'MP_ERR_UNKNOWN_OPTION';
const REFUSED = 'MP_ERR_OPTION_NOT_ALLOWED';
const ROUTE = 'MP_ERR_ROUTE_TEMPLATE';

const BAD_KEYS: readonly BadKey[] = [
  { yaml: 'connectTimeout: abc', key: 'connectTimeout', code: INVALID, says: ['milliseconds', 'got "abc"'] },
  { yaml: 'connectTimeout: 1.5', key: 'connectTimeout', code: INVALID, says: ['milliseconds', 'got 1.5'] },
  { yaml: 'connectTimeout: -1', key: 'connectTimeout', code: INVALID, says: ['got -1'] },
  { yaml: 'port: 70000', key: 'port', code: INVALID, says: ['0 to 65535', 'got 70000'] },
  { yaml: 'port: [1, 2]', key: 'port', code: TYPE, says: ['single value', 'got [1,2]'] },
  { yaml: 'port: { n: 1 }', key: 'port', code: TYPE, says: ['got a mapping'] },
  { yaml: 'port: true', key: 'port', code: INVALID, says: ['got true'] },
  { yaml: 'buckets: [5, 1]', key: 'buckets', code: INVALID, says: ['increasing', 'got [5,1]'] },
  { yaml: 'buckets: [[1], 2]', key: 'buckets', code: TYPE, says: ['list of plain values'] },
  { yaml: 'buckets: ["1,2", 3]', key: 'buckets', code: TYPE, says: ['no commas'] },
  { yaml: 'buckets: { a: 1 }', key: 'buckets', code: TYPE, says: ['list', 'got a mapping'] },
  { yaml: 'logLevel: loud', key: 'logLevel', code: INVALID, says: ['expected one of', 'got "loud"'] },
  { yaml: 'logFormat: colour', key: 'logFormat', code: INVALID, says: ['json', 'pretty', 'got "colour"'] },
  { yaml: 'accessLog: yes', key: 'accessLog', code: INVALID, says: ['true, false, 1 or 0', 'got "yes"'] },
  { yaml: 'slo: 1', key: 'slo', code: INVALID, says: ['between 0 and 1', 'got 1'] },
  { yaml: 'slo: 0', key: 'slo', code: INVALID, says: ['got 0'] },
  { yaml: 'slo: 99.9', key: 'slo', code: INVALID, says: ['got 99.9'] },
  { yaml: 'apiPrefix: api', key: 'apiPrefix', code: INVALID, says: ['starting with /', 'got "api"'] },
  { yaml: 'upstream: ftp://x', key: 'upstream', code: INVALID, says: ['http://', 'got "ftp://x"'] },
  { yaml: 'routes: [users/:id]', key: 'routes', code: ROUTE, says: ['starting with /', 'got ["users/:id"]'] },
  { yaml: 'metrics: [seed, histograms]', key: 'metrics', code: INVALID, says: ['seed, standard', 'got ["seed","histograms"]'] },
  { yaml: 'connectTimeoutMs: 10', key: 'connectTimeoutMs', code: UNKNOWN, says: ['unknown option', 'did you mean connectTimeout?'] },
  { yaml: 'connect-timeout: 10', key: 'connect-timeout', code: UNKNOWN, says: ['unknown option', 'did you mean connectTimeout?'] },
  { yaml: 'uptream: http://x', key: 'uptream', code: UNKNOWN, says: ['unknown option', 'did you mean upstream?'] },
  { yaml: 'frobnicate: 1', key: 'frobnicate', code: UNKNOWN, says: ['unknown option'] },
  { yaml: 'metricsToken: s3cret', key: 'metricsToken', code: REFUSED, says: ['metricsTokenFile', 'METRICS_PROXY_METRICS_TOKEN'] },
  { yaml: 'demo: true', key: 'demo', code: REFUSED, says: ['command-line flag only'] },
  { yaml: 'config: other.yaml', key: 'config', code: REFUSED, says: ['another config file'] },
];

describe('config file: bad keys and values', () => {
  it.each(BAD_KEYS)('$yaml', ({ yaml, key, code, says }) => {
    const text = yaml.startsWith('upstream:') ? `${yaml}\n` : `upstream: ${upstream}\n${yaml}\n`;
    const file = fromYaml(text, 'conf/proxy.yaml');
    const err = configError(() => resolveConfig({ file }));
    expect(err.code).toBe(code);
    expect(err.option).toBe(`conf/proxy.yaml: ${key}`);
    // The file's value as written; none for a key that is unknown or refused (it may be the token itself).
    expect(err.value).toEqual(code === UNKNOWN || code === REFUSED ? undefined : file.values[key]);
    expect(err.message.startsWith(`conf/proxy.yaml: ${key}: `)).toBe(true);
    for (const part of says) expect(err.message).toContain(part);
    expect(err.message).not.toContain('\n');
  });

  it('suggests the key that was probably meant, as a field', () => {
    const err = configError(() => resolveConfig({ file: fromYaml(`upstream: ${upstream}\nmetrics_path: /m\n`) }));
    expect(err).toBeInstanceOf(UnknownOptionError);
    expect((err as UnknownOptionError).suggestion).toBe('metricsPath');
  });

  it('never echoes a token written into the file', () => {
    const err = configError(() => resolveConfig({ file: fromYaml('metricsToken: s3cret-value\n') }));
    expect(err.message).not.toContain('s3cret-value');
  });

  it('names the file key in checks across options', () => {
    const err = configError(() => resolveConfig({ file: fromYaml(`upstream: ${upstream}\nmetricsPath: /api\n`) }));
    expect(err).toMatchObject({ code: 'MP_ERR_OPTIONS_CLASH', option: 'proxy.yaml: metricsPath', value: '/api', other: '--api-prefix' });
    expect(err.message).toBe('proxy.yaml: metricsPath: must differ from --api-prefix, got "/api"');
  });

  it('names the file key when the token env var clashes with a token file from the file', () => {
    const file = fromYaml(`upstream: ${upstream}\nmetricsTokenFile: /t\n`);
    const err = configError(() => resolveConfig({ file, env: { METRICS_PROXY_METRICS_TOKEN: 'x' } }));
    expect(err).toMatchObject({ code: 'MP_ERR_OPTIONS_EXCLUSIVE', option: 'proxy.yaml: metricsTokenFile', other: 'METRICS_PROXY_METRICS_TOKEN' });
    expect(err.message).toContain('proxy.yaml: metricsTokenFile');
  });

  it('refuses metricsHost without metricsPort, naming both in the file\'s words', () => {
    const err = configError(() => resolveConfig({ file: fromYaml(`upstream: ${upstream}\nmetricsHost: 127.0.0.1\n`) }));
    expect(err).toMatchObject({ code: 'MP_ERR_OPTION_REQUIRES', option: 'proxy.yaml: metricsHost', value: '127.0.0.1', other: 'metricsPort' });
    expect(err.message.startsWith('proxy.yaml: metricsHost: requires metricsPort')).toBe(true);
    expect(err.message).toContain('got "127.0.0.1"');
    expect(resolveConfig({ file: fromYaml(`upstream: ${upstream}\nmetricsHost: 127.0.0.1\nmetricsPort: 9100\n`) }).metricsHost).toBe('127.0.0.1');
  });
});

describe('config file: the file itself', () => {
  it.each([
    ['a YAML syntax error', 'proxy.yaml', 'port: 1\nbuckets: [1, 2\n', ['proxy.yaml', 'not valid YAML', 'line']],
    ['a duplicate key', 'proxy.yaml', 'port: 1\nport: 2\n', ['proxy.yaml', 'unique']],
    ['a list at the top level', 'proxy.yaml', '- port: 1\n', ['proxy.yaml', 'expected a mapping']],
    ['a scalar at the top level', 'proxy.yaml', 'just text\n', ['proxy.yaml', 'expected a mapping', '"just text"']],
    ['bad JSON', 'proxy.json', '{"port": 1,}', ['proxy.json', 'not valid JSON']],
  ])('%s: one line naming the file', async (_name, fileName, text, says) => {
    const path = await tempFile(fileName, text);
    const err = configError(() => loadConfigFile(path));
    expect(err).toBeInstanceOf(ConfigFileError);
    expect(err).toMatchObject({ code: 'MP_ERR_CONFIG_FILE_INVALID', option: path, value: path });
    for (const part of says) expect(err.message).toContain(part);
    expect(err.message).not.toContain('\n');
  });

  it('a missing file: one line naming it and the reason', () => {
    const err = configError(() => loadConfigFile('/nonexistent/metrics-proxy.yaml'));
    expect(err).toMatchObject({ code: 'MP_ERR_CONFIG_FILE_UNREADABLE', option: '/nonexistent/metrics-proxy.yaml', reason: 'cannot read the config file (ENOENT)' });
    expect(err.message).toBe('/nonexistent/metrics-proxy.yaml: cannot read the config file (ENOENT)');
  });
});

describe('config/metrics-proxy.example.yaml', () => {
  it('loads through the real loader to exactly DEFAULTS', () => {
    const config = resolveConfig({ file: loadConfigFile(EXAMPLE), flags: { demo: true } });
    expect({ ...config, demo: DEFAULTS.demo }).toEqual(DEFAULTS);
  });

  it('has every option, set, or commented out when it has no default', async () => {
    const text = await readFile(EXAMPLE, 'utf8');
    for (const key of VALUE_KEYS) {
      const name = fileKey(key);
      const commented = DEFAULTS[key] === undefined;
      expect(text, `${name} ${commented ? 'commented out' : 'set'}`).toMatch(new RegExp(`^${commented ? '# ' : ''}${name}:`, 'm'));
    }
  });

  it('has valid examples in its commented-out options', async () => {
    const text = await readFile(EXAMPLE, 'utf8');
    const keys = VALUE_KEYS.map(fileKey).join('|');
    const uncommented = text.replace(new RegExp(`^# ((?:${keys}): )`, 'gm'), '$1');
    expect(uncommented).not.toBe(text);
    // The settings: the example's token file is a path in a pod, not a file here.
    const settings = resolveSettings({ file: parseConfigText(uncommented, EXAMPLE) });
    for (const key of VALUE_KEYS) {
      if (DEFAULTS[key] === undefined) expect(settings[key], fileKey(key)).toBeDefined();
    }
  });
});
