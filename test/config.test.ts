import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AggregatorRegistry, Registry } from 'prom-client';
import { describe, expect, it, onTestFinished } from 'vitest';
import { buildApp } from '../src/app.js';
import { DEFAULTS, envName, resolveConfig } from '../src/config/config.js';
import { InvalidValueError } from '../src/errors.js';
import { captureLogs, configError, echoHandler, httpRequest, startUpstream } from './helpers.js';
import { createSloMetric } from '../src/metrics/slo.js';


async function tokenFile(text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'metrics-proxy-token-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'token');
  await writeFile(path, text);
  return path;
}

describe('resolveConfig', () => {
  const upstream = 'http://127.0.0.1:3000';

  it('applies the documented defaults', () => {
    const config = resolveConfig({ flags: { upstream } });
    expect(config).toMatchObject({
      port: 8000,
      host: '0.0.0.0',
      apiPrefix: '/api',
      metricsPath: '/metrics',
      logLevel: 'info',
      demo: false,
      bucketsMs: [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
    });
    expect(config.upstream?.href).toBe('http://127.0.0.1:3000/');
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.bucketsMs)).toBe(true);
  });

  it('derives env names from flag names', () => {
    expect(envName('upstream')).toBe('METRICS_PROXY_UPSTREAM');
    expect(envName('apiPrefix')).toBe('METRICS_PROXY_API_PREFIX');
    expect(envName('metricsPath')).toBe('METRICS_PROXY_METRICS_PATH');
    expect(envName('bucketsMs')).toBe('METRICS_PROXY_BUCKETS');
    expect(envName('logLevel')).toBe('METRICS_PROXY_LOG_LEVEL');
  });

  it('lets env beat defaults and flags beat env', () => {
    const env = { METRICS_PROXY_UPSTREAM: 'http://env:1', METRICS_PROXY_PORT: '9000', METRICS_PROXY_LOG_LEVEL: 'debug' };
    const fromEnv = resolveConfig({ env });
    expect(fromEnv.upstream?.host).toBe('env:1');
    expect(fromEnv.port).toBe(9000);
    expect(fromEnv.logLevel).toBe('debug');
    const fromFlags = resolveConfig({ env, flags: { upstream: 'https://flag', port: '0' } });
    expect(fromFlags.upstream?.href).toBe('https://flag/');
    expect(fromFlags.port).toBe(0);
    expect(fromFlags.logLevel).toBe('debug');
  });

  it('ignores empty env vars', () => {
    expect(resolveConfig({ flags: { upstream }, env: { METRICS_PROXY_PORT: '' } }).port).toBe(8000);
  });

  it('normalises prefixes and parses buckets', () => {
    const config = resolveConfig({ flags: { upstream, apiPrefix: '/v1/', metricsPath: '/_/metrics', bucketsMs: ' 0.5, 2 ,1e3' } });
    expect(config.apiPrefix).toBe('/v1');
    expect(config.metricsPath).toBe('/_/metrics');
    expect(config.bucketsMs).toEqual([0.5, 2, 1000]);
  });

  it('lets --demo stand in for an upstream, and beat one from the environment', () => {
    expect(resolveConfig({ flags: { demo: true } }).upstream).toBeUndefined();
    expect(resolveConfig({ flags: { demo: true }, env: { METRICS_PROXY_UPSTREAM: upstream } }).upstream).toBeUndefined();
    expect(configError(() => resolveConfig({ flags: { demo: true, upstream } })).code).toBe('MP_ERR_OPTIONS_EXCLUSIVE');
  });

  it.each([
    [{ upstream: 'not-a-url' }, '--upstream', 'not-a-url'],
    [{ upstream: 'ftp://x' }, '--upstream', 'ftp://x'],
    [{ upstream: 'http://user:pw@x' }, '--upstream', 'user:pw'],
    [{ upstream: 'http://x/?q=1' }, '--upstream', '?q=1'],
    [{ port: 'abc' }, '--port', 'abc'],
    [{ port: '70000' }, '--port', '70000'],
    [{ port: '-1' }, '--port', '-1'],
    [{ port: '80.5' }, '--port', '80.5'],
    [{ host: '' }, '--host', '""'],
    [{ apiPrefix: 'api' }, '--api-prefix', 'api'],
    [{ apiPrefix: '/api/../x' }, '--api-prefix', '/api/../x'],
    [{ apiPrefix: '/api?x' }, '--api-prefix', '/api?x'],
    [{ metricsPath: 'metrics' }, '--metrics-path', 'metrics'],
    [{ bucketsMs: '' }, '--buckets', '""'],
    [{ bucketsMs: '5,1' }, '--buckets', '5,1'],
    [{ bucketsMs: '1,1' }, '--buckets', '1,1'],
    [{ bucketsMs: 'a,b' }, '--buckets', 'a,b'],
    [{ bucketsMs: '1,,2' }, '--buckets', '1,,2'],
    [{ bucketsMs: '0,1' }, '--buckets', '0,1'],
    [{ bucketsMs: '-1,1' }, '--buckets', '-1,1'],
    [{ bucketsMs: '1,Infinity' }, '--buckets', 'Infinity'],
    [{ logLevel: 'loud' }, '--log-level', 'loud'],
    [{ logFormat: 'colour' }, '--log-format', 'colour'],
    [{ accessLog: 'yes' }, '--access-log', 'yes'],
    [{ slo: '0' }, '--slo', '"0"'],
    [{ slo: '1' }, '--slo', '"1"'],
    [{ slo: '99.9' }, '--slo', '99.9'],
    [{ slo: '-0.5' }, '--slo', '-0.5'],
    [{ slo: 'NaN' }, '--slo', 'NaN'],
  ])('rejects %j naming %s and the value', (flags, option, valuePart) => {
    const err = configError(() => resolveConfig({ flags: { upstream, ...flags } }));
    expect(err).toBeInstanceOf(InvalidValueError);
    expect(err).toMatchObject({ code: 'MP_ERR_INVALID_VALUE', option, value: Object.values(flags)[0] });
    expect(err.reason).toMatch(/^\S/);
    expect(err.message).toContain(option);
    expect(err.message).toContain(valuePart);
    expect(err.message).not.toContain('\n');
  });

  it.each([
    ['--upstream with --demo', { flags: { upstream, demo: true } }, { code: 'MP_ERR_OPTIONS_EXCLUSIVE', option: '--upstream', other: '--demo' }],
    ['no upstream', {}, { code: 'MP_ERR_MISSING_OPTION', option: '--upstream' }],
    ['--metrics-path equal to --api-prefix', { flags: { upstream, metricsPath: '/api' } }, { code: 'MP_ERR_OPTIONS_CLASH', option: '--metrics-path', value: '/api', other: '--api-prefix' }],
    ['--metrics-port equal to --port', { flags: { upstream, metricsPort: '8000' } }, { code: 'MP_ERR_OPTIONS_CLASH', option: '--metrics-port', value: 8000, other: '--port' }],
    [
      'the token env var beside a token file',
      { flags: { upstream, metricsTokenFile: '/t' }, env: { METRICS_PROXY_METRICS_TOKEN: 'x' } },
      { code: 'MP_ERR_OPTIONS_EXCLUSIVE', option: '--metrics-token-file', other: 'METRICS_PROXY_METRICS_TOKEN' },
    ],
    ['a missing token file', { flags: { upstream, metricsTokenFile: '/nonexistent/token' } }, { code: 'MP_ERR_TOKEN_FILE_UNREADABLE', option: '--metrics-token-file', value: '/nonexistent/token', reason: 'ENOENT' }],
  ] as const)('rejects %s with its own code and fields', (_name, layers, expected) => {
    const err = configError(() => resolveConfig(layers));
    expect(err).toMatchObject(expected);
    expect(err.message).toContain(expected.option);
    expect(err.message).not.toContain('\n');
  });

  it('refuses a token file that is not one word, never echoing it', async () => {
    const path = await tokenFile('two words\n');
    const err = configError(() => resolveConfig({ flags: { upstream }, env: { METRICS_PROXY_METRICS_TOKEN_FILE: path } }));
    expect(err).toMatchObject({ code: 'MP_ERR_TOKEN_FILE_INVALID', option: 'METRICS_PROXY_METRICS_TOKEN_FILE', value: path });
    expect(err.message).not.toContain('two words');
  });

  it('names the env var when the bad value came from the environment', () => {
    const err = configError(() => resolveConfig({ flags: { upstream }, env: { METRICS_PROXY_PORT: 'abc' } }));
    expect(err).toMatchObject({ code: 'MP_ERR_INVALID_VALUE', option: 'METRICS_PROXY_PORT', value: 'abc' });
    expect(err.message).toContain('METRICS_PROXY_PORT');
    expect(err.message).toContain('"abc"');
  });

  it('requires an upstream unless --demo', () => {
    const err = configError(() => resolveConfig({}));
    expect(err).toMatchObject({ code: 'MP_ERR_MISSING_OPTION', option: '--upstream' });
    expect(err.message).toContain('METRICS_PROXY_UPSTREAM');
  });

  it('defaults: log format auto, access log off, objective 0.999', () => {
    expect(resolveConfig({ flags: { upstream } })).toMatchObject({ logFormat: 'auto', accessLog: false, slo: 0.999 });
  });

  it.each([
    ['true', true],
    ['1', true],
    ['TRUE', true],
    ['false', false],
    ['0', false],
  ])('parses METRICS_PROXY_ACCESS_LOG=%s itself (commander would turn "false" on)', (value, expected) => {
    expect(resolveConfig({ flags: { upstream }, env: { METRICS_PROXY_ACCESS_LOG: value } }).accessLog).toBe(expected);
  });

  it('takes --log-format and --slo from flags and env', () => {
    const env = { METRICS_PROXY_LOG_FORMAT: 'pretty', METRICS_PROXY_SLO: '0.99' };
    expect(resolveConfig({ flags: { upstream }, env })).toMatchObject({ logFormat: 'pretty', slo: 0.99 });
    expect(resolveConfig({ flags: { upstream, logFormat: 'JSON', slo: '.9995' }, env })).toMatchObject({ logFormat: 'json', slo: 0.9995 });
  });

  it('does not let callers mutate the defaults', () => {
    expect(Object.isFrozen(DEFAULTS)).toBe(true);
  });
});

