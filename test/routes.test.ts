import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';
import { loadOpenApiTemplates } from '../src/metrics/openapi.js';
import { OTHER_ROUTE, ROUTE_MEMO_LIMIT, type RouteTableOptions, createRouteTable, parseRouteTemplate } from '../src/metrics/routes.js';

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

function table(options: Partial<RouteTableOptions> = {}) {
  let overflows = 0;
  const routes = createRouteTable({
    apiPrefix: '/api',
    templates: [],
    openapiTemplates: [],
    maxRoutes: 100,
    onOverflow: () => overflows++,
    ...options,
  });
  return { routes, overflows: () => overflows };
}

function thrown(fn: () => unknown): { code?: string; option?: string; value?: unknown; message: string } {
  try {
    fn();
  } catch (err) {
    return err as { code?: string; option?: string; value?: unknown; message: string };
  }
  throw new Error('expected a throw');
}

describe('parseRouteTemplate', () => {
  it.each([
    ['/api/users/:id', '/api/users/:id'],
    ['/api/users/{id}', '/api/users/:id'],
    ['/api/users/{user-id}/', '/api/users/:user-id'],
    ['  /api/files/*  ', '/api/files/*'],
    ['/api/reports/{id}.{format}', '/api/reports/{id}.{format}'],
    ['/api/{api.version}', '/api/{api.version}'],
    ['/api/v1/things:batchGet', '/api/v1/things:batchGet'],
    ['/', '/'],
  ])('accepts %j as %j', (raw, canonical) => {
    expect(parseRouteTemplate(raw, '--route')).toBe(canonical);
  });

  it.each([
    'api/users',
    '/api//users',
    '/api/../users',
    '/api/*/users',
    '/api/users*',
    '/api/:',
    '/api/:id.json',
    '/api/{}',
    '/api/{id',
    '/api/id}',
    '/api/{a b}',
    '/api/users?x=1',
    '/api/us%65rs',
    '/api/a\\b',
  ])('rejects %j with a one-line message naming it', (raw) => {
    const err = thrown(() => parseRouteTemplate(raw, '--route'));
    expect(err.code).toBe('MP_ERR_ROUTE_TEMPLATE');
    expect(err.value).toBe(raw);
    expect(err.option).toBe('--route');
    expect(err.message).toContain(JSON.stringify(raw));
    expect(err.message).not.toContain('\n');
  });
});

