import { describe, expect, it } from 'vitest';
import { createPathClassifier } from '../src/http/paths.js';

describe('path classification with prefix /api', () => {
  const classify = createPathClassifier('/api', ['/metrics']);

  it.each([
    ['/api', '/api'],
    ['/api/', '/api/'],
    ['/api?x=1', '/api?x=1'],
    ['/api/ping', '/api/ping'],
    ['/api/ping?x=1&y=2', '/api/ping?x=1&y=2'],
    ['/api/a/./b', '/api/a/b'],
    ['/api/a/../b?q=..', '/api/b?q=..'],
    ['/api/files/group%2Fproject', '/api/files/group%2Fproject'],
    ['/api/%2e%2e%2e', '/api/%2e%2e%2e'],
    ['/api/.well-known/x', '/api/.well-known/x'],
    ['http://example.com/api/x?y=1', '/api/x?y=1'],
    ['/api//double', '/api//double'],
    ['/api/with%20space', '/api/with%20space'],
  ])('forwards %s as %s', (raw, url) => {
    expect(classify(raw)).toEqual({ kind: 'forward', url });
  });

  it.each(['/metrics', '/metrics?x=1', '/api/../metrics'])('serves %s as metrics', (raw) => {
    expect(classify(raw)).toEqual({ kind: 'own', path: '/metrics' });
  });

  it.each(['/', '/apix', '/ap', '/admin', '/metrics/', '/Api/x', '//api/x', 'http://example.com/other'])('404s %s', (raw) => {
    expect(classify(raw)).toEqual({ kind: 'not_found' });
  });

  it.each([
    '/api/../admin',
    '/api/%2e%2e/admin',
    '/api/%2E%2E/admin',
    '/api/.%2e/admin',
    '/api/..%2fadmin',
    '/api/..%2Fadmin',
    '/api/..%5cadmin',
    '/api/x/../../admin',
    '/x/../api/..%2f..%2fadmin',
    '/api/..',
  ])('refuses %s as an escape from the prefix', (raw) => {
    expect(classify(raw).kind).toBe('bad_request');
  });

  it('never forwards a backslash path that resolves outside the prefix', () => {
    // `\` is not a separator in the raw prefix match, so this is simply not under /api
    expect(classify('/api\\..\\admin').kind).toBe('not_found');
  });

  it('escapes a raw # so an upstream cannot read it as a fragment', () => {
    expect(classify('/api/..#/x')).toEqual({ kind: 'forward', url: '/api/..%23/x' });
  });

  it.each(['*', 'example.com:443', 'ftp://example.com/api/x', ''])('refuses the target %j', (raw) => {
    expect(classify(raw).kind).toBe('bad_request');
  });
});

describe('path classification with prefix /', () => {
  const classify = createPathClassifier('/', ['/metrics']);

  it.each(['/', '/anything', '/api/x?y', '/metrics/', '/metricsx'])('forwards %s', (raw) => {
    expect(classify(raw)).toEqual({ kind: 'forward', url: raw });
  });

  it('still serves the metrics path itself', () => {
    expect(classify('/metrics')).toEqual({ kind: 'own', path: '/metrics' });
  });

  it('normalises dot segments before forwarding', () => {
    expect(classify('/a/../b')).toEqual({ kind: 'forward', url: '/b' });
  });
});

describe('path classification with a nested prefix', () => {
  const classify = createPathClassifier('/svc/v1', ['/svc/metrics', '/svc/v1/healthz']);

  it('matches whole segments only', () => {
    expect(classify('/svc/v1/x').kind).toBe('forward');
    expect(classify('/svc/v10/x').kind).toBe('not_found');
    expect(classify('/svc/v1/../v2/x').kind).toBe('bad_request');
    expect(classify('/svc/metrics')).toEqual({ kind: 'own', path: '/svc/metrics' });
    // an own path under the prefix is still answered by the proxy, never forwarded
    expect(classify('/svc/v1/healthz?x')).toEqual({ kind: 'own', path: '/svc/v1/healthz' });
  });
});
