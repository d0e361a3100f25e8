/**
 * The status page as the browser gets it, from its sources in this folder: index.html with every
 * `<link rel="stylesheet" href="x.css">` replaced by the stylesheet inline, and its `<script src="x.js">`
 * tags by one inline script holding them all in document order (in one function, so nothing lands on
 * `window`), plus the Content-Security-Policy that lets exactly that style and script run, by SHA-256.
 *
 * Inline with hashes rather than separate files: the page stays one request wherever it is mounted
 * (`/`, `/status`, `/metrics/status`), and the policy still allows no other script or style at all.
 *
 * `npm run build` calls writeStatusPage once (dist/admin/status-page.html and .csp, next to the module
 * that serves them); a run from src/ (the tests) assembles the page the same way on first request.
 */
import { createHash } from 'node:crypto';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface AssembledPage {
  readonly html: string;
  readonly csp: string;
}

export const TEMPLATE = 'index.html';
export const BUILT_HTML = 'status-page.html';
export const BUILT_CSP = 'status-page.csp';

const STYLESHEET = /<link rel="stylesheet" href="([\w-]+\.css)">/g;
const SCRIPT = /<script src="([\w-]+\.js)"><\/script>\n?/g;
/** What must not remain once the sources are inlined: a reference to anything but a data: URL. */
const EXTERNAL = /\b(?:src|href)=(?!["']?data:)/i;
const SCRIPT_MARK = '\u0000script\u0000';

const sha256 = (text: string): string => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;

function source(files: ReadonlyMap<string, string>, name: string, closingTag: string): string {
  const text = files.get(name);
  if (text === undefined) throw new Error(`status page: ${TEMPLATE} refers to ${name}, which is not in the folder`);
  // The HTML parser would end the element there, whatever the script or style meant.
  if (text.toLowerCase().includes(`</${closingTag}`)) throw new Error(`status page: ${name} contains </${closingTag}`);
  return text;
}

/** Only the page's own script and style run; it may fetch from its own origin and nothing else. */
export function contentSecurityPolicy(script: string, styles: readonly string[]): string {
  return [
    "default-src 'none'",
    `script-src ${sha256(script)}`,
    `style-src ${styles.map(sha256).join(' ')}`,
    "connect-src 'self'",
    'img-src data:',
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

/** `files`: the folder's stylesheets and scripts by name. */
export function assembleStatusPage(template: string, files: ReadonlyMap<string, string>): AssembledPage {
  if (EXTERNAL.test(template.replace(STYLESHEET, '').replace(SCRIPT, ''))) {
    throw new Error(`status page: ${TEMPLATE} refers to a file the build does not inline`);
  }
  const styles: string[] = [];
  let html = template.replace(STYLESHEET, (_tag, name: string) => {
    const style = `\n${source(files, name, 'style')}`;
    styles.push(style);
    return `<style>${style}</style>`;
  });
  const scripts: string[] = [];
  html = html.replace(SCRIPT, (_tag, name: string) => {
    scripts.push(source(files, name, 'script'));
    return scripts.length === 1 ? SCRIPT_MARK : '';
  });
  if (styles.length === 0 || scripts.length === 0) throw new Error(`status page: ${TEMPLATE} has no stylesheet or no script`);
  const script = `\n(() => {\n'use strict';\n${scripts.join('\n')}})();\n`;
  html = html.replace(SCRIPT_MARK, `<script>${script}</script>\n`);
  return { html, csp: contentSecurityPolicy(script, styles) };
}

/** Assembles the page from the sources in `dir` (index.html and every .css and .js beside it). */
export async function assembleFrom(dir: string): Promise<AssembledPage> {
  const names = (await readdir(dir)).filter((name) => name.endsWith('.css') || name.endsWith('.js'));
  const texts = await Promise.all(names.map((name) => readFile(join(dir, name), 'utf8')));
  const files = new Map(names.map((name, i) => [name, texts[i] as string]));
  return assembleStatusPage(await readFile(join(dir, TEMPLATE), 'utf8'), files);
}

/** The build step: the assembled page and its policy, written to `outDir`. */
export async function writeStatusPage(sourceDir: string, outDir: string): Promise<void> {
  const page = await assembleFrom(sourceDir);
  await writeFile(join(outDir, BUILT_HTML), page.html);
  await writeFile(join(outDir, BUILT_CSP), `${page.csp}\n`);
}