describe('route templates', () => {
  const templates = [
    '/api/*',
    '/api/users/:id/posts/*',
    '/api/users/{id}',
    '/api/files/:name',
    '/api/users/me',
    '/api/files/{name}.json',
    '/api/users/:id/posts/:postId',
    '/api/:section/me/profile',
    '/api/users/:id/profile',
    '/api',
  ];
  const cases = [
    ['/api', '/api'],
    ['/api/', '/api'],
    ['/api/users/42', '/api/users/:id'],
    ['/api/users/me', '/api/users/me'],
    ['/api/users/me/', '/api/users/me'],
    ['/api//users//7', '/api/users/:id'],
    ['/api/users/7/posts/9', '/api/users/:id/posts/:postId'],
    ['/api/users/7/posts/9/comments', '/api/users/:id/posts/*'],
    ['/api/users/7/posts/9/comments/3/likes', '/api/users/:id/posts/*'],
    ['/api/users/7/posts', '/api/*'], // `*` needs at least one segment
    ['/api/users/me/profile', '/api/users/:id/profile'], // the leftmost difference decides: users > :section
    ['/api/groups/me/profile', '/api/:section/me/profile'],
    ['/api/files/report.json', '/api/files/{name}.json'],
    ['/api/files/.json', '/api/files/:name'], // a parameter takes at least one character
    ['/api/files/report.csv', '/api/files/:name'],
    ['/api/anything/at/all', '/api/*'],
  ] as const;

  it.each(cases)('resolves %s to %s', (path, route) => {
    expect(table({ templates }).routes.resolve(path)).toBe(route);
  });

  it.each(cases)('resolves %s to %s whatever the order of the templates', (path, route) => {
    expect(table({ templates: [...templates].reverse() }).routes.resolve(path)).toBe(route);
  });

  it('writes {name} and :name templates as the same :name label', () => {
    const { routes } = table({ templates: ['/api/a/{id}', '/api/b/:id'] });
    expect([routes.resolve('/api/a/1'), routes.resolve('/api/b/1')]).toEqual(['/api/a/:id', '/api/b/:id']);
  });

  it('matches patterns with several parameters, preferring more literal text', () => {
    const { routes } = table({ templates: ['/api/r/{id}.{format}', '/api/r/{id}.tar.{format}', '/api/r/v{major}-{minor}'] });
    expect(routes.resolve('/api/r/7.pdf')).toBe('/api/r/{id}.{format}');
    expect(routes.resolve('/api/r/7.tar.gz')).toBe('/api/r/{id}.tar.{format}');
    expect(routes.resolve('/api/r/v1-2')).toBe('/api/r/v{major}-{minor}');
    expect(routes.resolve('/api/r/v1-')).toBe('/api/r/v1-'); // no match: inferred
  });

  it('tries user templates before OpenAPI templates, then infers', () => {
    const { routes } = table({
      templates: ['/api/users/:userId'],
      openapiTemplates: ['/api/users/:id', '/api/users/:id/pets', '/api/pets/:petId'],
    });
    expect(routes.resolve('/api/users/1')).toBe('/api/users/:userId');
    expect(routes.resolve('/api/users/1/pets')).toBe('/api/users/:id/pets');
    expect(routes.resolve('/api/pets/5')).toBe('/api/pets/:petId');
    expect(routes.resolve('/api/stores/5')).toBe('/api/stores/:id');
  });

  it('lets a user catch-all win over OpenAPI templates (user templates are a tier of their own)', () => {
    const { routes } = table({ templates: ['/api/*'], openapiTemplates: ['/api/pets/:petId'] });
    expect(routes.resolve('/api/pets/5')).toBe('/api/*');
  });

  it('keeps the first label when two templates have the same shape', () => {
    const { routes } = table({ templates: ['/api/u/:id', '/api/u/{userId}'] });
    expect(routes.resolve('/api/u/1')).toBe('/api/u/:id');
  });

  it('does not spend the inference budget on templates', () => {
    const t = table({ templates: ['/api/users/:id'], openapiTemplates: ['/api/pets/:id'], maxRoutes: 0 });
    expect(t.routes.resolve('/api/users/1')).toBe('/api/users/:id');
    expect(t.routes.resolve('/api/pets/1')).toBe('/api/pets/:id');
    expect(t.overflows()).toBe(0);
    expect(t.routes.resolve('/api/stores/1')).toBe(OTHER_ROUTE);
    expect(t.overflows()).toBe(1);
  });

  it.each([
    [{ templates: ['/users/:id'] }, '--route', 'MP_ERR_ROUTE_OUTSIDE_PREFIX'],
    [{ templates: ['/apix/:id'] }, '--route', 'MP_ERR_ROUTE_OUTSIDE_PREFIX'],
    [{ openapiTemplates: ['/other'] }, '--openapi', 'MP_ERR_ROUTE_OUTSIDE_PREFIX'],
    [{ templates: ['/api/{oops'] }, '--route', 'MP_ERR_ROUTE_TEMPLATE'],
    [{ maxRoutes: -1 }, 'maxRoutes', 'MP_ERR_INVALID_VALUE'],
    [{ maxRoutes: 1.5 }, 'maxRoutes', 'MP_ERR_INVALID_VALUE'],
  ] as const)('refuses %j', (options, option, code) => {
    const err = thrown(() => table(options));
    expect(err.code).toBe(code);
    expect(err.option).toBe(option);
  });

  it('works with the prefix /', () => {
    const { routes } = table({ apiPrefix: '/', templates: ['/', '/users/:id', '/static/*'] });
    expect(routes.resolve('/')).toBe('/');
    expect(routes.resolve('/users/3')).toBe('/users/:id');
    expect(routes.resolve('/static/css/site.css')).toBe('/static/*');
    expect(routes.resolve('/orders/9/')).toBe('/orders/:id');
    expect(routes.resolve('//')).toBe('/');
  });
});