describe('the metrics token file, for an embedder', () => {
  it('buildApp of a resolved config requires the token from the file on /metrics and /status.json', async () => {
    const upstream = await startUpstream(echoHandler);
    onTestFinished(() => upstream.close());
    const metricsTokenFile = await tokenFile('emb3dded-token\n');
    const config = resolveConfig({ flags: { upstream: upstream.url, host: '127.0.0.1', port: '0', metricsTokenFile } });
    expect(config.metricsToken).toBe('emb3dded-token');
    // As the README shows embedding: the resolved config, with its upstream known.
    const app = buildApp({ ...config, upstream: config.upstream as URL }, { logger: captureLogs().logger });
    onTestFinished(() => app.close(1_000));
    const { port } = await app.listen();
    for (const path of ['/metrics', '/status.json']) {
      const url = `http://127.0.0.1:${port}${path}`;
      expect((await httpRequest(url)).status, `${path} without the token`).toBe(401);
      expect((await httpRequest(url, { headers: { authorization: 'Bearer emb3dded-token' } })).status, path).toBe(200);
    }
  });

  it('a config built by hand cannot name a token file buildApp would not read', () => {
    const upstream = new URL('http://127.0.0.1:9');
    // @ts-expect-error -- a Config carries the token itself: resolveConfig reads the file.
    const build = () => buildApp({ ...DEFAULTS, upstream, metricsTokenFile: '/run/secrets/token' });
    // and from JavaScript, where no type stops it, buildApp refuses rather than serve /metrics unprotected
    expect(configError(build)).toMatchObject({ code: 'MP_ERR_OPTION_NOT_ALLOWED', option: 'metricsTokenFile' });
  });
});

