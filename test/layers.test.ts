/**
 * The layout is the architecture: `ls src` shows the layers, and imports only
 * point down or sideways, never up. This test reads every import in src/ and
 * holds each to the layer table below (docs/development.md shows it).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../src', import.meta.url));

/** Lower numbers sit higher: a module may import its own layer's rank or a higher number. */
const LAYERS: Readonly<Record<string, number>> = {
  'index.ts': 0,
  cli: 1,
  'app.ts': 2,
  http: 3,
  admin: 3,
  config: 3,
  'admin/status-page': 4,
  proxy: 4,
  'proxy/websocket': 4,
  metrics: 5,
  'logger.ts': 6,
  'respond.ts': 6,
  'lazy-modules.ts': 6,
  'errors.ts': 7,
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path] : [];
  });
}

/** The layer of a file under src/: its folder, or its own name for a file at the top. */
function layerOf(file: string): string {
  const rel = relative(SRC, file);
  const folder = dirname(rel);
  return folder === '.' ? rel.replace(/\.js$/, '.ts') : folder;
}

function relativeImports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/^(?:import|export)\s[^;]*?from\s+'(\.{1,2}\/[^']+)'/gms)].map((m) => m[1] as string);
}

interface Edge {
  readonly from: string;
  readonly to: string;
}

function importEdges(): Edge[] {
  return sourceFiles(SRC).flatMap((file) =>
    relativeImports(file).map((spec) => ({
      from: relative(SRC, file),
      to: relative(SRC, normalize(join(dirname(file), spec))),
    })),
  );
}

function isUpward({ from, to }: Edge): boolean {
  const fromRank = LAYERS[layerOf(join(SRC, from))] ?? -1;
  const toRank = LAYERS[layerOf(join(SRC, to))] ?? -1;
  return toRank < fromRank;
}

describe('layers', () => {
  const edges = importEdges();

  it('finds the imports it judges', () => {
    expect(edges.length).toBeGreaterThan(100);
    expect(edges).toContainEqual({ from: 'app.ts', to: 'proxy/websocket/forwarder.js' });
  });

  it('places every file of src/ in a layer', () => {
    const unplaced = sourceFiles(SRC).map(layerOf).filter((layer) => LAYERS[layer] === undefined);
    expect([...new Set(unplaced)]).toEqual([]);
  });

  it('imports only down or sideways', () => {
    const upward = edges.filter(isUpward);
    expect(upward.map(({ from, to }) => `${from} → ${to}`)).toEqual([]);
  });

  it.each([
    [{ from: 'metrics/recorder.ts', to: 'proxy/exchange.js' }, true],
    [{ from: 'errors.ts', to: 'logger.js' }, true],
    [{ from: 'proxy/websocket/session.ts', to: 'proxy/headers.js' }, false],
    [{ from: 'http/router.ts', to: 'proxy/forwarder.js' }, false],
  ])('judges %o upward: %s', (edge, upward) => {
    expect(isUpward(edge)).toBe(upward);
  });
});