describe('route inference', () => {
  it.each([
    // ids
    ['0', true],
    ['12345', true],
    ['2024-01-15', true], // dates, times, decimals and versions are values, not routes
    ['12:30:00', true],
    ['1.2.3', true],
    ['-1', true],
    ['550e8400-e29b-41d4-a716-446655440000', true],
    ['550E8400-E29B-41D4-A716-446655440000', true],
    ['0190a8f6-3c1e-7cc2-b2f5-2d8c7e9a1b34', true], // v7
    ['0123456789abcdef', true],
    ['507f1f77bcf86cd799439011', true], // Mongo ObjectId
    ['01ARZ3NDEKTSV4RRFFQ69G5FAV', true], // ULID
    ['dGhpcyBpcyBhIHRva2VuIDEy', true], // base64
    ['eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig', true], // JWT
    ['hello%20world', true], // any escape
    ['caf\u00e9', true], // raw non-ASCII byte
    ['z'.repeat(65), true], // absurdly long
    // literals
    ['users', false],
    ['v1', false],
    ['v2beta1', false],
    ['2fa', false],
    ['abc', false],
    ['deadbeef', false], // short hex
    ['0123456789abcde', false], // 15 hex characters
    ['cus_NffrFeUfNV2Hib', false], // mixed but shorter than 20
    ['things:batchGet', false],
    ['user@example.com', false],
    ['.well-known', false],
    ['z'.repeat(64), false],
    ['abcdefghijklmnopqrstuvwxyz', false], // long, but no digit
  ])('treats %j as an id: %s', (segment, isId) => {
    const { routes } = table();
    expect(routes.resolve(`/api/things/${segment}/x`)).toBe(isId ? '/api/things/:id/x' : `/api/things/${segment}/x`);
  });

  it('never rewrites the prefix, even when it looks like an id', () => {
    const { routes } = table({ apiPrefix: '/svc/2024' });
    expect(routes.resolve('/svc/2024/orders/7')).toBe('/svc/2024/orders/:id');
    expect(routes.resolve('/svc/2024')).toBe('/svc/2024');
  });

  it.each([
    ['a path over 1024 characters', `/api/${'a/'.repeat(511)}b`],
    ['more than 32 segments', `/api${'/a'.repeat(32)}`],
    ['outside the prefix', '/apix/users'],
    ['outside the prefix, no slash', 'api'],
  ])('resolves %s to other without spending the budget', (_, path) => {
    const t = table({ maxRoutes: 0 });
    expect(t.routes.resolve(path)).toBe(OTHER_ROUTE);
    expect(t.overflows()).toBe(0);
  });

  it('allows exactly 32 segments', () => {
    expect(table().routes.resolve(`/api${'/a'.repeat(31)}`)).toBe(`/api${'/a'.repeat(31)}`);
  });
});

describe('the inference budget', () => {
  it('hands out maxRoutes inferred routes, then other, calling onOverflow on every such request', () => {
    const t = table({ templates: ['/api/users/:id'], maxRoutes: 3 });
    const first = ['/api/a', '/api/b/1', '/api/c/2'].map((p) => t.routes.resolve(p));
    expect(first).toEqual(['/api/a', '/api/b/:id', '/api/c/:id']);
    expect(t.routes.resolve('/api/d')).toBe(OTHER_ROUTE);
    expect(t.routes.resolve('/api/d')).toBe(OTHER_ROUTE); // memoised, still counted
    expect(t.routes.resolve('/api/e/9')).toBe(OTHER_ROUTE);
    expect(t.overflows()).toBe(3);

    // known routes keep resolving, by a new path too; templates are never refused
    expect(t.routes.resolve('/api/b/99/')).toBe('/api/b/:id');
    expect(t.routes.resolve('/api/a')).toBe('/api/a');
    expect(t.routes.resolve('/api/users/5')).toBe('/api/users/:id');
    expect(t.overflows()).toBe(3);
    expect(t.routes.snapshot().overflowed).toBe(3);
  });

  it('works without onOverflow', () => {
    const routes = createRouteTable({ apiPrefix: '/api', templates: [], openapiTemplates: [], maxRoutes: 0 });
    expect(routes.resolve('/api/x')).toBe(OTHER_ROUTE);
    expect(routes.snapshot().overflowed).toBe(1);
  });
});

