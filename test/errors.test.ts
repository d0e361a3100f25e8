/**
 * The error table (src/errors.ts): every class raises its own code from ERROR_CODES and carries
 * its fields; messages are one line. And the --openapi errors, which carry the file and the key.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';
import {
  ConfigError,
  ConfigFileError,
  ERROR_CODES,
  type ErrorCode,
  InvalidTypeError,
  InvalidValueError,
  ListenError,
  MetricsUnavailableError,
  MissingOptionError,
  OpenApiError,
  OptionNotAllowedError,
  OptionRequiresError,
  OptionsClashError,
  OptionsExclusiveError,
  ProxyError,
  RouteOutsidePrefixError,
  RouteTemplateError,
  TokenFileError,
  UnexpectedArgumentError,
  UnknownOptionError,
  UpstreamTimeoutError,
  inConfigFile,
} from '../src/errors.js';
import { loadOpenApiTemplates } from '../src/metrics/openapi.js';

const ROWS: ReadonlyArray<readonly [ErrorCode, () => ProxyError, Record<string, unknown>]> = [
  ['MP_ERR_INVALID_VALUE', () => new InvalidValueError('--port', 'abc', 'expected a port'), { option: '--port', value: 'abc', reason: 'expected a port' }],
  ['MP_ERR_INVALID_TYPE', () => new InvalidTypeError('p.yaml: port', [1, 2], 'expected a single value'), { option: 'p.yaml: port', value: [1, 2] }],
  ['MP_ERR_UNKNOWN_OPTION', () => new UnknownOptionError('p.yaml: prot', 'port'), { option: 'p.yaml: prot', suggestion: 'port', value: undefined }],
  ['MP_ERR_OPTION_NOT_ALLOWED', () => new OptionNotAllowedError('p.yaml: demo', 'flag only'), { option: 'p.yaml: demo', value: undefined }],
  ['MP_ERR_MISSING_OPTION', () => new MissingOptionError('--upstream', '--upstream is required'), { option: '--upstream' }],
  ['MP_ERR_OPTIONS_EXCLUSIVE', () => new OptionsExclusiveError('--upstream', '--demo'), { option: '--upstream', other: '--demo', value: undefined }],
  ['MP_ERR_OPTIONS_CLASH', () => new OptionsClashError('--metrics-port', 80, '--port', false), { value: 80, other: '--port' }],
  ['MP_ERR_OPTION_REQUIRES', () => new OptionRequiresError('--metrics-host', '::1', '--metrics-port', 'why', false), { value: '::1', other: '--metrics-port' }],
  ['MP_ERR_UNEXPECTED_ARGUMENT', () => new UnexpectedArgumentError('stray'), { option: 'stray', value: 'stray' }],
  ['MP_ERR_CONFIG_FILE_UNREADABLE', () => new ConfigFileError('MP_ERR_CONFIG_FILE_UNREADABLE', '/p.yaml', 'cannot read'), { option: '/p.yaml', value: '/p.yaml' }],
  ['MP_ERR_CONFIG_FILE_INVALID', () => new ConfigFileError('MP_ERR_CONFIG_FILE_INVALID', '/p.yaml', 'not YAML'), { option: '/p.yaml' }],
  ['MP_ERR_TOKEN_FILE_UNREADABLE', () => new TokenFileError('MP_ERR_TOKEN_FILE_UNREADABLE', '--metrics-token-file', '/t', 'ENOENT'), { value: '/t', reason: 'ENOENT' }],
  ['MP_ERR_TOKEN_FILE_INVALID', () => new TokenFileError('MP_ERR_TOKEN_FILE_INVALID', '--metrics-token-file', '/t', 'one word'), { value: '/t' }],
  ['MP_ERR_OPENAPI_UNREADABLE', () => new OpenApiError('MP_ERR_OPENAPI_UNREADABLE', '/a.yaml', 'cannot read it'), { option: '--openapi', value: '/a.yaml' }],
  ['MP_ERR_OPENAPI_INVALID', () => new OpenApiError('MP_ERR_OPENAPI_INVALID', '/a.yaml', 'bad', { path: '/x' }), { value: '/a.yaml', path: '/x' }],
  ['MP_ERR_ROUTE_TEMPLATE', () => new RouteTemplateError('--route', 'users', 'expected /'), { option: '--route', value: 'users', reason: 'expected /' }],
  ['MP_ERR_ROUTE_OUTSIDE_PREFIX', () => new RouteOutsidePrefixError('--route', '/v1/x', '/api'), { value: '/v1/x' }],
  ['MP_ERR_LISTEN', () => new ListenError('cannot listen', new Error('EADDRINUSE')), {}],
  ['MP_ERR_CONNECT_TIMEOUT', () => new UpstreamTimeoutError('MP_ERR_CONNECT_TIMEOUT', 5), { timeoutMs: 5 }],
  ['MP_ERR_RESPONSE_TIMEOUT', () => new UpstreamTimeoutError('MP_ERR_RESPONSE_TIMEOUT', 6), { timeoutMs: 6 }],
  ['MP_ERR_IDLE_TIMEOUT', () => new UpstreamTimeoutError('MP_ERR_IDLE_TIMEOUT', 7), { timeoutMs: 7 }],
  ['MP_ERR_CLIENT_IDLE', () => new UpstreamTimeoutError('MP_ERR_CLIENT_IDLE', 8), { timeoutMs: 8 }],
  ['MP_ERR_METRICS_UNAVAILABLE', () => new MetricsUnavailableError('worker 2 did not answer within 4000 ms'), {}],
];

describe('the error table', () => {
  it('has one row here per code, and every code is MP_ERR_*', () => {
    expect(ROWS.map(([code]) => code).sort()).toEqual(Object.keys(ERROR_CODES).sort());
    for (const code of Object.keys(ERROR_CODES)) expect(code).toMatch(/^MP_ERR_[A-Z_]+$/);
  });

  it.each(ROWS)('%s', (code, make, fields) => {
    const err = make();
    expect(err).toBeInstanceOf(ProxyError);
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe(code);
    expect(err.name).toBe(err.constructor.name);
    expect(err).toMatchObject(fields);
    const configErrors = !['MP_ERR_LISTEN', 'MP_ERR_CLIENT_IDLE', 'MP_ERR_METRICS_UNAVAILABLE'].includes(code) && !code.endsWith('TIMEOUT');
    if (configErrors) expect(err).toBeInstanceOf(ConfigError);
    else expect(err).not.toBeInstanceOf(ConfigError);
    expect(err.message).not.toContain('\n');
  });

  it('rewords a parser error as a config file reports it, keeping code and reason', () => {
    const err = inConfigFile(new InvalidValueError('port', '70000', 'expected a port'), 'p.yaml', 'port', 70000);
    expect(err).toMatchObject({ code: 'MP_ERR_INVALID_VALUE', option: 'p.yaml: port', value: 70000, reason: 'expected a port' });
    expect(err.message).toBe('p.yaml: port: expected a port, got 70000');
    const route = inConfigFile(new RouteTemplateError('routes', 'x', 'expected /'), 'p.yaml', 'routes', ['x']);
    expect(route).toMatchObject({ code: 'MP_ERR_ROUTE_TEMPLATE', option: 'p.yaml: routes', value: ['x'], reason: 'expected /' });
    expect(route.message).toBe('p.yaml: routes: expected /, got ["x"]');
  });

  it('never keeps a secret: a refused key has no value, a token file error only its path', () => {
    expect(new OptionNotAllowedError('p.yaml: metricsToken', 'not here').value).toBeUndefined();
    const err = new TokenFileError('MP_ERR_TOKEN_FILE_INVALID', '--metrics-token-file', '/t', 'expected one non-empty word');
    expect(err.message).toBe('invalid token in --metrics-token-file "/t": expected one non-empty word');
  });
});

function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected an error');
}

describe('--openapi errors: a code each, the file and the key as fields', () => {
  const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
  function tempFile(name: string, text: string): string {
    const dir = mkdtempSync(join(tmpdir(), 'metrics-proxy-openapi-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, name);
    writeFileSync(file, text);
    return file;
  }

  it.each([
    ['Swagger 2.0', () => fixture('swagger2.json'), 'MP_ERR_OPENAPI_INVALID', undefined],
    ['broken YAML', () => fixture('openapi-broken.yaml'), 'MP_ERR_OPENAPI_INVALID', undefined],
    ['a missing file', () => fixture('no-such-file.yaml'), 'MP_ERR_OPENAPI_UNREADABLE', undefined],
    ['broken JSON', () => tempFile('api.json', '{"openapi": "3.0.0",'), 'MP_ERR_OPENAPI_INVALID', undefined],
    ['empty paths', () => tempFile('api.yaml', 'openapi: 3.1.0\npaths: {}\n'), 'MP_ERR_OPENAPI_INVALID', undefined],
    ['a key without /', () => tempFile('api.yaml', 'openapi: 3.1.0\npaths:\n  users: {}\n'), 'MP_ERR_OPENAPI_INVALID', 'users'],
    ['a malformed key', () => tempFile('api.yaml', 'openapi: 3.1.0\npaths:\n  /users/{id: {}\n'), 'MP_ERR_OPENAPI_INVALID', '/users/{id'],
  ] as const)('%s', (_name, file, code, path) => {
    const name = file();
    const err = thrownBy(() => loadOpenApiTemplates(name, '/api'));
    expect(err).toBeInstanceOf(OpenApiError);
    expect(err).toMatchObject({ code, option: '--openapi', value: name, path });
    const { message } = err as OpenApiError;
    expect(message.startsWith(`invalid --openapi file ${JSON.stringify(name)}: `)).toBe(true);
    expect(message).not.toContain('\n');
  });

  it('words a malformed key with the route module\'s reason, its error as the cause', () => {
    const name = tempFile('api.yaml', 'openapi: 3.1.0\npaths:\n  /users/{id: {}\n');
    const err = thrownBy(() => loadOpenApiTemplates(name, '/api')) as OpenApiError;
    expect(err.cause).toBeInstanceOf(RouteTemplateError);
    expect(err.message).toBe(`invalid --openapi file ${JSON.stringify(name)}: path "/users/{id": unbalanced braces in {id`);
  });
});
