/**
 * The live status page: its JSON endpoint with plain fetch, then the page
 * itself in headless Chromium (Debian's `chromium`, driven by playwright-core)
 * while real traffic goes through a real proxy. A screenshot of the page under
 * traffic is saved to test/artifacts/status-page.png. And the page as built:
 * the bin (dist/) serves what the build assembled from src/admin/status-page.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';
import { type Browser, type Page, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import type { ProxyConfig } from '../src/index.js';
import type { StatusSnapshot } from '../src/admin/status.js';
import { loadStatusPage } from '../src/admin/status-page.js';
import { assembleStatusPage, contentSecurityPolicy } from '../src/admin/status-page/assemble.js';
import { LOOPBACK, ROOT, startListening } from './bin.js';
import { httpRequest, parseExposition, startProxy, startUpstream, until, deadUpstreamUrl } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url));
if (!haveChromium) {
  console.warn(`test/status-page.test.ts: browser tests skipped: no ${CHROMIUM} (Debian package \`chromium\`; bash .ci/run installs it)`);
}

/** /api/fail answers 500, /api/slow waits for release(), everything else 200; WebSockets echo. */
async function setup(overrides: Partial<ProxyConfig> = {}) {
  const held: ServerResponse[] = [];
  const upstream = await startUpstream((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    if (req.url === '/api/slow') {
      held.push(res);
      return;
    }
    res.writeHead(req.url === '/api/fail' ? 500 : 200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
  const wss = new WebSocketServer({ server: upstream.server });
  wss.on('connection', (ws) => ws.on('message', (data) => ws.send(data)));
  onTestFinished(async () => {
    wss.close();
    await upstream.close();
  });
  const proxy = await startProxy(upstream.url, overrides);
  onTestFinished(proxy.close);
  const release = (): void => {
    for (const res of held.splice(0)) res.end('done');
  };
  return { upstream, proxy, held, release };
}

async function status(base: string, headers: Record<string, string> = {}): Promise<StatusSnapshot> {
  const res = await fetch(`${base}/status.json`, { headers });
  expect(res.status).toBe(200);
  return (await res.json()) as StatusSnapshot;
}

async function send(base: string, paths: readonly string[]): Promise<void> {
  for (const path of paths) await (await fetch(`${base}${path}`)).arrayBuffer();
}

describe('status.json', () => {
  it('reports cumulative counts, errors, buckets and routes from the registry, and health', async () => {
    const { proxy, upstream } = await setup();
    const before = await status(proxy.url);
    expect(before).toMatchObject({ version: 1, source: 'standard', requests: { total: 0, errors: 0, inFlight: 0 }, routes: [], websockets: 0 });
    await send(proxy.url, ['/api/ok', '/api/ok', '/api/ok', '/api/fail', '/api/fail']);

    const res = await fetch(`${proxy.url}/status.json`);
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(res.headers.get('cache-control')).toBe('no-store');
    const snap = (await res.json()) as StatusSnapshot;
    expect(snap.instance).toBe(before.instance);
    expect(snap.time).toBeGreaterThanOrEqual(before.time);
    expect(snap.uptimeSeconds).toBeGreaterThanOrEqual(0);
    expect(snap.health).toEqual({ ready: true, draining: false, upstream: { url: `${upstream.url}/`, reachable: true, msg: null } });
    expect(snap.requests).toEqual({ total: 5, errors: 2, inFlight: 0 });
    expect(snap.upstreamFailures).toMatchObject({ connect_refused: 0, response_timeout: 0 });
    const latency = snap.latency as NonNullable<StatusSnapshot['latency']>;
    expect(latency.bounds).toEqual([0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]);
    expect(latency.counts).toHaveLength(latency.bounds.length + 1);
    expect(latency.counts.at(-1)).toBe(5);
    expect([...latency.counts].sort((a, b) => a - b)).toEqual(latency.counts); // cumulative
    expect(latency.sum).toBeGreaterThan(0);
    const routes = snap.routes ?? [];
    expect(routes.map((r) => r.route)).toEqual(['/api/fail', '/api/ok']);
    expect(routes[0]).toMatchObject({ route: '/api/fail', requests: 2, errors: 2, statuses: { '500': 2 }, websockets: 0 });
    expect(routes[1]).toMatchObject({ route: '/api/ok', requests: 3, errors: 0, statuses: { '200': 3 }, websockets: 0 });
    expect(routes[1]?.counts.at(-1)).toBe(3);

    // the status paths are the proxy's own: never forwarded, never counted
    expect((await httpRequest(`${proxy.url}/status`)).status).toBe(200);
    expect(upstream.seen.map((r) => r.url)).not.toContain('/status');
    expect(upstream.seen.map((r) => r.url)).not.toContain('/status.json');
    expect((await status(proxy.url)).requests.total).toBe(5);
  });

  it('counts requests in flight and open WebSockets', async () => {
    const { proxy, held, release } = await setup();
    const slow = fetch(`${proxy.url}/api/slow`).then((res) => res.text());
    slow.catch(() => {}); // awaited below; a failed test must not turn it into an unhandled rejection
    await until(() => held.length === 1, 'the upstream to hold /api/slow');
    const ws = new WebSocket(`${proxy.url.replace('http', 'ws')}/api/socket`);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const snap = await status(proxy.url);
    expect(snap.requests.inFlight).toBe(1);
    expect(snap.websockets).toBe(1);
    expect(snap.routes?.find((r) => r.route === '/api/socket')).toMatchObject({ websockets: 1, statuses: { '101': 1 } });
    release();
    await slow;
    ws.close();
    await new Promise((resolve) => ws.once('close', resolve));
    const after = await status(proxy.url);
    expect(after.requests.inFlight).toBe(0);
    expect(after.websockets).toBe(0);
  });

  it('answers the page and the data to GET and HEAD only', async () => {
    const { proxy } = await setup();
    for (const path of ['/status', '/status.json']) {
      const post = await httpRequest(`${proxy.url}${path}`, { method: 'POST', body: 'x' });
      expect(post.status, path).toBe(405);
      expect(post.headers.allow).toBe('GET, HEAD');
      const get = await httpRequest(`${proxy.url}${path}`);
      const head = await httpRequest(`${proxy.url}${path}`, { method: 'HEAD' });
      expect(head.status).toBe(200);
      expect(head.body).toHaveLength(0);
      expect(head.headers['content-type']).toBe(get.headers['content-type']);
      if (path === '/status') expect(head.headers['content-length']).toBe(String(get.body.length));
    }
    const page = await httpRequest(`${proxy.url}/status`);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['content-security-policy']).toMatch(/^default-src 'none'; script-src 'sha256-[A-Za-z0-9+/=]+'; style-src 'sha256-/);
    expect(page.headers['content-security-policy']).toContain("connect-src 'self'");
    const html = page.body.toString();
    // self-contained: nothing to load from anywhere, and the inline script parses (compiled, not run)
    expect(html).not.toMatch(/\b(?:src|href)=["']?(?:https?:)?\/\//i);
    const script = html.slice(html.indexOf('<script>') + '<script>'.length, html.indexOf('</script>'));
    expect(() => new Script(script)).not.toThrow();
  });

  it('requires the metrics token for the data, not for the static page', async () => {
    const { proxy } = await setup({ metricsToken: 'st4tus-token' });
    const none = await httpRequest(`${proxy.url}/status.json`);
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toBe('Bearer realm="metrics"');
    expect((await httpRequest(`${proxy.url}/status.json`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    const ok = await status(proxy.url, { authorization: 'Bearer st4tus-token' });
    expect(ok.source).toBe('standard');
    expect((await httpRequest(`${proxy.url}/status`)).status).toBe(200);
  });

  it('falls back to the seed family, and shows what is left with metrics off', async () => {
    const { proxy } = await setup({ metricFamilies: ['seed'] });
    await send(proxy.url, ['/api/ok', '/api/fail']);
    const seed = await status(proxy.url);
    expect(seed).toMatchObject({ source: 'seed', requests: { total: 2, errors: 1, inFlight: null }, routes: null, upstreamFailures: null });
    // apiDuration is in milliseconds: the bounds come in seconds
    expect(seed.latency?.bounds.slice(0, 3)).toEqual([0.001, 0.0025, 0.005]);
    expect(seed.latency?.counts.at(-1)).toBe(2);

    const { proxy: off } = await setup({ metricFamilies: [] });
    await send(off.url, ['/api/ok']);
    expect(await status(off.url)).toMatchObject({ source: 'none', requests: { total: null, errors: null, inFlight: null }, latency: null, routes: null });
  });

  it('reports an unreachable upstream and a draining proxy', async () => {
    const goneUrl = await deadUpstreamUrl();
    const proxy = await startProxy(goneUrl, { drainDelayMs: 300, shutdownTimeoutMs: 1_000 });
    onTestFinished(proxy.close);
    expect((await status(proxy.url)).health).toEqual({
      ready: false,
      draining: false,
      upstream: { url: `${goneUrl}/`, reachable: false, msg: 'upstream unreachable: ECONNREFUSED' },
    });
    const stopped = proxy.app.shutdown();
    expect((await status(proxy.url)).health).toMatchObject({ ready: false, draining: true });
    await stopped;
  });

  it('lives on the admin listener at / and /status; the main port forwards or refuses it like any other path', async () => {
    const { proxy, upstream } = await setup({ metricsPort: 0 });
    const admin = proxy.adminUrl as string;
    for (const path of ['/', '/status']) expect((await httpRequest(`${admin}${path}`)).headers['content-type'], path).toBe('text/html; charset=utf-8');
    expect((await status(admin)).version).toBe(1);
    expect((await httpRequest(`${proxy.url}/status`)).status).toBe(404);
    expect(upstream.seen).toHaveLength(0);
  });

  it('leaves the service its own /status under --api-prefix / and moves next to the metrics path', async () => {
    const { proxy, upstream } = await setup({ apiPrefix: '/' });
    expect((await httpRequest(`${proxy.url}/status`)).body.toString()).toBe('{"ok":true}');
    expect(upstream.seen.map((r) => r.url)).toEqual(['/status']);
    expect((await httpRequest(`${proxy.url}/metrics/status`)).headers['content-type']).toBe('text/html; charset=utf-8');
    const snap = (await (await fetch(`${proxy.url}/metrics/status.json`)).json()) as StatusSnapshot;
    expect(snap.requests.total).toBe(1);
    expect(parseExposition(await proxy.metrics()).find((s) => s.name === 'apiCount')?.value).toBe(1);
  });
});

const sha256 = (text: string): string => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
const between = (text: string, open: string, close: string): string => text.slice(text.indexOf(open) + open.length, text.indexOf(close));

describe('the page, built from its files', () => {
  it('the bin serves the page the build assembled, under the CSP the build computed from its inline script and style', async () => {
    const upstream = await startUpstream((_req, res) => res.end('ok'));
    onTestFinished(upstream.close);
    const { url } = await startListening([...LOOPBACK, '--port', '0', '--upstream', upstream.url]);
    const page = await httpRequest(`${url}/status`);
    expect(page.status).toBe(200);
    const html = page.body.toString();
    const csp = page.headers['content-security-policy'];
    expect(csp).toBe(readFileSync(join(ROOT, 'dist', 'admin', 'status-page.csp'), 'utf8').trim());
    expect(csp).toContain(`script-src ${sha256(between(html, '<script>', '</script>'))};`);
    expect(csp).toContain(`style-src ${sha256(between(html, '<style>', '</style>'))};`);
    expect(html).not.toMatch(/<script src=|<link rel="stylesheet"/);
    // dist is current: the sources in src/admin/status-page assemble to the same page
    const fromSource = await loadStatusPage();
    expect(html).toBe(fromSource.body.toString());
    expect(csp).toBe(fromSource.headers['content-security-policy']);
  });

  const template = (body: string): string => `<!doctype html>\n<link rel="stylesheet" href="a.css">\n${body}\n`;
  const files = (extra: Record<string, string> = {}) => new Map(Object.entries({ 'a.css': 'p { color: red; }\n', 'a.js': 'run();\n', ...extra }));
  it.each([
    ['a file that is not there', template('<script src="b.js"></script>'), files(), /b\.js/],
    ['a script that would end its element early', template('<script src="a.js"></script>'), files({ 'a.js': 'x = "</script>";' }), /a\.js/],
    ['a style that would end its element early', template('<script src="a.js"></script>'), files({ 'a.css': '/* </STYLE> */' }), /a\.css/],
    ['a reference to anything else', template('<img src="logo.png"><script src="a.js"></script>'), files(), /does not inline/],
    ['no script at all', template(''), files(), /no script/],
  ])('refuses to assemble %s', (_what, html, sources, message) => {
    expect(() => assembleStatusPage(html, sources)).toThrow(message);
  });

  it('puts every script in one strict function, in document order, and allows each style by its hash', () => {
    const page = assembleStatusPage(template('<script src="a.js"></script>\n<script src="b.js"></script>'), files({ 'b.js': 'go();\n' }));
    const script = between(page.html, '<script>', '</script>');
    expect(script).toBe("\n(() => {\n'use strict';\nrun();\n\ngo();\n})();\n");
    expect(page.html.match(/<script>/g)).toHaveLength(1);
    expect(page.csp).toBe(contentSecurityPolicy(script, ['\np { color: red; }\n']));
    expect(page.csp).toContain(`style-src ${sha256('\np { color: red; }\n')};`);
  });
});

/**
 * What the page shows, checked inside the page: `[selector]` must exist; `[selector, op, n]` compares the
 * element's numeric `data-value` (empty = no figure yet, never matches). Predicates are functions, not
 * strings: the page's CSP forbids eval, and Playwright evaluates a string predicate with eval on every poll.
 */
type Condition = readonly [selector: string, op?: '=' | '>' | '<' | '~', expected?: number];

/** Only the page's DOM, as the predicate below uses it (the project's tsconfig has no DOM lib). */
declare const document: { querySelector(selector: string): { readonly dataset: Record<string, string | undefined> } | null };

function shows(conditions: readonly Condition[]): boolean {
  return conditions.every(([selector, op, expected = 0]) => {
    const el = document.querySelector(selector);
    if (el === null) return false;
    if (op === undefined) return true;
    const raw = el.dataset.value;
    if (raw === undefined || raw === '') return false;
    const value = Number(raw);
    if (op === '=') return value === expected;
    if (op === '>') return value > expected;
    if (op === '<') return value < expected;
    return Math.abs(value - expected) < 1e-9;
  });
}

async function waitFor(page: Page, what: string, ...conditions: Condition[]): Promise<void> {
  try {
    await page.waitForFunction(shows, conditions, { timeout: 15_000, polling: 50 });
  } catch (err) {
    throw new Error(`timed out waiting for ${what}: ${JSON.stringify(conditions)}`, { cause: err });
  }
}

const cell = (route: string, column: number): string => `#routes tr[data-route="${route}"] td:nth-child(${column})`;
const ROUTE_RATE = 2;
const ROUTE_ERROR_RATIO = 3;
const ROUTE_ERRORS_TOTAL = 7;
const ROUTE_WEBSOCKETS = 8;

interface Watched {
  readonly page: Page;
  readonly urls: string[];
  readonly consoleErrors: string[];
}

/** A page that records every request it makes and every console error or uncaught exception. */
async function open(browser: Browser, url: string): Promise<Watched> {
  const context = await browser.newContext({ viewport: { width: 1180, height: 760 } });
  onTestFinished(() => context.close());
  const page = await context.newPage();
  const urls: string[] = [];
  const consoleErrors: string[] = [];
  page.on('request', (request) => urls.push(request.url()));
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(message.text());
  });
  page.on('pageerror', (err) => consoleErrors.push(`uncaught: ${err.message}`));
  const response = await page.goto(url);
  expect(response?.status()).toBe(200);
  expect(response?.headers()['content-security-policy']).toContain("default-src 'none'");
  return { page, urls, consoleErrors };
}

/** Sends `pattern` round and round until stopped; `stop` resolves with what was sent. */
function traffic(base: string, pattern: readonly string[]) {
  let running = true;
  const sent = new Map<string, number>();
  const done = (async () => {
    for (let i = 0; running; i++) {
      const path = pattern[i % pattern.length] as string;
      await send(base, [path]);
      sent.set(path, (sent.get(path) ?? 0) + 1);
    }
  })();
  // A failed test must not leave the loop running into a closed proxy.
  const settled = done.then(
    () => undefined,
    (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
  );
  onTestFinished(async () => {
    running = false;
    await settled;
  });
  return {
    async stop(): Promise<Map<string, number>> {
      running = false;
      const err = await settled;
      if (err !== undefined) throw err;
      return sent;
    },
  };
}

describe.skipIf(!haveChromium)('the status page in headless Chromium', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
  });
  afterAll(async () => {
    await browser?.close();
  });

  it('shows traffic, errors, latency, routes, in-flight requests and WebSockets live, and loads nothing from elsewhere', async () => {
    const { proxy, held, release } = await setup();
    const { page, urls, consoleErrors } = await open(browser, `${proxy.url}/status?interval=200ms`);

    await waitFor(page, 'the first poll', ['#health[data-state="ready"]'], ['#total', '=', 0]);
    await waitFor(page, 'a zero rate before any traffic', ['#rps', '=', 0]);
    expect(await page.locator('#routes-empty').isVisible()).toBe(true);

    const load = traffic(proxy.url, ['/api/ok', '/api/ok', '/api/ok', '/api/fail']);
    const slow = fetch(`${proxy.url}/api/slow`).then((res) => res.text());
    slow.catch(() => {}); // awaited below; a failed test must not turn it into an unhandled rejection
    const ws = new WebSocket(`${proxy.url.replace('http', 'ws')}/api/socket`);
    onTestFinished(() => ws.terminate());
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    await until(() => held.length === 1, 'the upstream to hold /api/slow');

    await waitFor(page, 'requests/s to rise', ['#rps', '>', 0]);
    await waitFor(page, 'an error ratio strictly between 0 and 100 %', ['#error-ratio', '>', 0], ['#error-ratio', '<', 1]);
    await waitFor(page, 'per-route error ratios', [cell('/api/fail', ROUTE_ERROR_RATIO), '=', 1], [cell('/api/ok', ROUTE_ERROR_RATIO), '=', 0]);
    await waitFor(page, 'route rate and latency', [cell('/api/ok', ROUTE_RATE), '>', 0], ['#p50', '>', 0], ['#p99', '>', 0]);
    await waitFor(page, 'a request in flight and one WebSocket', ['#inflight', '>', 0], ['#websockets', '=', 1]);
    await waitFor(page, 'the WebSocket on its route', [cell('/api/socket', ROUTE_WEBSOCKETS), '=', 1]);
    // the busiest route comes first
    expect(await page.locator('#routes tbody tr').first().getAttribute('data-route')).toBe('/api/ok');
    expect(await page.locator('#p99').textContent()).toMatch(/^\d[\d.]* (?:µs|ms|s)$/);
    expect(await page.locator('#rps').textContent()).toMatch(/^[\d.,]+$/);
    expect(await page.locator('#error-ratio').textContent()).toMatch(/^[\d.]+ %$/);
    // a little history for the chart in the screenshot (README shows it)
    await waitFor(page, 'some history', ['#total', '>', 60]);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: `${ARTIFACTS}status-page.png`, fullPage: true });

    const sent = await load.stop();
    await waitFor(page, 'only the held request in flight', ['#inflight', '=', 1], ['#websockets', '=', 1]);
    release();
    await slow;
    ws.close();
    const total = [...sent.values()].reduce((a, b) => a + b, 0) + 2; // + /api/slow and the WebSocket handshake
    const failed = sent.get('/api/fail') ?? 0;
    await waitFor(page, `totals of ${total} and ${failed}`, ['#total', '=', total], ['#errors-total', '=', failed]);
    await waitFor(page, 'nothing in flight', ['#inflight', '=', 0], ['#websockets', '=', 0]);
    expect(Number(await page.locator(cell('/api/fail', ROUTE_ERRORS_TOTAL)).getAttribute('data-value'))).toBe(failed);

    const origin = new URL(proxy.url).origin;
    const fetched = urls.filter((url) => !url.startsWith('data:'));
    expect(fetched.filter((url) => new URL(url).origin !== origin)).toEqual([]);
    expect(new Set(fetched.map((url) => new URL(url).pathname))).toEqual(new Set(['/status', '/status.json']));
    expect(consoleErrors).toEqual([]);
  });

  it('computes p50 and p99 as histogram_quantile does over the polled window', async () => {
    // Every request lands in the first bucket (0, 10 s]: linear interpolation puts p50 at 5 s and p99 at 9.9 s.
    const { proxy } = await setup({ durationBucketsSeconds: [10, 20] });
    const { page, consoleErrors } = await open(browser, `${proxy.url}/status?interval=0.2`);
    const load = traffic(proxy.url, ['/api/ok']);
    await waitFor(page, 'p50 = 5 s and p99 = 9.9 s', ['#p50', '~', 5], ['#p99', '~', 9.9]);
    await load.stop();
    expect(await page.locator('#p50').textContent()).toBe('5.00 s');
    expect(await page.locator('#p99').textContent()).toBe('9.90 s');
    expect(consoleErrors).toEqual([]);
  });

  it('asks for the metrics token when the data needs one, and keeps it for the tab', async () => {
    const { proxy } = await setup({ metricsToken: 'br0wser-token' });
    const { page, consoleErrors } = await open(browser, `${proxy.url}/status?interval=200ms`);
    await page.locator('#auth').waitFor({ state: 'visible' });
    await page.fill('#token', 'not-it');
    await page.click('#auth button');
    await page.locator('#auth-msg', { hasText: 'refused' }).waitFor();
    await page.fill('#token', 'br0wser-token');
    await page.click('#auth button');
    await waitFor(page, 'data with the token', ['#health[data-state="ready"]'], ['#total', '=', 0]);
    expect(await page.locator('#auth').isHidden()).toBe(true);
    await send(proxy.url, ['/api/ok']);
    await waitFor(page, 'the request to show', ['#total', '=', 1]);
    // the only console errors are the browser's own reports of the two refused fetches
    expect(consoleErrors.filter((text) => !text.includes('401'))).toEqual([]);
    expect(consoleErrors.length).toBeLessThanOrEqual(2);
  });

  it('says what is missing with only the seed family, and shows an unreachable upstream', async () => {
    const { proxy } = await setup({ metricFamilies: ['seed'] });
    const { page, consoleErrors } = await open(browser, `${proxy.url}/status?interval=200ms`);
    await page.locator('#notice').waitFor({ state: 'visible' });
    expect(await page.locator('#notice').textContent()).toContain('--metrics seed');
    const load = traffic(proxy.url, ['/api/ok', '/api/fail']);
    await waitFor(page, 'seed figures', ['#rps', '>', 0], ['#errors-total', '>', 0], ['#p99', '>', 0]);
    await load.stop();
    expect(await page.locator('#inflight').textContent()).toBe('n/a');
    expect(await page.locator('#routes-empty').textContent()).toContain('standard');
    expect(consoleErrors).toEqual([]);

    const goneUrl = await deadUpstreamUrl();
    const orphan = await startProxy(goneUrl);
    onTestFinished(orphan.close);
    const down = await open(browser, `${orphan.url}/status`);
    await waitFor(down.page, 'the upstream-down badge', ['#health[data-state="down"]']);
    expect(await down.page.locator('#upstream').textContent()).toContain('ECONNREFUSED');
  });
});
