/**
 * The documentation against the code. Every relative link in README.md, CHANGELOG.md and docs/*.md
 * resolves, anchors included (GitHub's heading slugs). docs/options.md documents exactly the option
 * table, with its flag, env and config names and its defaults, and the command-line-only flags are
 * exactly the rest of what --help lists. docs/metrics.md documents exactly the metrics a proxy
 * registers with every family on, with their types and label names. The README stays short and keeps
 * the two set-up commands a new user types.
 *
 * prom-client's default process metrics are one documented group, not rows: they vary with the
 * platform and the prom-client version. docs/metrics.md names the defaults the proxy leaves out, and
 * the test checks that exactly those are missing, so the group cannot change unnoticed either.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { describe, expect, it, onTestFinished } from 'vitest';
import { OPTIONS, envName, fileKey, flagName } from '../src/config/config.js';
import { DEFAULTS, main } from '../src/index.js';
import { startProxy } from './helpers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DOCS = join(ROOT, 'docs');
const MARKDOWN = [
  'README.md',
  'CHANGELOG.md',
  ...readdirSync(DOCS)
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => `docs/${name}`),
];

type OptionKey = keyof typeof OPTIONS;
const OPTION_KEYS = Object.keys(OPTIONS) as OptionKey[];

const read = (file: string): string => readFileSync(join(ROOT, file), 'utf8');

// ---- Markdown, as much of it as these checks need

/** The lines of a document that are not inside a fenced code block. */
function proseLines(text: string): string[] {
  const lines: string[] = [];
  let fenced = false;
  for (const line of text.split('\n')) {
    if (/^\s*```/.test(line)) fenced = !fenced;
    else if (!fenced) lines.push(line);
  }
  return lines;
}

/** The contents of each fenced code block, as lines. */
function codeBlocks(text: string): string[][] {
  const blocks: string[][] = [];
  let current: string[] | undefined;
  for (const line of text.split('\n')) {
    if (/^\s*```/.test(line)) {
      if (current === undefined) current = [];
      else {
        blocks.push(current);
        current = undefined;
      }
    } else current?.push(line.trim());
  }
  return blocks;
}

/** GitHub's anchor for a heading (github-slugger): lower case, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  return heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/<[^>]+>/g, '')
    .replace(/[`*]/g, '')
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

/** Every anchor a document's headings define, with `-1`, `-2`… for repeated headings as GitHub does. */
function anchorsOf(text: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of proseLines(text)) {
    const match = /^#{1,6}\s+(.+?)\s*#*\s*$/.exec(line);
    if (match === null) continue;
    const base = slug(match[1] as string);
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    anchors.add(count === 0 ? base : `${base}-${count}`);
  }
  return anchors;
}

