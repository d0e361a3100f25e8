/**
 * The undici the proxy runs on is the one its deep imports and parser hooks were written for
 * (src/proxy/undici-version.ts): installed, in package.json and in package-lock.json.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { UNDICI_VERSION } from '../src/proxy/undici-version.js';

const BUMP = `src/proxy/undici-version.ts names undici ${UNDICI_VERSION}: before changing it, re-read what it lists in the new version's source`;

function json(path: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
}

describe('the undici pin', () => {
  it('is the version installed where upstream-pool.ts resolves undici', () => {
    const require = createRequire(new URL('../src/proxy/upstream-pool.ts', import.meta.url));
    const installed = json(require.resolve('undici/package.json'));
    expect(installed.version, BUMP).toBe(UNDICI_VERSION);
  });

  it('is the exact version package.json and package-lock.json ask for', () => {
    const manifest = json(new URL('../package.json', import.meta.url).pathname) as { dependencies?: Record<string, string> };
    expect(manifest.dependencies?.undici, BUMP).toBe(UNDICI_VERSION);
    const lock = json(new URL('../package-lock.json', import.meta.url).pathname) as {
      packages?: Record<string, { version?: string; dependencies?: Record<string, string> }>;
    };
    expect(lock.packages?.['']?.dependencies?.undici, BUMP).toBe(UNDICI_VERSION);
    expect(lock.packages?.['node_modules/undici']?.version, BUMP).toBe(UNDICI_VERSION);
  });
});
