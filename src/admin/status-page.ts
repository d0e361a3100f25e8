/**
 * Serving the live status page: one self-contained HTML document, its style and script inline, no
 * external requests. Its sources are real files in ./status-page/ (index.html, style.css, figures.js,
 * page.js); the build assembles them into dist/admin/status-page.html and computes the
 * Content-Security-Policy beside it (status-page.csp): nothing may load but that script and style,
 * allowed by their SHA-256, and fetches to the page's own origin. See status-page/assemble.ts.
 *
 * Read on the first request, not at start-up: most proxies never serve it.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { BUILT_CSP, BUILT_HTML, type AssembledPage, assembleFrom } from './status-page/assemble.js';
import { type Handler, allowGetOrHead, errorBody, sendJson } from '../respond.js';

export interface StatusPage {
  readonly body: Buffer;
  readonly headers: Readonly<Record<string, string>>;
}

/** Run from the TypeScript sources (the tests): no build output beside this module, so assemble it here. */
const FROM_SOURCE = import.meta.url.endsWith('.ts');

/** Where the build writes the page: named from dist/admin/ up, so the bin's bundle in dist/cli/ finds it too. */
const BUILT_DIR = '../admin/';

async function readBuilt(): Promise<AssembledPage> {
  const [html, csp] = await Promise.all([
    readFile(new URL(`${BUILT_DIR}${BUILT_HTML}`, import.meta.url), 'utf8'),
    readFile(new URL(`${BUILT_DIR}${BUILT_CSP}`, import.meta.url), 'utf8'),
  ]);
  return { html, csp: csp.trim() };
}

/** The page and its headers, as built (or, from src/, as the build would build it). */
export async function loadStatusPage(): Promise<StatusPage> {
  const page = FROM_SOURCE ? await assembleFrom(fileURLToPath(new URL('./status-page/', import.meta.url))) : await readBuilt();
  const body = Buffer.from(page.html, 'utf8');
  const headers = Object.freeze({
    'content-type': 'text/html; charset=utf-8',
    'content-length': String(body.length),
    'cache-control': 'no-store',
    'content-security-policy': page.csp,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
  });
  return { body, headers };
}

/** The page itself: static, and it holds no data, so it needs no token (a browser could not send one anyway). */
export function createStatusPageHandler(log: Logger, load: () => Promise<StatusPage> = loadStatusPage): Handler {
  let page: Promise<StatusPage> | undefined;
  return (req, res) => {
    if (!allowGetOrHead(req, res)) return;
    page ??= load();
    page.then(
      ({ body, headers }) => {
        res.writeHead(200, headers);
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      (err: unknown) => {
        page = undefined; // a missing file may be put back: try again next time
        log.error({ err }, 'loading the status page failed');
        sendJson(res, 500, errorBody('loading the status page failed'));
      },
    );
  };
}