/** Link targets outside code blocks: `[text](target)` and `![alt](target)`. */
function linkTargets(text: string): string[] {
  const targets: string[] = [];
  for (const line of proseLines(text)) {
    for (const match of line.matchAll(/!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) targets.push(match[1] as string);
  }
  return targets;
}

/** The rows of every table whose header row is exactly `header`, as trimmed cells (`\|` unescaped). */
function tableRows(text: string, header: readonly string[]): string[][] {
  const cellsOf = (line: string): string[] =>
    line
      .trim()
      .replace(/^\||\|$/g, '')
      .split(/(?<!\\)\|/)
      .map((cell) => cell.trim().replace(/\\\|/g, '|'));
  const rows: string[][] = [];
  let inTable = false;
  for (const line of proseLines(text)) {
    if (!line.trim().startsWith('|')) {
      inTable = false;
      continue;
    }
    const cells = cellsOf(line);
    if (cells.join('|') === header.join('|')) inTable = true;
    else if (inTable && !cells.every((cell) => /^:?-+:?$/.test(cell))) rows.push(cells);
  }
  return rows;
}

/** The code spans of a table cell or a paragraph, in order. */
const codeSpans = (text: string): string[] => [...text.matchAll(/`([^`]+)`/g)].map((m) => m[1] as string);

/** The text of a `## ` section, up to the next heading of the same or a higher level. */
function section(text: string, heading: string): string {
  const lines = proseLines(text);
  const start = lines.findIndex((line) => line === `## ${heading}`);
  if (start === -1) throw new Error(`no "## ${heading}" section`);
  const end = lines.findIndex((line, i) => i > start && /^#{1,2}\s/.test(line));
  return lines.slice(start + 1, end === -1 ? undefined : end).join('\n');
}

// ---- 1. links

describe('links', () => {
  it.each(MARKDOWN)('every relative link in %s resolves, anchors included', (file) => {
    const broken: string[] = [];
    for (const target of linkTargets(read(file))) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto: …
      const hashAt = target.indexOf('#');
      const pathPart = decodeURIComponent(hashAt === -1 ? target : target.slice(0, hashAt));
      const anchor = hashAt === -1 ? undefined : decodeURIComponent(target.slice(hashAt + 1));
      const resolved = pathPart === '' ? join(ROOT, file) : resolve(dirname(join(ROOT, file)), pathPart);
      if (relative(ROOT, resolved).startsWith('..') || !existsSync(resolved)) {
        broken.push(`${target}: no such file`);
        continue;
      }
      if (anchor === undefined) continue;
      if (!resolved.endsWith('.md')) broken.push(`${target}: an anchor into a file that is not markdown`);
      else if (!anchorsOf(readFileSync(resolved, 'utf8')).has(anchor)) broken.push(`${target}: no heading for #${anchor}`);
    }
    expect(broken).toEqual([]);
  });

  it('slugs headings as GitHub does', () => {
    expect(slug('Checking a configuration: `metrics-proxy check`')).toBe('checking-a-configuration-metrics-proxy-check');
    expect(slug('Routes: the `http_route` label')).toBe('routes-the-http_route-label');
    expect(slug('2026-11-25, run 2: 2 AMD EPYC vCPUs')).toBe('2026-11-25-run-2-2-amd-epyc-vcpus');
    expect([...anchorsOf('# A\n## A\n```\n# not a heading\n```\n## A\n')]).toEqual(['a', 'a-1', 'a-2']);
  });
});

// ---- 2. options

/** The default as the docs write it: the value in the option's own syntax, or nothing when there is none. */
function defaultText(key: OptionKey): string | undefined {
  const value: unknown = DEFAULTS[key];
  if (value === undefined) return undefined;
  if (Array.isArray(value)) return value.length === 0 ? undefined : value.join(',');
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return String(value);
  throw new Error(`${key}: a default of a type the docs cannot show`);
}

/** The long flags `metrics-proxy --help` lists, `--version` and `--help` included. */
async function helpFlags(): Promise<Set<string>> {
  let text = '';
  const io = { stdout: { write: (chunk: string) => (text += chunk) }, stderr: { write: (chunk: string) => (text += chunk) } };
  expect(await main(['node', 'metrics-proxy', '--help'], {}, io)).toBe(0);
  return new Set([...text.matchAll(/^ {2}(?:-\w, )?(--[a-z0-9-]+)/gm)].map((m) => m[1] as string));
}

describe('docs/options.md', () => {
  const text = read('docs/options.md');
  const rows = tableRows(text, ['flag', 'env', 'config key', 'default', 'meaning']);
  const rowOf = new Map(rows.map((cells) => [codeSpans(cells[0] ?? '')[0] ?? '', cells]));

  it('has one row per option of the option table, and no other', () => {
    expect(rowOf.size).toBe(rows.length);
    expect([...rowOf.keys()].sort()).toEqual(OPTION_KEYS.map((key) => OPTIONS[key].flag).sort());
  });

  it.each(OPTION_KEYS)('documents %s with its flag, env name, config key and default', (key) => {
    const cells = rowOf.get(OPTIONS[key].flag);
    expect(cells, `no row for ${OPTIONS[key].flag}`).toBeDefined();
    const [, env = '', configKey = '', fallback = '', meaning = ''] = cells ?? [];
    expect(codeSpans(env)[0]).toBe(envName(key));
    expect(codeSpans(configKey)[0]).toBe(fileKey(key));
    const value = defaultText(key);
    if (value === undefined) expect(fallback, 'an option without a default says so in parentheses').toMatch(/^\(/);
    else expect(codeSpans(fallback)[0]).toBe(value);
    expect(meaning).not.toBe('');
  });

  it('documents every other flag --help lists under "Command-line only"', async () => {
    const onOff = OPTION_KEYS.filter((key) => !OPTIONS[key].flag.includes('<')).map((key) => `--no-${flagName(key)}`);
    const fromTable = OPTION_KEYS.map((key) => `--${flagName(key)}`);
    const cliOnly = tableRows(section(text, 'Command-line only'), ['flag', 'env', 'meaning']).flatMap((cells) =>
      codeSpans(cells[0] ?? '').flatMap((span) => span.split(/,\s*/).map((flag) => flag.split(' ')[0] as string)),
    );
    const documented = new Set([...fromTable, ...onOff, ...cliOnly.filter((flag) => flag.startsWith('--'))]);
    expect([...documented].sort()).toEqual([...(await helpFlags())].sort());
  });
});

// ---- 3. metrics

interface LabelledMetric {
  readonly labelNames?: readonly string[];
}

describe('docs/metrics.md', () => {
  it('documents exactly the metrics a proxy registers with every family on, with their types and labels', async () => {
    const proxy = await startProxy('http://127.0.0.1:9', { metricFamilies: ['seed', 'standard'], slo: 0.99 });
    onTestFinished(() => proxy.close());
    const { registry } = proxy.app;
    const registered = new Map((await registry.getMetricsAsJSON()).map((m) => [m.name, String(m.type)]));
    const defaults = new Registry();
    collectDefaultMetrics({ register: defaults });
    const defaultNames = new Set((await defaults.getMetricsAsJSON()).map((m) => m.name));
    defaults.clear();

    const text = read('docs/metrics.md');
    const rows = tableRows(text, ['name', 'type', 'unit', 'labels', 'meaning']);
    const documented = rows.map((cells) => codeSpans(cells[0] ?? '')[0] ?? '');
    expect(new Set(documented).size, 'a metric documented twice').toBe(documented.length);
    const own = [...registered.keys()].filter((name) => !defaultNames.has(name));
    expect([...documented].sort()).toEqual(own.sort());

    for (const cells of rows) {
      const name = codeSpans(cells[0] ?? '')[0] ?? '';
      expect(cells[1], `${name}: type`).toBe(registered.get(name));
      const labels = (registry.getSingleMetric(name) as unknown as LabelledMetric | undefined)?.labelNames ?? [];
      expect(codeSpans(cells[3] ?? '').sort(), `${name}: labels`).toEqual([...labels].sort());
    }

    // The process metrics: prom-client's defaults, less the ones the page names as left out.
    const leftOut = [...defaultNames].filter((name) => !registered.has(name)).sort();
    const namedLeftOut = [...new Set(codeSpans(section(text, 'Process metrics')).filter((span) => defaultNames.has(span)))];
    expect(namedLeftOut.sort()).toEqual(leftOut);
  });
});

// ---- 4. README

describe('README.md', () => {
  const text = read('README.md');

  it('is a five-minute read: under 15 KB', () => {
    expect(Buffer.byteLength(text)).toBeLessThan(15_000);
  });

  it('gives the two set-up commands verbatim, install and demo first, then the tests', () => {
    const blocks = codeBlocks(text);
    const install = blocks.findIndex((lines) => lines.includes('npm install && npx metrics-proxy --demo'));
    const test = blocks.findIndex((lines) => lines.includes('npm test'));
    expect(install).toBeGreaterThanOrEqual(0);
    expect(test).toBeGreaterThan(install);
  });
});
