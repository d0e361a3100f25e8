/**
 * The live status page: one self-contained HTML document with inline CSS and
 * JavaScript, no external requests. It polls `status.json` (relative to
 * itself), keeps the last few snapshots in the browser, and shows rates, error
 * ratio and p50/p99 over that window, computed from the cumulative counts as
 * Prometheus' rate() and histogram_quantile() would. The server keeps no state.
 *
 * Query parameters: `interval` (poll period, default 1s) and `window` (rate
 * window, default 5s), as `250ms`, `2s` or a number of seconds.
 *
 * Served with a strict Content-Security-Policy: nothing may load but the page's
 * own script and style (allowed by their SHA-256, computed here once) and
 * fetches to its own origin. Route names come from request paths, so the
 * script only ever writes them with textContent.
 */
import { createHash } from 'node:crypto';

const STYLE = `
:root { color-scheme: light dark; --bg: #f6f7f9; --card: #fff; --fg: #1b1f24; --muted: #646d78; --line: #dde1e6;
  --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --accent: #0969da; }
@media (prefers-color-scheme: dark) { :root { --bg: #0d1117; --card: #161b22; --fg: #e6edf3; --muted: #8d96a0; --line: #30363d;
  --ok: #3fb950; --bad: #f85149; --warn: #d29922; --accent: #58a6ff; } }
* { box-sizing: border-box; }
body { margin: 0; padding: 16px 24px 24px; background: var(--bg); color: var(--fg);
  font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
header { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 14px; margin-bottom: 14px; }
h1 { font-size: 20px; margin: 0; }
h2 { font-size: 15px; margin: 20px 0 8px; }
.muted { color: var(--muted); }
.spacer { flex: 1; }
.badge { display: inline-block; padding: 3px 10px; border-radius: 999px; font-weight: 600; font-size: 13px; color: #fff; background: var(--muted); }
.badge.ready { background: var(--ok); }
.badge.down { background: var(--bad); }
.badge.draining { background: var(--warn); }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; }
.tile { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
.tile .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.tile .value { font-size: 30px; font-weight: 600; font-variant-numeric: tabular-nums; margin-top: 2px; white-space: nowrap; }
.tile .sub { color: var(--muted); font-size: 12px; font-variant-numeric: tabular-nums; }
.tile.alert .value { color: var(--bad); }
body.stale .tile .value, body.stale tbody { opacity: .45; }
#notice { background: var(--card); border: 1px solid var(--line); border-left: 4px solid var(--warn); padding: 8px 12px; margin: 0 0 12px; }
#auth { background: var(--card); border: 1px solid var(--line); border-left: 4px solid var(--accent); padding: 10px 12px; margin: 0 0 12px;
  display: flex; flex-wrap: wrap; gap: 8px; align-items: center; }
#auth input { font: inherit; padding: 4px 8px; min-width: 260px; }
#auth button { font: inherit; padding: 4px 14px; }
canvas { display: block; width: 100%; height: 90px; margin-top: 12px; background: var(--card); border: 1px solid var(--line); border-radius: 8px; }
table { width: 100%; border-collapse: collapse; background: var(--card); border: 1px solid var(--line); border-radius: 8px; overflow: hidden; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th { color: var(--muted); font-weight: 600; font-size: 12px; }
th:first-child, td:first-child { text-align: left; }
td:first-child { font-family: ui-monospace, "DejaVu Sans Mono", monospace; white-space: normal; word-break: break-all; }
tbody tr:last-child td { border-bottom: 0; }
td.bad { color: var(--bad); font-weight: 600; }
footer { margin-top: 14px; font-size: 12px; }
[hidden] { display: none !important; }
`;