describe('snapshot', () => {
  it('lists every template, then inferred routes in the order first seen', () => {
    const t = table({
      templates: ['/api/users/{id}', '/api/users/me'],
      openapiTemplates: ['/api/users/:id', '/api/pets/:petId'],
      maxRoutes: 2,
    });
    for (const path of ['/api/orders/1', '/api/users/1', '/api/orders/2', '/api/carts/x', '/api/more']) t.routes.resolve(path);
    expect(t.routes.snapshot()).toEqual({
      routes: [
        { route: '/api/users/:id', source: 'config' },
        { route: '/api/users/me', source: 'config' },
        { route: '/api/pets/:petId', source: 'openapi' },
        { route: '/api/orders/:id', source: 'inferred' },
        { route: '/api/carts/x', source: 'inferred' },
      ],
      maxRoutes: 2,
      overflowed: 1,
    });
  });

  it('is a copy', () => {
    const { routes } = table();
    const before = routes.snapshot();
    routes.resolve('/api/x');
    expect(before.routes).toHaveLength(0);
    expect(routes.snapshot().routes).toHaveLength(1);
  });
});

describe('bounds under a scanner', () => {
  /** mulberry32: a small seeded generator, so a failure can be replayed. */
  function random(seed: number): () => number {
    let a = seed;
    return () => {
      a = (a + 0x6d2b79f5) | 0;
      let t = Math.imul(a ^ (a >>> 15), 1 | a);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  function scannerPath(next: () => number): string {
    const pick = (n: number): number => Math.floor(next() * n);
    const word = (length: number): string =>
      Array.from({ length }, () => 'abcdefghijklmnopqrstuvwxyz0123456789-_.~%'.charAt(pick(41))).join('');
    const segments: string[] = [];
    const depth = 1 + pick(pick(10) === 0 ? 40 : 6);
    for (let i = 0; i < depth; i++) {
      const kind = pick(6);
      if (kind === 0) segments.push(String(pick(1e9)));
      else if (kind === 1) segments.push(crypto.randomUUID());
      else if (kind === 2) segments.push(['users', 'admin', '.env', 'wp-login.php', 'users'][pick(5)] as string);
      else segments.push(word(1 + pick(kind === 5 ? 300 : 12)));
    }
    return `/api/${segments.join(pick(8) === 0 ? '//' : '/')}${pick(4) === 0 ? '/' : ''}`;
  }

  it('keeps 100 000 random paths to at most templates + maxRoutes + 1 labels, with the memo capped', () => {
    const templates = ['/api/users/:id', '/api/users/:id/orders/*'];
    const openapiTemplates = ['/api/health'];
    const maxRoutes = 100;
    const t = table({ templates, openapiTemplates, maxRoutes });
    const next = random(0x5eed);
    const labels = new Set<string>();
    let maxMemo = 0;
    for (let i = 0; i < 100_000; i++) {
      labels.add(t.routes.resolve(scannerPath(next)));
      if (i % 1000 === 0) maxMemo = Math.max(maxMemo, t.routes.memoSize);
    }
    expect(labels.size).toBeLessThanOrEqual(templates.length + openapiTemplates.length + maxRoutes + 1);
    expect(labels.has(OTHER_ROUTE)).toBe(true);
    expect(Math.max(maxMemo, t.routes.memoSize)).toBeLessThanOrEqual(ROUTE_MEMO_LIMIT);
    const snapshot = t.routes.snapshot();
    expect(snapshot.routes.filter((r) => r.source === 'inferred')).toHaveLength(maxRoutes);
    expect(snapshot.overflowed).toBe(t.overflows());
    expect(snapshot.overflowed).toBeGreaterThan(0);
    for (const label of labels) expect(label.length).toBeLessThanOrEqual(1024);
  });

  it('never memoises more than ROUTE_MEMO_LIMIT paths', () => {
    const { routes } = table({ templates: ['/api/users/:id'] });
    let maxMemo = 0;
    for (let i = 0; i < ROUTE_MEMO_LIMIT * 3; i++) {
      if (routes.resolve(`/api/users/${i}`) !== '/api/users/:id') throw new Error(`wrong label for ${i}`);
      maxMemo = Math.max(maxMemo, routes.memoSize);
    }
    expect(maxMemo).toBe(ROUTE_MEMO_LIMIT);
    // a forgotten path resolves again, to the same label
    expect(routes.resolve('/api/users/0')).toBe('/api/users/:id');
    expect(routes.memoSize).toBeLessThanOrEqual(ROUTE_MEMO_LIMIT);
  });

  it('keeps a hot path memoised while a scanner churns through the memo', () => {
    let calls = 0;
    const { routes } = table({ maxRoutes: 1, onOverflow: () => calls++ });
    expect(routes.resolve('/api/hot')).toBe('/api/hot');
    for (let i = 0; i < ROUTE_MEMO_LIMIT * 3; i++) {
      routes.resolve(`/api/cold${i}`);
      if (i % 1000 === 0) expect(routes.resolve('/api/hot')).toBe('/api/hot');
    }
    expect(calls).toBe(ROUTE_MEMO_LIMIT * 3);
    expect(routes.memoSize).toBeLessThanOrEqual(ROUTE_MEMO_LIMIT);
  });

  it('does not memoise long paths', () => {
    const { routes } = table();
    routes.resolve(`/api/${'x/'.repeat(200)}y`);
    expect(routes.memoSize).toBe(0);
  });
});

describe('loadOpenApiTemplates', () => {
  const pets = ['/api', '/api/pets', '/api/pets/:petId', '/api/pets/mine', '/api/pets/:petId/photos/{photoId}.{format}', '/api/health'];

  it.each(['openapi-pets.json', 'openapi-pets.yaml'])('reads %s, joining keys to the prefix', (name) => {
    expect(loadOpenApiTemplates(fixture(name), '/api')).toEqual(pets);
  });

  it('keeps the keys as they are under the prefix /', () => {
    expect(loadOpenApiTemplates(fixture('openapi-pets.yaml'), '/')).toEqual([
      '/',
      '/pets',
      '/pets/:petId',
      '/pets/mine',
      '/pets/:petId/photos/{photoId}.{format}',
      '/api/health',
    ]);
  });

  it('feeds a route table', () => {
    const { routes } = table({ openapiTemplates: loadOpenApiTemplates(fixture('openapi-pets.yaml'), '/api') });
    expect(routes.resolve('/api/pets/mine')).toBe('/api/pets/mine');
    expect(routes.resolve('/api/pets/rex')).toBe('/api/pets/:petId');
    expect(routes.resolve('/api/pets/rex/photos/1.jpg')).toBe('/api/pets/:petId/photos/{photoId}.{format}');
  });

  function tempFile(name: string, text: string): string {
    const dir = mkdtempSync(join(tmpdir(), 'metrics-proxy-openapi-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, name);
    writeFileSync(file, text);
    return file;
  }

  const INVALID = 'MP_ERR_OPENAPI_INVALID';
  it.each([
    ['Swagger 2.0', () => fixture('swagger2.json'), INVALID, 'found swagger: "2.0"'],
    ['broken YAML', () => fixture('openapi-broken.yaml'), INVALID, 'not valid YAML'],
    ['a missing file', () => fixture('no-such-file.yaml'), 'MP_ERR_OPENAPI_UNREADABLE', 'ENOENT'],
    ['broken JSON', () => tempFile('api.json', '{"openapi": "3.0.0",'), INVALID, 'not valid JSON'],
    ['a list', () => tempFile('api.yaml', '- 1\n'), INVALID, 'an object at the top level'],
    ['no version', () => tempFile('api.yaml', 'paths: {}\n'), INVALID, 'openapi: missing'],
    ['OpenAPI 4', () => tempFile('api.yaml', 'openapi: 4.0.0\npaths: {}\n'), INVALID, 'found openapi: "4.0.0"'],
    ['no paths', () => tempFile('api.yaml', 'openapi: 3.1.0\n'), INVALID, '"paths" object'],
    ['empty paths', () => tempFile('api.yaml', 'openapi: 3.1.0\npaths: {}\n'), INVALID, '"paths" is empty'],
    ['a key without /', () => tempFile('api.yaml', 'openapi: 3.1.0\npaths:\n  users: {}\n'), INVALID, 'path "users" does not start with /'],
    ['a malformed key', () => tempFile('api.yaml', 'openapi: 3.1.0\npaths:\n  /users/{id: {}\n'), INVALID, 'path "/users/{id"'],
  ])('refuses %s with one line naming the file', (_, file, code, reason) => {
    const path = file();
    const err = thrown(() => loadOpenApiTemplates(path, '/api'));
    expect(err.code).toBe(code);
    expect(err.option).toBe('--openapi');
    expect(err.message).toContain(path);
    expect(err.message).toContain(reason);
    expect(err.message).not.toContain('\n');
  });

  it('accepts an unquoted numeric version such as openapi: 3.1', () => {
    expect(loadOpenApiTemplates(tempFile('api.yaml', 'openapi: 3.1\npaths:\n  /x: {}\n'), '/api')).toEqual(['/api/x']);
  });
});