describe('--metrics-host', () => {
  const upstream = 'http://127.0.0.1:3000';

  it.each([
    ['a flag', { flags: { upstream, metricsHost: '127.0.0.1' } }, '--metrics-host', '--metrics-port'],
    ['the environment', { flags: { upstream }, env: { METRICS_PROXY_METRICS_HOST: '127.0.0.1' } }, 'METRICS_PROXY_METRICS_HOST', 'METRICS_PROXY_METRICS_PORT'],
  ])('without --metrics-port is refused, from %s, naming both options', (_from, layers, option, other) => {
    const err = configError(() => resolveConfig(layers));
    expect(err.code).toBe('MP_ERR_OPTION_REQUIRES');
    expect(err).toMatchObject({ option, value: '127.0.0.1', other });
    expect(err.message).toContain(option);
    expect(err.message).toContain(other);
    expect(err.message).not.toContain('\n');
  });

  it('with --metrics-port is the admin listener\'s address', () => {
    const config = resolveConfig({ flags: { upstream, metricsHost: '127.0.0.2', metricsPort: '0' } });
    expect(config).toMatchObject({ metricsHost: '127.0.0.2', metricsPort: 0 });
  });
});

describe('metrics_proxy_slo_objective_ratio', () => {
  it('is one value, not a sum, when a cluster aggregates its workers', async () => {
    const workers = [new Registry(), new Registry()];
    for (const registry of workers) createSloMetric(registry, 0.995);
    const summed = AggregatorRegistry.aggregate(await Promise.all(workers.map((r) => r.getMetricsAsJSON())));
    expect(await summed.metrics()).toMatch(/^metrics_proxy_slo_objective_ratio 0\.995$/m);
  });
});