const SCRIPT = `
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const intervalMs = duration(params.get('interval'), 1000, 100);
  const windowMs = Math.max(duration(params.get('window'), 5000, 100), intervalMs);
  const TOKEN_KEY = 'metrics-proxy-status-token';
  const CHART_POINTS = 120;
  const number = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
  let history = [];
  const chart = [];
  let lastOk = 0;
  let timer;

  function duration(text, fallback, min) {
    if (text === null || text === '') return fallback;
    const match = /^(\\d+(?:\\.\\d+)?)(ms|s)?$/.exec(text.trim());
    if (match === null) return fallback;
    const ms = Number(match[1]) * (match[2] === 'ms' ? 1 : 1000);
    return Math.min(Math.max(ms, min), 3600000);
  }

  function rate(value) {
    if (value === null) return '–';
    if (value >= 100) return number.format(value);
    return value.toFixed(value >= 10 ? 1 : 2);
  }
  function percent(ratio) {
    if (ratio === null) return '–';
    const p = ratio * 100;
    return (p === 0 || p === 100 ? p.toFixed(0) : p < 10 ? p.toFixed(2) : p.toFixed(1)) + ' %';
  }
  function seconds(s, top) {
    if (s === null) return '–';
    if (s === Infinity) return '> ' + seconds(top, top);
    if (s < 0.001) return (s * 1e6).toPrecision(3) + ' µs';
    if (s < 1) return (s * 1000).toPrecision(3) + ' ms';
    return s.toFixed(2) + ' s';
  }
  function uptime(s) {
    const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    if (d > 0) return d + 'd ' + h + 'h';
    if (h > 0) return h + 'h ' + m + 'm';
    return m + 'm ' + Math.floor(s % 60) + 's';
  }

  /** histogram_quantile over cumulative counts on bounds (+Inf last), linear within a bucket. */
  function quantile(q, bounds, counts) {
    const total = counts[counts.length - 1] || 0;
    if (total <= 0) return null;
    const rank = q * total;
    let i = 0;
    while (i < counts.length - 1 && counts[i] < rank) i++;
    if (i === counts.length - 1) return bounds.length === 0 ? null : Infinity;
    const lower = i === 0 ? 0 : bounds[i - 1];
    const below = i === 0 ? 0 : counts[i - 1];
    const inBucket = counts[i] - below;
    return inBucket <= 0 ? bounds[i] : lower + (bounds[i] - lower) * (rank - below) / inBucket;
  }
  function minus(now, before, length) {
    const out = [];
    for (let i = 0; i < length; i++) out.push(Math.max((now[i] || 0) - ((before && before[i]) || 0), 0));
    return out;
  }

  function show(id, text, value) {
    const el = $(id);
    el.textContent = text;
    el.dataset.value = value === null || value === undefined ? '' : String(value);
  }

  function restarted(before, now) {
    return before.instance !== now.instance || (now.requests.total ?? 0) < (before.requests.total ?? 0);
  }

  function update(snap) {
    if (history.length > 0 && restarted(history[history.length - 1], snap)) history = [];
    history.push(snap);
    while (history.length > 2 && history[1].time <= snap.time - windowMs) history.shift();
    const base = history.length > 1 ? history[0] : null;
    const dt = base === null ? 0 : (snap.time - base.time) / 1000;
    const bounds = snap.latency ? snap.latency.bounds : [];
    const top = bounds[bounds.length - 1];

    const health = snap.health;
    const badge = $('health');
    const state = health.draining ? 'draining' : health.upstream.reachable ? 'ready' : 'down';
    badge.className = 'badge ' + state;
    badge.dataset.state = state;
    badge.textContent = state === 'ready' ? 'upstream up' : state === 'draining' ? 'draining' : 'upstream down';
    badge.title = health.upstream.msg || '';
    $('upstream').textContent = '→ ' + health.upstream.url + (health.upstream.msg ? ' (' + health.upstream.msg + ')' : '') +
      ' · up ' + uptime(snap.uptimeSeconds);

    const total = snap.requests.total;
    const errors = snap.requests.errors;
    let rps = null, ratio = null, p50 = null, p99 = null;
    if (base !== null && dt > 0 && total !== null) {
      const requests = total - (base.requests.total ?? 0);
      rps = requests / dt;
      ratio = requests > 0 ? (errors - (base.requests.errors ?? 0)) / requests : null;
      const recent = minus(snap.latency.counts, base.latency && base.latency.counts, bounds.length + 1);
      p50 = quantile(0.5, bounds, recent);
      p99 = quantile(0.99, bounds, recent);
    }
    show('rps', rate(rps), rps);
    show('total', total === null ? '–' : number.format(total) + ' total', total);
    show('error-ratio', percent(ratio), ratio);
    show('errors-total', errors === null ? '–' : number.format(errors) + ' total', errors);
    $('error-ratio').parentElement.classList.toggle('alert', ratio !== null && ratio > 0);
    show('p50', seconds(p50, top), p50);
    show('p99', seconds(p99, top), p99);
    show('inflight', snap.requests.inFlight === null ? 'n/a' : number.format(snap.requests.inFlight), snap.requests.inFlight);
    show('websockets', number.format(snap.websockets), snap.websockets);
    const failures = snap.upstreamFailures ? Object.entries(snap.upstreamFailures).filter((e) => e[1] > 0) : [];
    $('failures').textContent = failures.length === 0 ? '' :
      'proxy-answered failures: ' + failures.map((e) => e[0] + ' ' + number.format(e[1])).join(', ');

    const notice = $('notice');
    notice.hidden = snap.source === 'standard';
    notice.textContent = snap.source === 'seed'
      ? 'Only the seed family is enabled (--metrics seed): totals, errors and latency come from apiCount, apiErrorCount and apiDuration. Per-route figures and in-flight requests need the standard family.'
      : 'Metrics are off (--metrics none): only health and WebSocket sessions are shown.';

    if (rps !== null) chart.push(rps);
    while (chart.length > CHART_POINTS) chart.shift();
    drawChart();
    routes(snap, base, dt, bounds, top);
    $('window').textContent = 'rates over the last ' + (dt > 0 ? dt.toFixed(1) + ' s' : '…') + ' (window ' + windowMs / 1000 +
      ' s, polled every ' + intervalMs / 1000 + ' s) · instance ' + snap.instance.slice(0, 8);
  }

  function cell(row, text, value, bad) {
    const td = document.createElement('td');
    td.textContent = text;
    if (value !== undefined) td.dataset.value = value === null ? '' : String(value);
    if (bad) td.className = 'bad';
    row.appendChild(td);
  }

  function routes(snap, base, dt, bounds, top) {
    const table = $('routes');
    const empty = $('routes-empty');
    if (snap.routes === null) {
      table.hidden = true;
      empty.hidden = false;
      empty.textContent = 'Per-route figures need the standard metric family.';
      return;
    }
    const before = new Map(base && base.routes ? base.routes.map((r) => [r.route, r]) : []);
    const rows = snap.routes.map((r) => {
      const b = before.get(r.route);
      const requests = r.requests - (b ? b.requests : 0);
      const recent = minus(r.counts, b && b.counts, bounds.length + 1);
      return {
        route: r.route, total: r.requests, errorsTotal: r.errors, websockets: r.websockets,
        rate: dt > 0 ? requests / dt : null,
        ratio: dt > 0 && requests > 0 ? (r.errors - (b ? b.errors : 0)) / requests : null,
        p50: dt > 0 ? quantile(0.5, bounds, recent) : null,
        p99: dt > 0 ? quantile(0.99, bounds, recent) : null,
      };
    });
    rows.sort((a, b) => (b.rate || 0) - (a.rate || 0) || b.total - a.total || (a.route < b.route ? -1 : 1));
    const body = document.createElement('tbody');
    for (const r of rows) {
      const tr = document.createElement('tr');
      tr.dataset.route = r.route;
      cell(tr, r.route);
      cell(tr, rate(r.rate), r.rate);
      cell(tr, percent(r.ratio), r.ratio, r.ratio !== null && r.ratio > 0);
      cell(tr, seconds(r.p50, top), r.p50);
      cell(tr, seconds(r.p99, top), r.p99);
      cell(tr, number.format(r.total), r.total);
      cell(tr, number.format(r.errorsTotal), r.errorsTotal, r.errorsTotal > 0);
      cell(tr, number.format(r.websockets), r.websockets);
      body.appendChild(tr);
    }
    table.replaceChild(body, table.tBodies[0]);
    table.hidden = rows.length === 0;
    empty.hidden = rows.length > 0;
    empty.textContent = 'No forwarded requests yet.';
  }

  function drawChart() {
    const canvas = $('chart');
    const ratio = window.devicePixelRatio || 1;
    const width = Math.round(canvas.clientWidth * ratio), height = Math.round(canvas.clientHeight * ratio);
    if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
    const ctx = canvas.getContext('2d');
    ctx.clearRect(0, 0, width, height);
    const style = getComputedStyle(document.documentElement);
    const max = Math.max(1, ...chart);
    const pad = 6 * ratio;
    ctx.fillStyle = style.getPropertyValue('--muted');
    ctx.font = (11 * ratio) + 'px system-ui, sans-serif';
    ctx.fillText('req/s, max ' + rate(max), pad, pad + 9 * ratio);
    if (chart.length < 2) return;
    const step = (width - 2 * pad) / (CHART_POINTS - 1);
    const x0 = width - pad - (chart.length - 1) * step;
    ctx.beginPath();
    chart.forEach((v, i) => {
      const x = x0 + i * step, y = height - pad - (v / max) * (height - 2 * pad - 12 * ratio);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.strokeStyle = style.getPropertyValue('--accent');
    ctx.lineWidth = 2 * ratio;
    ctx.stroke();
  }

  function stale(reason) {
    document.body.classList.add('stale');
    const badge = $('health');
    if (lastOk === 0) { badge.className = 'badge'; badge.dataset.state = 'unknown'; badge.textContent = 'no data'; }
    $('updated').textContent = (lastOk === 0 ? 'no data yet' : 'stale since ' + new Date(lastOk).toLocaleTimeString()) + ': ' + reason;
  }

  function askForToken(wrong) {
    $('auth').hidden = false;
    $('auth-msg').textContent = wrong ? 'That token was refused. ' : '';
    $('token').focus();
    stale('the status data needs the metrics bearer token');
  }

  async function poll() {
    timer = undefined;
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = { accept: 'application/json' };
    if (token !== null) headers.authorization = 'Bearer ' + token;
    try {
      const res = await fetch('status.json', { headers, cache: 'no-store' });
      if (res.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY);
        askForToken(token !== null);
        return;
      }
      if (!res.ok) throw new Error('HTTP ' + res.status);
      const snap = await res.json();
      if (snap.version !== 1) throw new Error('unknown status.json version ' + snap.version);
      update(snap);
      lastOk = Date.now();
      document.body.classList.remove('stale');
      $('updated').textContent = 'updated ' + new Date(lastOk).toLocaleTimeString();
    } catch (err) {
      stale(err instanceof Error ? err.message : String(err));
    }
    timer = setTimeout(poll, intervalMs);
  }

  $('auth').addEventListener('submit', (event) => {
    event.preventDefault();
    const value = $('token').value.trim();
    if (value === '') return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $('token').value = '';
    $('auth').hidden = true;
    if (timer !== undefined) clearTimeout(timer);
    poll();
  });
  poll();
})();
`;

const HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>metrics-proxy status</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body class="stale">
<header>
<h1>metrics-proxy</h1>
<span id="health" class="badge" data-state="unknown">…</span>
<span id="upstream" class="muted"></span>
<span class="spacer"></span>
<span id="updated" class="muted">connecting…</span>
</header>
<form id="auth" hidden>
<label for="token"><span id="auth-msg"></span>The status data needs the metrics bearer token:</label>
<input id="token" type="password" autocomplete="off">
<button type="submit">Show</button>
<span class="muted">kept in this tab only</span>
</form>
<p id="notice" hidden></p>
<section class="tiles">
<div class="tile"><div class="label">requests/s</div><div class="value" id="rps" data-value="">–</div><div class="sub" id="total" data-value="">–</div></div>
<div class="tile"><div class="label">errors</div><div class="value" id="error-ratio" data-value="">–</div><div class="sub" id="errors-total" data-value="">–</div></div>
<div class="tile"><div class="label">p50 latency</div><div class="value" id="p50" data-value="">–</div></div>
<div class="tile"><div class="label">p99 latency</div><div class="value" id="p99" data-value="">–</div></div>
<div class="tile"><div class="label">in flight</div><div class="value" id="inflight" data-value="">–</div></div>
<div class="tile"><div class="label">WebSockets</div><div class="value" id="websockets" data-value="">–</div></div>
</section>
<canvas id="chart"></canvas>
<p id="failures" class="muted"></p>
<h2>Routes</h2>
<table id="routes" hidden>
<thead><tr><th>route</th><th>req/s</th><th>errors</th><th>p50</th><th>p99</th><th>requests</th><th>errors total</th><th>WebSockets</th></tr></thead>
<tbody></tbody>
</table>
<p id="routes-empty" class="muted">No forwarded requests yet.</p>
<footer class="muted"><span id="window"></span></footer>
<script>${SCRIPT}</script>
</body>
</html>
`;

const sha256 = (text: string): string => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;

/** Only the page's own script and style run; it may fetch from its own origin and nothing else. */
export const STATUS_PAGE_CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
  "connect-src 'self'",
  'img-src data:',
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export const STATUS_PAGE_HTML: Buffer = Buffer.from(HTML, 'utf8');

export const STATUS_PAGE_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-type': 'text/html; charset=utf-8',
  'content-length': String(STATUS_PAGE_HTML.length),
  'cache-control': 'no-store',
  'content-security-policy': STATUS_PAGE_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
});
